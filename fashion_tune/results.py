"""Read a study folder and write its reports: leaderboard.csv, best_config.json, summary.md;
and read best_config.json back for the steps after a search (read_best_config).

Reads only files (Tune's per-trial result.json and params.json, error.txt, our study.json), so it
works on a finished, an interrupted or a copied study, without Ray or TensorFlow, and can be
run again at any time (`fashion-tune report --study NAME`). Every file is written atomically:
a reader never sees half a report.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from fashion_tune import atomic, hparams, insights, layout
from fashion_tune.config import SCHEDULERS, ConfigError, TrainParams
from fashion_tune.errors import UserError
from fashion_tune.layout import TRIAL_ERROR, TRIAL_PARAMS, TRIAL_RESULTS, StudyDir
from fashion_tune.records import StudyRecord
from fashion_tune.space import SearchSpace, load_space

COMPLETED, STOPPED, FAILED, UNFINISHED = "completed", "stopped early", "failed", "unfinished"
# A trial whose record of its epochs is damaged (result.json: unreadable lines), or whose folder is
# gone while Optuna's ledger says it reported epochs: listed, never silently left out or re-ranked.
DAMAGED, MISSING = "records damaged", "folder missing"
log = logging.getLogger(__name__)

CUT = "cut by the time budget"  # running when the study's --time-budget-min was spent (search/time_budget.py)


@dataclass
class TrialRecord:
    """One trial as its folder tells it."""

    trial_id: str
    status: str  # COMPLETED, STOPPED, CUT, FAILED or UNFINISHED
    epochs: int  # epochs trained (reported)
    best_value: Optional[float]  # best value of the study's metric over its epochs
    best_epoch: Optional[int]  # the epoch that reached it
    val_loss: Optional[float]  # validation loss at that epoch
    val_accuracy: Optional[float]  # validation accuracy at that epoch
    config: dict = field(default_factory=dict)
    error: str = ""  # first line of the error, for failed trials
    nodes: tuple = ()  # Ray node ids the trial ran on, in order (more than one after a restart elsewhere)
    failures: int = 0  # crashes Tune recorded; with --max-failures a trial can recover from them


def read_best_config(path: Path) -> dict:
    """A best_config.json (written by a study), checked enough to retrain from."""
    try:
        best = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (a study writes best_config.json when it ends)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(best, dict) or not isinstance(best.get("params"), dict):
        raise UserError(f"{path}: no 'params' mapping; expected a study's best_config.json")
    try:
        TrainParams.from_config(best["params"])
    except ConfigError as e:
        raise UserError(f"{path}: params: {e}") from None
    return best



def optuna_states(study: StudyDir, name: str) -> dict[str, str]:
    """Each trial's state in the study's Optuna ledger (search/searcher.py keeps it): COMPLETE, PRUNED, FAIL
    or RUNNING, by our trial id. Empty for a study begun before studies kept optuna.db."""
    if not study.optuna_db.is_file():
        return {}
    import optuna

    stored = optuna.load_study(study_name=name, storage=study.optuna_storage)
    return {t.user_attrs.get("trial_id"): t.state.name for t in stored.get_trials(deepcopy=False)}


def _missing_trials(study: StudyDir, name: str, found: set[str]) -> list[TrialRecord]:
    """Trials Optuna's ledger says reported epochs, whose folders are gone (deleted, or not copied)."""
    if not study.optuna_db.is_file():
        return []
    import optuna

    stored = optuna.load_study(study_name=name, storage=study.optuna_storage)
    lost = [t for t in stored.get_trials(deepcopy=False)
            if t.intermediate_values and t.user_attrs.get("trial_id") not in found]
    return [TrialRecord(trial_id=t.user_attrs.get("trial_id", str(t.number)), status=MISSING,
                        epochs=max(t.intermediate_values), best_value=None, best_epoch=None, val_loss=None,
                        val_accuracy=None, config=dict(t.params),
                        error=f"its folder {layout.trial_folder_name(t.user_attrs.get('trial_id', '?'))} is gone")
            for t in lost]


