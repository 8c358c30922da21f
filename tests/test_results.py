"""Reading a study folder, without Ray: trial status, ranking in either direction, warnings at the
edges of a range, and the reports. The folders are written here as Tune writes them."""

import csv
import json

import pytest

from fashion_tune import results
from fashion_tune.config import DataSettings, SearchSettings
from fashion_tune.errors import UserError
from fashion_tune.layout import StudyDir
from fashion_tune.space import load_space
from tests.test_records import record_of

SPACE = """\
metric: {metric}
mode: {mode}
fixed: {{epochs: 3}}
params:
  learning_rate: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
  filters: {{type: categorical, choices: [16, 32, 64]}}
"""
STARTED = 1_800_000_000.0


def stamp(second: int) -> str:
    """Tune's local date stamp, `second` seconds into the study."""
    return f"2027-01-15_08-00-{second:02d}"


def write_trial(study: StudyDir, trial_id: str, config: dict, epochs: list[tuple[float, float]],
                failed_at: list[int] = (), start: int = 0) -> None:
    """A trial folder: params.json, a result.json line an epoch (val_accuracy, val_loss), and an
    error.txt with a failure header for each second in failed_at."""
    folder = study.path / f"trial_{trial_id}"
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({**config, "epochs": 3, "seed": 0}))
    rows = [{"trial_id": trial_id, "training_iteration": i, "val_accuracy": acc, "val_loss": loss,
             "date": stamp(start + i), "timestamp": STARTED + start + i, "node_id": "node-a"}
            for i, (acc, loss) in enumerate(epochs, 1)]
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if failed_at:
        (folder / "error.txt").write_text("".join(
            f"Failure # {n} (occurred at {stamp(second)})\nTraceback (most recent call last):\n"
            f"FloatingPointError: training loss is nan after epoch {n}\n" for n, second in enumerate(failed_at, 1)))


@pytest.fixture
def make_study(tmp_path):
    def make(metric="val_accuracy", mode="max", finished=True) -> StudyDir:
        study = StudyDir(tmp_path / "unit")
        study.path.mkdir()
        study.space_copy.write_text(SPACE.format(metric=metric, mode=mode))
        study.record.write_text(json.dumps({
            "name": "unit", "settings": SearchSettings(name="unit").to_dict(), "data": DataSettings().to_dict(),
            "space": {"path": "space.yaml", "sha256": load_space(study.space_copy).sha256, "metric": metric,
                      "mode": mode},
            "command": "python -m fashion_tune search --name unit", "started_at": STARTED,
            "finished_at": STARTED + 60 if finished else None, "wall_s": 60.0}))
        write_trial(study, "full", {"learning_rate": 1e-3, "filters": 32}, [(0.70, 0.9), (0.80, 0.6), (0.85, 0.5)])
        write_trial(study, "short", {"learning_rate": 5e-3, "filters": 16}, [(0.60, 1.1)], start=10)
        write_trial(study, "nan", {"learning_rate": 9.9e-3, "filters": 64}, [(0.10, 2.3)], failed_at=[20], start=15)
        # crashed after epoch 1, retried from its checkpoint, and ran on to its budget
        write_trial(study, "healed", {"learning_rate": 1.05e-4, "filters": 64}, [(0.65, 1.0), (0.75, 0.7), (0.90,
                                                                                                            0.55)],
                    failed_at=[32], start=30)
        return study

    return make


def read(study: StudyDir, finished=True, metric="val_accuracy", mode="max"):
    return {t.trial_id: t for t in results.read_trials(study, metric, mode, 3, finished)}


def test_status_of_each_trial(make_study):
    trials = read(make_study())
    assert {k: t.status for k, t in trials.items()} == {
        "full": results.COMPLETED, "short": results.STOPPED, "nan": results.FAILED, "healed": results.COMPLETED}
    assert trials["nan"].error == "FloatingPointError: training loss is nan after epoch 1"
    assert (trials["healed"].failures, trials["healed"].error) == (1, "")
    assert (trials["full"].best_value, trials["full"].best_epoch, trials["full"].val_loss) == (0.85, 3, 0.5)
    assert trials["full"].nodes == ("node-a",)


