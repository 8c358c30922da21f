"""Integration: a study stopped and continued, through the CLI: Ctrl-C then --resume (ASHA and
halving), and a time budget that ends a study across a resume. Real Ray and Optuna; real
TensorFlow training on a Fashion-MNIST subset where the trial's own checkpoint is the point, and
recorded curves (search --replay) where only the driver's logic is; kept apart from test_search.py
so the two files run side by side."""

import json

import pytest

from tests.conftest import interrupted_search, reported_epochs
from tests.test_search import (
    assert_epochs_intact,
    assert_optuna_study_matches_leaderboard,
    read_leaderboard,
    run_cli,
)

pytestmark = pytest.mark.slow


def test_interrupted_study_resumes_to_exactly_its_trials(tmp_path, fashion_dir, write_space):
    space = write_space(
        "metric: val_accuracy\n"
        "fixed: {epochs: 1, conv_blocks: 1, filters: 8, dense_units: 16}\n"
        "params:\n"
        "  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"
        "search: {num_samples: 8, max_concurrent: 1, tpe_startup_trials: 2, grace_period: 1}\n"
    )
    results_dir = tmp_path / "r"
    study = results_dir / "cut"
    args = ["--results-dir", results_dir]
    # Interrupt once the first trial has finished and the second has begun.
    err = interrupted_search(["--space", space, "--subset", "1000", "--data-dir", fashion_dir, "--name", "cut", *args],
                             until=lambda: len(list(study.glob("trial_*/result.json"))) >= 2)
    assert "--resume cut" in err and "Tuner.restore" not in err and "Stop signal received" not in err
    # a trial caught before its first epoch: the leaderboard says unfinished
    assert "Failed to fetch metrics" not in err
    assert "fashion_tune: interrupted: saving the study's state for --resume cut" in err
    # The count names the trials that ran their one epoch, not those Tune cut short.
    ended = sum(1 for f in study.glob("trial_*/result.json") if f.read_text().strip())
    assert f"{ended} of 8 trials ended" in err, err[-2000:]
    assert json.loads((study / "study.json").read_text())["finished_at"] is None
    before = {p.name for p in study.glob("trial_*")}
    assert 2 <= len(before) < 8  # a reused trial process starts the next in ~2 s: 8 leave some unstarted
    assert_optuna_study_matches_leaderboard(study)

    done = run_cli("search", "--resume", "cut", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_leaderboard(study)
    assert len(rows) == 8 and len({r["trial_id"] for r in rows}) == 8  # none lost, none repeated
    assert before <= {p.name for p in study.glob("trial_*")}
    assert all(r["status"] in ("completed", "stopped early") for r in rows), rows
    assert json.loads((study / "study.json").read_text())["finished_at"]
    assert_optuna_study_matches_leaderboard(study)  # the same storage, continued


def test_a_time_budget_ends_the_study_as_finished_and_a_resume_spends_only_what_was_left(tmp_path, recorded_table):
    """The time budget is the driver's (a Tune stopper reading study.json): run on recorded curves, each
    epoch a fifth of a second, so the minutes go to the driver's logic and not to training."""
    from fashion_tune.records import StudyRecord

    budget_min = 1.0
    space, curves = recorded_table
    results_dir = tmp_path / "r"
    study = results_dir / "budget"
    # Interrupt once a trial has reported an epoch, well within the budget.
    interrupted_search(["--space", space, "--replay", curves, "--replay-time-scale", "20", "--max-concurrent", "2",
                        "--num-samples", "100", "--time-budget-min", budget_min, "--name", "budget",
                        "--results-dir", results_dir], until=lambda: reported_epochs(study) >= 1)
    first = StudyRecord.read(study / "study.json")
    assert first.finished_at is None and first.cut_by_time_budget is None
    used_min = first.running_seconds(first.runs[-1][1]) / 60
    assert used_min < budget_min

    done = run_cli("search", "--resume", "budget", "--results-dir", results_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"within the {budget_min - used_min:.1f} min left of its {budget_min:g}" in done.stderr
    assert f"time budget of {budget_min:g} min spent" in done.stderr
    record = StudyRecord.read(study / "study.json")
    assert record.finished_at and len(record.runs) == 2
    # Both runs together: the budget, and the few seconds it takes to stop the trials and write the reports.
    assert budget_min * 60 <= record.running_seconds(record.runs[-1][1]) < budget_min * 60 + 30
    rows = read_leaderboard(study)
    assert 2 < len(rows) < 100
    assert {r["status"] for r in rows} <= {"completed", "stopped early", "cut by the time budget"}, rows
    assert sorted(record.cut_by_time_budget) == sorted(r["trial_id"] for r in rows
                                                          if r["status"] == "cut by the time budget")
    assert_optuna_study_matches_leaderboard(study)
    assert f"finished, when its time budget of {budget_min:g} min was spent" in (study / "summary.md").read_text()
    again = run_cli("search", "--resume", "budget", "--results-dir", results_dir)
    assert again.returncode == 0 and "already finished" in again.stderr


def test_an_interrupted_halving_study_resumes_to_its_end(tmp_path, recorded_table):
    """Successive halving end to end, cut by Ctrl-C and resumed, on recorded curves (the driver's
    logic; a paused trial's Keras checkpoint is test_search's). Tune keeps no scheduler with the
    study: on --resume a new one gets every trial, finished ones too, and the unfinished ones come
    back at whatever epoch their checkpoints hold; none may be left waiting (schedulers.HyperBand,
    tests/test_schedulers.py for the cases one run cannot pin down)."""
    space, curves = recorded_table
    study = tmp_path / "cut"
    # Interrupt once a bracket has been halved (a trial went on to epoch 2): some trials wait at the
    # first rung, others have ended.
    err = interrupted_search(["--space", space, "--replay", curves, "--replay-time-scale", "10", "--max-concurrent",
                              "0", "--results-dir", tmp_path, "--name", "cut", "--scheduler", "halving"],
                             until=lambda: any(len(f.read_text().splitlines()) >= 2
                                               for f in study.glob("trial_*/result.json")))
    assert "stopped early by successive halving after epoch 1" in err, err[-3000:]
    done = run_cli("search", "--resume", "cut", "--results-dir", tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "12 of 12 trials ended (0 failed)" in done.stderr
    rows = read_leaderboard(study)
    assert len(rows) == 12 and {r["status"] for r in rows} <= {"completed", "stopped early"}, rows
    assert "completed" in {r["status"] for r in rows}
    assert_epochs_intact(study)