def read_trials(study: StudyDir, metric: str, mode: str, max_epochs: int, finished: bool) -> list[TrialRecord]:
    """Every trial of the study, ranked best first (failed, damaged and empty trials last): each trial
    folder, and each trial Optuna's ledger says reported epochs whose folder is gone."""
    record = read_record(study)
    states = optuna_states(study, record.optuna_name)
    cut = set(record.cut_by_time_budget or ())
    trials = [_read_trial(folder, metric, mode, max_epochs, finished, states, cut) for folder in study.trial_dirs()]
    trials += _missing_trials(study, record.optuna_name, {t.trial_id for t in trials})
    sign = -1 if mode == "max" else 1
    trials.sort(key=lambda t: (t.best_value is None, sign * (t.best_value or 0.0), t.trial_id))
    return trials


def _read_trial(folder: Path, metric: str, mode: str, max_epochs: int, finished: bool,
                states: dict[str, str], cut: set[str]) -> TrialRecord:
    rows = _read_json_lines(folder / TRIAL_RESULTS)
    trial_id = str(rows[0]["trial_id"]) if rows else folder.name.split("_")[-1]
    damaged = _damaged(folder / TRIAL_RESULTS)
    error_text = (folder / TRIAL_ERROR).read_text() if (folder / TRIAL_ERROR).is_file() else ""
    failure_times = _FAILURE_HEADER.findall(error_text)
    # Tune keeps error.txt after a retry succeeds: the trial failed only if no result came
    # after its last failure (both stamps are Tune's local '%Y-%m-%d_%H-%M-%S').
    failed = bool(failure_times) and (not rows or failure_times[-1] >= rows[-1].get("date", ""))
    scored = [r for r in rows if finite(r.get(metric))]
    best = (max if mode == "max" else min)(scored, key=lambda r: r[metric]) if scored else None
    epochs = max((int(r.get("training_iteration", 0)) for r in rows), default=0)
    if failed:
        status = FAILED
    elif damaged:
        status = DAMAGED
    elif epochs >= max_epochs:
        status = COMPLETED
    elif trial_id in cut:
        status = CUT
    elif states.get(trial_id) == "PRUNED" or (finished and trial_id not in states):
        # Stopped by the scheduler: Optuna's ledger says so at once; without one, only the study's
        # end does (until then a trial short of its budget may yet go on).
        status = STOPPED
    else:
        status = UNFINISHED
    return TrialRecord(
        trial_id=trial_id,
        status=status,
        epochs=epochs,
        best_value=best[metric] if best else None,
        best_epoch=int(best["training_iteration"]) if best else None,
        val_loss=best.get("val_loss") if best else None,
        val_accuracy=best.get("val_accuracy") if best else None,
        config=json.loads((folder / TRIAL_PARAMS).read_text()),
        error=error_summary(error_text) if failed else damaged,
        nodes=tuple(dict.fromkeys(r["node_id"] for r in rows if r.get("node_id"))),
        failures=len(failure_times),
    )


@dataclass
class Progress:
    """The search at one reported epoch: what it had spent, and the best it had found by then."""

    trial_epochs: int  # epochs reported by all trials up to and including this one
    minutes: float  # since the study started
    best: Optional[float]  # best value of the metric so far (None until a finite one is reported)
    trial_id: str  # the trial that reported this epoch


def search_progress(study: StudyDir, metric: str, mode: str, record: StudyRecord) -> list[Progress]:
    """Every epoch any trial reported, in the order they were reported, with the best value so far:
    what more trials or more time would have bought."""
    rows = [r for folder in study.trial_dirs() for r in _read_json_lines(folder / TRIAL_RESULTS)]
    rows.sort(key=lambda r: (r.get("timestamp", 0), r.get("time_total_s", 0)))
    better = max if mode == "max" else min
    progress, best = [], None
    for spent, row in enumerate(rows, 1):
        if finite(row.get(metric)):
            best = row[metric] if best is None else better(best, row[metric])
        minutes = record.running_seconds(row.get("timestamp", record.started_at)) / 60
        progress.append(Progress(spent, minutes, best, str(row.get("trial_id", ""))))
    return progress


def last_report_time(study: StudyDir) -> Optional[float]:
    """When any trial of the study last reported an epoch (None: none has)."""
    stamps = [r["timestamp"] for folder in study.trial_dirs() for r in _read_json_lines(folder / TRIAL_RESULTS)
              if "timestamp" in r]
    return max(stamps, default=None)