def test_a_short_trial_of_a_study_still_running_is_unfinished_not_stopped(make_study):
    assert read(make_study(finished=False), finished=False)["short"].status == results.UNFINISHED


def test_a_trial_the_ledger_says_was_pruned_is_stopped_early_while_the_study_still_runs(make_study):
    """Interrupted, a study is not finished, yet the trials its scheduler stopped are over: Optuna's
    ledger (optuna.db, search/searcher.py) says PRUNED, and the leaderboard says stopped early."""
    import optuna

    study = make_study(finished=False)
    ledger = optuna.create_study(study_name="unit", storage=study.optuna_storage, direction="maximize")
    stopped = ledger.ask()
    stopped.set_user_attr("trial_id", "short")
    stopped.report(0.60, 1)
    ledger.tell(stopped, state=optuna.trial.TrialState.PRUNED)
    ledger.ask().set_user_attr("trial_id", "healed")  # still running, as far as the ledger knows
    statuses = {k: t.status for k, t in read(study, finished=False).items()}
    assert statuses == {"full": results.COMPLETED, "short": results.STOPPED, "nan": results.FAILED,
                        "healed": results.COMPLETED}


def test_ranking_follows_the_mode(make_study):
    study = make_study(metric="val_loss", mode="min")
    ranked = [t.trial_id for t in results.read_trials(study, "val_loss", "min", 3, True)]
    assert ranked == ["full", "healed", "short", "nan"]  # lowest loss first: 0.5, 0.55, 1.1, 2.3
    ranked = [t.trial_id for t in results.read_trials(study, "val_accuracy", "max", 3, True)]
    assert ranked == ["healed", "full", "short", "nan"]


def test_edge_warnings_name_the_side_and_the_bound(make_study):
    space = load_space(make_study().space_copy)
    low, high = (results.edge_warnings(space, {"learning_rate": lr, "filters": 32}) for lr in (1.05e-4, 9.9e-3))
    assert len(low) == 1 and "`learning_rate` = 0.000105 sits at the low edge of its range (0.0001)" in low[0]
    assert len(high) == 1 and "high edge" in high[0]
    assert results.edge_warnings(space, {"learning_rate": 1e-3, "filters": 32}) == []
    assert "`filters` = 64 sits at the high edge of its range (64)" in results.edge_warnings(
        space, {"learning_rate": 1e-3, "filters": 64})[0]


def test_reports_tell_the_study(make_study):
    study = make_study()
    report = results.write_reports(study)
    assert report["best_value"] == 0.90 and report["trials"] == 4
    with open(study.leaderboard) as f:
        rows = list(csv.DictReader(f))
    assert [r["trial_id"] for r in rows] == ["healed", "full", "short", "nan"]
    assert [r["status"] for r in rows] == ["completed", "completed", "stopped early", "failed"]
    assert rows[0]["failures"] == "1" and "loss is nan" in rows[3]["error"]
    best = json.loads(study.best_config.read_text())
    assert (best["trial_id"], best["value"], best["best_epoch"]) == ("healed", 0.90, 3)
    assert best["params"]["learning_rate"] == 1.05e-4 and best["params"]["dense_units"] == 128  # complete TrainParams
    summary = study.summary.read_text()
    assert "Trials: 4 — 2 completed, 1 stopped early by ASHA, 1 failed" in summary
    assert "Recovered from crashes (retried from their checkpoints): 1 trials, 1 crashes" in summary
    assert "Trial-epochs trained: 8 (of 12 without early stopping)" in summary
    assert "sits at the low edge" in summary  # the best trial's learning rate
    assert "- `nan`: FloatingPointError" in summary
    assert "- Ray nodes that ran trials: 1\n" in summary
    # The commands name the folder the study is in now (settings say results/, where it ran).
    assert f"tensorboard --logdir {study.path}`" in summary


