"""The study driver at 100, 1,000 and 10,000 trials: what each trial-epoch costs it, and what grows.

Replayed studies (`search --replay`, no training) of the recorded space, TPE + ASHA, with many
trials at once on fractional CPUs (--at-once, default 64), each run in this process through the
real driver. Measured for each trial count, by timing the driver's own methods while it runs:

  driver CPU per trial-epoch   this process's CPU time (all its threads) over the study's fit
  TPE ask                      the searcher's suggest(), by how many trials Optuna held then
  optuna.db                    its size, and the time of the searcher's per-epoch write
  Tune's snapshots             TuneController.checkpoint (its experiment state, every few epochs)
  our callbacks                progress lines, TensorBoard events, result.json / progress.csv
  reports                      study.json writes, and leaderboard + summary (results.write_reports)
  memory                       this process's peak resident set

Prints a table and writes --out (scale.json): for each trial count, every figure above, and the
growth exponent between counts (1 is linear). Each study's figures are also taken as it goes, when
its ended trials reach 100, 300, 1,000, 3,000, ... (written to OUT-within-N.json as they come, so a
study stopped early leaves them): in scale.json the largest study's, and what a trial-epoch cost the
driver between those milestones (`windows`), its growth apart from the start-up. --epochs gives the
trials a shorter budget than the space's (a copy of the space with that budget, written beside the
studies): on the recorded space TPE + ASHA sends more and more trials to the full budget as a study
grows (15.6 trial-epochs a trial at 1,000 trials of 27 epochs), so 10,000 trials of 27 epochs would
take this 2-core machine hours;
fewer epochs a trial also weigh each trial's own costs (its proposal, its actor) heavier per epoch.

    python benchmarks/driver_scale.py [--trials 100 1000 10000] [--at-once 64] [--epochs N]
        [--recording results/reference/replay/curves.jsonl] [--space tabular]
        [--studies results/benchmarks/scale] [--out results/reference/replay/scale.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import resource
import shutil
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPENT: dict[str, list[float]] = defaultdict(list)  # label -> CPU seconds of each call
ASKS: list[tuple[int, float]] = []  # (trials Optuna held, CPU seconds of one suggest)


def timed(owner, method: str, label: str) -> None:
    """Replace owner.method by a wrapper that adds each call's CPU seconds to SPENT[label]. CPU time
    of the calling thread (the driver's loop), not the clock: with 64 trials on 2 cores, a call's
    wall time is mostly waiting for a core."""
    original = getattr(owner, method)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        began = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[label].append(time.thread_time() - began)

    setattr(owner, method, wrapper)


def instrument() -> None:
    from ray.train._internal import storage
    from ray.tune.execution.tune_controller import TuneController

    from fashion_tune import records, results
    from fashion_tune.search import progress, searcher, trial_events, trial_records

    try:
        from fashion_tune.search import old_checkpoints
    except ImportError:
        old_checkpoints = None

    ask = searcher.StoppedTrialsArePruned.suggest

    def timed_ask(self, trial_id):
        began = time.thread_time()
        try:
            return ask(self, trial_id)
        finally:
            ASKS.append((len(self._ot_trials), time.thread_time() - began))
            SPENT["TPE ask"].append(ASKS[-1][1])

    searcher.StoppedTrialsArePruned.suggest = timed_ask
    timed(searcher.StoppedTrialsArePruned, "on_trial_result", "optuna write per epoch")
    if hasattr(searcher.SoleWriter, "write_held"):  # absent before optuna.db was written in batches
        timed(searcher.SoleWriter, "write_held", "optuna.db batches (within TPE ask and optuna write per epoch)")
    timed(TuneController, "checkpoint", "Tune snapshot")
    timed(storage, "_upload_to_fs_path", "snapshot copied to the study (background thread)")
    if old_checkpoints:  # absent before the fixes (run from an older checkout to compare)
        timed(old_checkpoints.OldCheckpoints, "get_state", "old checkpoints deleted")
    timed(progress.StudyProgress, "on_trial_result", "progress line")
    timed(trial_events.TrialScalars, "on_trial_result", "TensorBoard events")
    timed(trial_records.TrialResults, "on_trial_result", "result.json")
    timed(trial_records.TrialProgress, "on_trial_result", "progress.csv")
    timed(records.StudyRecord, "write", "study.json write")
    timed(results, "write_reports", "leaderboard + summary")


def run(trials: int, args, studies: Path, out: Path) -> dict:
    from fashion_tune.search import new_study

    SPENT.clear()
    ASKS.clear()
    name = f"scale-{trials}"
    shutil.rmtree(studies / name, ignore_errors=True)
    flags = {"space": args.space, "name": name, "results_dir": str(studies), "num_samples": trials,
             "cpus_per_trial": 2 / args.at_once, "max_concurrent": args.at_once, "replay": args.recording,
             "tpe_startup_trials": 10}
    within = Within(trials, studies / name, out.with_name(f"{out.stem}-within-{trials}.json"))
    new_study(flags, {})
    epochs = sum(len(f.read_text().splitlines()) for f in (studies / name).glob("trial_*/result.json"))
    return {**within.figures(trials, epochs), "within_study": within.rows}


def windows(rows: list[dict]) -> list[dict]:
    """Between successive milestones of one study (cumulative rows): what a trial-epoch cost the
    driver there, so growth shows apart from the start-up. The study's end writes its reports once
    (leaderboard + summary, timed apart): left out of the last window's driver CPU."""
    out = []
    for a, b in zip(rows, rows[1:]):
        epochs, trials = b["trial_epochs"] - a["trial_epochs"], b["trials"] - a["trials"]
        spent = {k: b["seconds_by_part"][k] - a["seconds_by_part"].get(k, 0) for k in b["seconds_by_part"]}
        cpu = b["driver_cpu_s"] - a["driver_cpu_s"] - spent.pop("leaderboard + summary", 0)
        out.append({
            "trials": [a["trials"], b["trials"]], "trial_epochs": epochs,
            "trial_epochs_per_trial": round(epochs / trials, 2),
            "driver_cpu_ms_per_trial_epoch": round(1000 * cpu / epochs, 2),
            "wall_ms_per_trial_epoch": round(1000 * (b["wall_s"] - a["wall_s"]) / epochs, 2),
            "optuna_db_bytes_per_trial": round((b["optuna_db_bytes"] - a["optuna_db_bytes"]) / trials),
            "peak_rss_mib_per_1000_trials": round(1000 * (b["driver_peak_rss_mib"] - a["driver_peak_rss_mib"]) / trials,
                                                  1),
            "ms_per_trial_epoch_by_part": {k: round(1000 * v / epochs, 3) for k, v in sorted(spent.items())},
        })
    return out


class Within:
    """The study's figures so far, each time its ended trials reach a milestone (100, 300, 1,000, ...):
    the growth within one study, and what a long study measured if it is stopped before its end (the
    file is rewritten at each milestone)."""

    MILESTONES = (100, 300, 1000, 3000, 10000, 30000, 100000)

    def __init__(self, trials: int, study: Path, path: Path):
        from fashion_tune.search import searcher

        self.trials, self.study, self.path, self.ended, self.rows = trials, study, path, 0, []
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        complete = searcher.StoppedTrialsArePruned.on_trial_complete
        if hasattr(complete, "__wrapped__"):
            complete = complete.__wrapped__  # the wrapper of the study before

        @functools.wraps(complete)
        def counted(searcher_self, *args, **kwargs):
            complete(searcher_self, *args, **kwargs)
            self.ended += 1
            if self.ended in self.MILESTONES and self.ended < self.trials:
                self.rows.append(self.figures(self.ended, len(SPENT["optuna write per epoch"])))
                self.path.write_text(json.dumps({"study_trials": self.trials, "rows": self.rows}, indent=1) + "\n")

        searcher.StoppedTrialsArePruned.on_trial_complete = counted

    def figures(self, ended: int, epochs: int) -> dict:
        """The driver's costs from the study's start to now, when `ended` trials have ended."""
        cpu, wall = time.process_time() - self.cpu, time.perf_counter() - self.wall
        late = [s for n, s in ASKS if n >= ended * 0.9]
        early = [s for n, s in ASKS if n <= max(10, ended * 0.1)]
        db = self.study / "optuna.db"
        return {
            "trials": ended, "trial_epochs": epochs, "wall_s": round(wall, 1), "driver_cpu_s": round(cpu, 1),
            "driver_cpu_ms_per_trial_epoch": round(1000 * cpu / epochs, 2),
            "wall_ms_per_trial_epoch": round(1000 * wall / epochs, 2),
            "tpe_ask_ms_first_tenth": round(1000 * statistics.fmean(early), 2) if early else None,
            "tpe_ask_ms_last_tenth": round(1000 * statistics.fmean(late), 2) if late else None,
            "optuna_db_bytes": db.stat().st_size if db.exists() else None,
            "driver_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "seconds_by_part": {label: round(sum(s), 2) for label, s in sorted(SPENT.items())},
            "ms_per_trial_epoch_by_part": {label: round(1000 * sum(s) / epochs, 3)
                                           for label, s in sorted(SPENT.items())},
        }


def growth(rows: list[dict], key: str) -> list[float]:
    """Exponent k of cost ~ trials^k between successive trial counts (1: linear)."""
    out = []
    for a, b in zip(rows, rows[1:]):
        if a.get(key) and b.get(key):
            out.append(round(math.log(b[key] / a[key]) / math.log(b["trials"] / a["trials"]), 2))
    return out


def with_budget(space: str, epochs: int, folder: Path) -> Path:
    """A copy of the space file whose trials train `epochs` epochs (the recording holds more)."""
    import yaml

    from fashion_tune.space import resolve_space_path

    doc = yaml.safe_load(resolve_space_path(space).read_text())
    doc["fixed"]["epochs"] = epochs
    doc["description"] = f"{doc['description']}, cut to {epochs} epochs by benchmarks/driver_scale.py"
    path = folder / f"{resolve_space_path(space).stem}-{epochs}-epochs.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", nargs="+", type=int, default=[100, 1000, 10000])
    parser.add_argument("--at-once", type=int, default=64)
    parser.add_argument("--recording", default="results/reference/replay/curves.jsonl")
    parser.add_argument("--space", default="tabular")
    parser.add_argument("--epochs", type=int, help="the trials' budget, if not the space's")
    parser.add_argument("--studies", default="results/benchmarks/scale")
    parser.add_argument("--out", default="results/reference/replay/scale.json")
    args = parser.parse_args()
    args.recording = str(Path(args.recording).resolve())

    import logging

    from fashion_tune import ray_start

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("fashion_tune").setLevel(logging.WARNING)
    studies = Path(args.studies).resolve()
    studies.mkdir(parents=True, exist_ok=True)
    if args.epochs:
        args.space = str(with_budget(args.space, args.epochs, studies))
    instrument()
    ray_start.start_local(num_cpus=2)
    rows = []
    for trials in args.trials:
        rows.append(run(trials, args, studies, Path(args.out)))
        print(json.dumps(rows[-1]), flush=True)
    keys = ["driver_cpu_s", "optuna_db_bytes", "tpe_ask_ms_last_tenth", "driver_peak_rss_mib"]
    recording = Path(args.recording)
    from fashion_tune.space import load_space

    scale = {"at_once": args.at_once, "space": Path(args.space).stem, "epochs": load_space(args.space).max_epochs,
             "rows": rows,
             "recording": str(recording.relative_to(ROOT)) if ROOT in recording.parents else recording.name,
             "growth_exponent": {k: growth(rows, k) for k in keys},
             "growth_exponent_of_trial_epochs": growth(rows, "trial_epochs"),
             "windows": windows([*rows[-1]["within_study"], rows[-1]])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(scale, indent=1) + "\n")
    print(f"{'trials':>7} {'trial-epochs':>12} {'driver ms/epoch':>15} {'TPE ask ms (last tenth)':>24} "
          f"{'optuna.db MiB':>13} {'peak RSS MiB':>12}")
    for r in rows:
        print(f"{r['trials']:>7} {r['trial_epochs']:>12} {r['driver_cpu_ms_per_trial_epoch']:>15} "
              f"{str(r['tpe_ask_ms_last_tenth']):>24} {r['optuna_db_bytes'] / 2**20:>13.1f} "
              f"{r['driver_peak_rss_mib']:>12}")
    print(f"\nwithin the {rows[-1]['trials']}-trial study, between milestones of ended trials:")
    print(f"{'trials':>13} {'epochs/trial':>12} {'driver ms/epoch':>15} {'wall ms/epoch':>13} {'db bytes/trial':>14} "
          f"{'RSS MiB/1000 trials':>19}")
    for w in scale["windows"]:
        print(f"{'%d-%d' % tuple(w['trials']):>13} {w['trial_epochs_per_trial']:>12} "
              f"{w['driver_cpu_ms_per_trial_epoch']:>15} {w['wall_ms_per_trial_epoch']:>13} "
              f"{w['optuna_db_bytes_per_trial']:>14} {w['peak_rss_mib_per_1000_trials']:>19}")


if __name__ == "__main__":
    main()