def read_record(study: StudyDir) -> StudyRecord:
    """The study's record, named as its folder now is (a study copied or moved under another name is
    reported under that name; its Optuna study keeps its own: StudyRecord.renamed)."""
    return StudyRecord.read(study.record).moved(study.path.name)


def read_space(study: StudyDir, record: StudyRecord) -> SearchSpace:
    """The study's copy of its space file, refused when it changed since the study started: the
    metric, mode and ranges the study ran with are the ones its reports and its resume use."""
    space = load_space(study.space_copy)
    if space.sha256 != record.space.sha256:
        raise UserError(f"{study.space_copy}: changed since the study started (sha256 {space.sha256[:12]}…, recorded "
                        f"{record.space.sha256[:12]}…); a study is reported and continued with the space it began "
                        "with: restore the file")
    return space


def write_reports(study: StudyDir) -> dict:
    """Write leaderboard.csv, best_config.json and summary.md; return what they say. A study that
    finished before any trial started (its time budget spent by the start-up) gets a summary saying so."""
    record = read_record(study)
    space = read_space(study, record)
    finished = record.finished
    trials = read_trials(study, space.metric, space.mode, space.max_epochs, finished)
    if not trials and record.cut_by_time_budget is None:  # a budget spent by the start-up ends a study without any
        raise UserError(f"{study.path}: the study has no trials yet")
    best = trials[0] if trials and trials[0].best_value is not None else None
    for trial in trials:
        if trial.status in (DAMAGED, MISSING):
            log.warning("trial %s: %s", trial.trial_id, trial.error)

    atomic.write_text(study.leaderboard, leaderboard_csv(trials, [p.name for p in space.params]))
    if best is not None:
        atomic.write_json(study.best_config, best_config(record, space, best))
    progress = search_progress(study, space.metric, space.mode, record)
    found = insights.analyse(study, record.optuna_name, record.settings.seed)
    summary = summary_markdown(record, space, trials, best, finished, progress, found, study)
    atomic.write_text(study.summary, summary)
    if found and found.ranked():
        # TensorBoard's HParams dashboard ticks five hyperparameters: the five that mattered most.
        hparams.write_experiment(study.path, space, shown=found.ranked())
    return {"best_value": best.best_value if best else None, "trials": len(trials), "summary_md": summary}


def leaderboard_csv(trials: list[TrialRecord], searched: list[str]) -> str:
    other = sorted({k for t in trials for k in t.config} - set(searched))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["rank", "trial_id", "status", "epochs_trained", "best_epoch", "best_value", "val_accuracy",
                     "val_loss", *searched, *other, "nodes", "failures", "error"])
    for rank, t in enumerate(trials, 1):
        writer.writerow([rank, t.trial_id, t.status, t.epochs, _blank(t.best_epoch), _blank(t.best_value),
                         _blank(t.val_accuracy), _blank(t.val_loss),
                         *(t.config.get(k, "") for k in searched + other), " ".join(t.nodes), t.failures, t.error])
    return out.getvalue()


def best_config(study: StudyRecord, space: SearchSpace, best: TrialRecord) -> dict:
    """Everything retraining needs: the complete TrainParams, the data settings, and provenance."""
    return {
        "study": study.name,
        "trial_id": best.trial_id,
        "metric": space.metric,
        "mode": space.mode,
        "value": best.best_value,
        "best_epoch": best.best_epoch,
        "params": TrainParams.from_config(best.config).to_dict(),
        "data": study.data.to_dict(),
        "space": study.space.to_json(),
        "retrain": space.retrain_defaults,  # the space file's rule for the model that ships
    }


def top_configs(study: StudyDir, k: int, asked_by: str = "--top") -> list[dict]:
    """The k best trials' configurations, best first, each as best_config.json has the best's:
    an ensemble's members (`retrain --top k`). asked_by: where k came from, for the error."""
    record = read_record(study)
    space = read_space(study, record)
    ranked = [t for t in read_trials(study, space.metric, space.mode, space.max_epochs, record.finished)
              if t.best_value is not None and t.status not in (DAMAGED, MISSING)]
    if len(ranked) < k:
        raise UserError(f"{asked_by} is {k}, but study {record.name} has {len(ranked)} trial(s) with a result; "
                        f"choose at most {len(ranked)}")
    return [best_config(record, space, trial) for trial in ranked[:k]]