def test_a_resumed_studys_node_count_says_each_run_names_its_nodes_anew(make_study):
    """A resumed local study ran on one machine, but each run's Ray gave it a new node id."""
    study = make_study()
    record = json.loads(study.record.read_text())
    study.record.write_text(json.dumps({**record, "runs": [[STARTED, STARTED + 20], [STARTED + 30, STARTED + 60]]}))
    trial = study.path / "trial_healed" / "result.json"
    rows = [json.loads(line) for line in trial.read_text().splitlines()]
    trial.write_text("".join(json.dumps({**r, "node_id": "node-b" if i else r["node_id"]}) + "\n"
                             for i, r in enumerate(rows)))
    results.write_reports(study)
    assert ("- Ray nodes that ran trials: 2 (over 2 runs of the search: each run's Ray names its nodes anew)"
            in study.summary.read_text())


def test_progress_is_every_epoch_in_order_with_the_best_so_far(make_study):
    progress = results.search_progress(make_study(), "val_accuracy", "max", record_of(started_at=STARTED))
    assert [p.trial_epochs for p in progress] == list(range(1, 9))
    assert [p.best for p in progress] == [0.70, 0.80, 0.85, 0.85, 0.85, 0.85, 0.85, 0.90]
    assert progress[-1].trial_id == "healed" and progress[-1].minutes == pytest.approx(33 / 60)


def test_a_study_without_trials_says_so(make_study, tmp_path):
    study = StudyDir(tmp_path / "empty")
    study.path.mkdir()
    with pytest.raises(UserError, match="not a study folder"):
        results.write_reports(study)
    full = make_study()
    for folder in full.trial_dirs():
        (folder / "params.json").unlink()
    with pytest.raises(UserError, match="the study has no trials yet"):
        results.write_reports(full)


def test_report_runs_without_ray_or_tensorflow(make_study):
    """`fashion-tune report`, as its --help promises: the reports are rewritten in a process that never
    imports Ray, TensorFlow or Keras."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    study = make_study()
    code = ("import sys\nfrom fashion_tune.cli import main\n"
            f"assert main(['report', '--study', 'unit', '--results-dir', {str(study.path.parent)!r}]) == 0\n"
            "heavy = [m for m in ('ray', 'tensorflow', 'keras') if m in sys.modules]\nassert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "# Study `unit`" in done.stdout and study.leaderboard.is_file()


def test_a_trial_whose_records_are_damaged_or_gone_is_listed_not_dropped(make_study, caplog):
    """A corrupt result.json once dropped its trial silently, and a deleted trial folder moved the
    best configuration to another trial while the last line still counted it (issue 34, 12)."""
    import optuna

    study = make_study()
    stored = optuna.create_study(study_name="unit", storage=study.optuna_storage, direction="maximize")
    for trial_id, values in {"full": [0.70, 0.80, 0.85], "gone": [0.95]}.items():
        trial = stored.ask()
        trial.set_user_attr("trial_id", trial_id)
        for epoch, value in enumerate(values, 1):
            trial.report(value, epoch)
        stored.tell(trial, values[-1])
    lines = (study.path / "trial_short" / "result.json").read_text().splitlines()
    (study.path / "trial_short" / "result.json").write_text("\n".join(["{broken", *lines]) + "\n")
    with caplog.at_level("WARNING"):
        results.write_reports(study)
    rows = {r["trial_id"]: r for r in csv.DictReader(study.leaderboard.open())}
    assert rows["short"]["status"] == results.DAMAGED and "line 1 is not JSON" in rows["short"]["error"]
    assert rows["gone"]["status"] == results.MISSING and rows["gone"]["epochs_trained"] == "1"
    assert json.loads(study.best_config.read_text())["trial_id"] == "healed"  # not the trial whose folder is gone
    summary = study.summary.read_text()
    assert "## Trials whose records are damaged or gone" in summary and "1 records damaged, 1 folder missing" in summary
    assert "trial gone: its folder trial_gone is gone" in caplog.text


def test_the_summary_s_minutes_are_those_the_time_budget_counts(make_study):
    """The wall time once left out the start-up (Ray, the data) that the time budget counts (issue 34)."""
    study = make_study()
    record = json.loads(study.record.read_text())
    record["runs"] = [[STARTED + 30, STARTED + 90]]  # the search began 30 s after the command started
    record["wall_s"] = 60.0
    study.record.write_text(json.dumps(record))
    results.write_reports(study)
    assert "- Wall time: 1m 30s" in study.summary.read_text()