def edge_warnings(space: SearchSpace, config: dict) -> list[str]:
    warnings = []
    for spec in space.params:
        if spec.name not in config:
            continue
        side = spec.edge(config[spec.name])
        if side:
            bound = spec.low if side == "low" else spec.high
            if spec.type == "categorical":
                bound = (min if side == "low" else max)(spec.choices)
            warnings.append(
                f"`{spec.name}` = {config[spec.name]!r} sits at the {side} edge of its range ({bound!r}): "
                f"the best value may lie beyond it; consider widening the range in the space file."
            )
    return warnings


def summary_markdown(study: StudyRecord, space: SearchSpace, trials: list[TrialRecord], best: Optional[TrialRecord],
                     finished: bool, progress: list[Progress], found: Optional[insights.Insights],
                     folder: StudyDir) -> str:
    """summary.md: the study at a glance, section by section."""
    lines = _overview(study, space, trials, best, finished)
    lines += ["", "## Reproduce", "", "```", study.command, "```", "", "## Settings", "",
              "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in study.settings.to_dict().items()]
    lines += [f"| data.{k} | {v} |" for k, v in study.data.to_dict().items()]
    if best is not None:
        lines += _best_configuration(space, best)
    lines += _progress_table(space.metric, progress)
    logdir = folder.path  # where the study is now (it may have been copied or moved since it ran)
    lines += insights.markdown(found, folder, logdir)
    lines += _leaderboard_table(space, trials)
    failed = [t for t in trials if t.status == FAILED]
    if failed:
        lines += ["", "## Failed trials", ""] + [f"- `{t.trial_id}`: {t.error}" for t in failed]
    damaged = [t for t in trials if t.status in (DAMAGED, MISSING)]
    if damaged:
        lines += ["", "## Trials whose records are damaged or gone", "",
                  "Ranked last: what remains of them cannot be compared with the others.", ""]
        lines += [f"- `{t.trial_id}` ({t.status}): {t.error}" for t in damaged]
    lines += [
        "",
        "## Notes",
        "",
        "- A trial the scheduler stopped early reaches Optuna as pruned, so TPE ranks it below every trial that "
        "ran its budget (by how far it got, then its value).",
        f"- Curves and the HParams comparison: `tensorboard --logdir {logdir}`",
        "",
    ]
    return "\n".join(lines)


def _overview(study: StudyRecord, space: SearchSpace, trials: list[TrialRecord], best: Optional[TrialRecord],
              finished: bool) -> list[str]:
    counts = {s: sum(t.status == s for t in trials)
              for s in (COMPLETED, STOPPED, CUT, FAILED, UNFINISHED, DAMAGED, MISSING)}
    scheduler = SCHEDULERS.get(study.settings.scheduler)
    stopper = f" by {scheduler}" if scheduler else ""
    # The minutes the time budget counts: from the command's start (Ray and the data included), less
    # the pauses between runs; a study from before runs were kept has only the runs' own seconds.
    ran_until = study.runs[-1][1] if study.runs else None
    wall = study.running_seconds(ran_until) if ran_until else study.wall_s
    status = ("finished" if finished
              else f"not finished (interrupted or still running): resume with `--resume {study.name}`")
    if study.cut_by_time_budget is not None:
        status += f", when its time budget of {study.settings.time_budget_min:g} min was spent"
    lines = [
        f"# Study `{study.name}`",
        "",
        f"- Status: {status}",
        f"- Started: {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(study.started_at))}",
        f"- Wall time: {_duration(wall) if wall else 'n/a'}",
        f"- Search space: `{study.space.path}` (sha256 `{study.space.sha256[:16]}…`, copied to `space.yaml`)",
        f"- Ranked by: {space.metric} ({space.mode})",
        f"- Trials: {len(trials)} — {counts[COMPLETED]} completed, {counts[STOPPED]} stopped early{stopper}, "
        + (f"{counts[CUT]} {CUT}, " if counts[CUT] else "")
        + f"{counts[FAILED]} failed" + "".join(f", {counts[s]} {s}" for s in (UNFINISHED, DAMAGED, MISSING)
                                               if counts[s]),
        f"- Trial-epochs trained: {sum(t.epochs for t in trials)} "
        f"(of {len(trials) * space.max_epochs} without early stopping)",
        f"- Ray nodes that ran trials: {len({n for t in trials for n in t.nodes})}" + _node_runs(study)
        if not study.settings.replay else
        f"- **Replayed, not trained**: every trial reported the curves recorded in `{study.settings.replay}`",
    ]
    if not trials:
        lines.append("- No trial started: the study ended (its time budget spent) before the first one began")
    recovered = [t for t in trials if t.failures and t.status != FAILED]
    if recovered:
        lines.append(f"- Recovered from crashes (retried from their checkpoints): {len(recovered)} trials, "
                     f"{sum(t.failures for t in recovered)} crashes")
    if best is not None:
        lines.append(f"- Best {space.metric}: **{best.best_value:.4f}** (trial `{best.trial_id}`, epoch "
                     f"{best.best_epoch})")
    return lines


def _node_runs(study: StudyRecord) -> str:
    """A resumed study's Ray is a new session, whose nodes have new ids: say so beside the count."""
    runs = len(study.runs)
    return f" (over {runs} runs of the search: each run's Ray names its nodes anew)" if runs > 1 else ""


def _best_configuration(space: SearchSpace, best: TrialRecord) -> list[str]:
    lines = ["", "## Best configuration", "", "| parameter | value | searched |", "|---|---|---|"]
    searched = {p.name for p in space.params}
    full = TrainParams.from_config(best.config).to_dict()
    lines += [f"| {k} | {v} | {'yes' if k in searched else ''} |" for k, v in full.items()]
    warnings = edge_warnings(space, best.config)
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    return lines


def _progress_table(metric: str, progress: list[Progress]) -> list[str]:
    """Each new best as the search went on; nothing when no trial reported a value."""
    improvements = [p for i, p in enumerate(progress)
                    if p.best is not None and (i == 0 or p.best != progress[i - 1].best)]
    if not improvements:
        return []
    lines = ["", f"## Best {metric} as the search went on", "",
             "When each new best was reported: a curve that flattens early says fewer trials would have done.", "",
             "| minutes | trial-epochs spent | best so far | trial |", "|---|---|---|---|"]
    return lines + [f"| {p.minutes:.1f} | {p.trial_epochs} | {p.best:.4f} | {p.trial_id} |" for p in improvements]


def _leaderboard_table(space: SearchSpace, trials: list[TrialRecord]) -> list[str]:
    lines = ["", "## Leaderboard (top 10; all trials in leaderboard.csv)", "",
             f"| rank | trial | status | epochs | {space.metric} | " + " | ".join(p.name for p in space.params) + " |",
             "|" + "---|" * (5 + len(space.params))]
    for rank, t in enumerate(trials[:10], 1):
        value = f"{t.best_value:.4f}" if t.best_value is not None else "—"
        params = " | ".join(short(t.config.get(p.name, "")) for p in space.params)
        lines.append(f"| {rank} | {t.trial_id} | {t.status} | {t.epochs} | {value} | {params} |")
    return lines


_FAILURE_HEADER = re.compile(r"^Failure # \d+ \(occurred at (\S+)\)", re.MULTILINE)


def _damaged(path: Path) -> str:
    """What is wrong with a trial's result.json ("": nothing): a line that is not JSON before its last
    (the last may be cut short by an interrupted driver)."""
    if not path.is_file():
        return ""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines[:-1], 1):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            return f"{path.name}: line {number} is not JSON (its epochs from there on are not counted)"
    return ""


def reported_epochs(study: StudyDir, trial_id: str) -> list[dict]:
    """A trial's results as its result.json holds them, one an epoch (none: no folder, or none yet)."""
    return _read_json_lines(study.path / layout.trial_folder_name(trial_id) / TRIAL_RESULTS)


def _read_json_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by an interrupted driver; or damage, which _damaged tells
    return rows


def error_summary(text: str) -> str:
    """The most telling line of a Tune error.txt (its last failure): the exception's own message."""
    text = re.split(r"^Failure # \d+ .*$", text, flags=re.MULTILINE)[-1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line.split(":")[0] or "Exception" in line.split(":")[0]:
            return line[:300]
    return lines[-1][:300] if lines else "failed"


def finite(value) -> bool:
    """A metric's value that can be ranked: a number, neither NaN nor infinite."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def _blank(value) -> Any:
    return "" if value is None else value


def short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
