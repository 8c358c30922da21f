"""Replayed studies: the real driver (searcher, every scheduler, optuna.db, reports) with trials that
report recorded curves (search/replay.py), and the i-epoch cut's decisions, checked against the rule
worked out by hand from the order the trials ran in, in one run and across --resume."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from fashion_tune import recording
from fashion_tune.recording import RecordingError
from fashion_tune.search.replay import Curves
from fashion_tune.space import load_space
from tests.conftest import interrupted_search, rising_curve
from tests.test_search import (
    assert_epochs_intact,
    assert_optuna_study_matches_leaderboard,
    read_leaderboard,
    run_cli,
)


def test_a_recording_must_cover_what_the_space_can_propose(recorded_table, tmp_path):
    space_path, path = recorded_table
    space = load_space(space_path)
    assert len(Curves.for_space(path, space).runs) == 6
    lines = path.read_text().splitlines()
    short = tmp_path / "short.jsonl"
    short.write_text("\n".join(line for line in lines if '"learning_rate": 0.1' not in line) + "\n")
    with pytest.raises(RecordingError, match=r'"filters": 8, "learning_rate": 0.1}, which .* has no run'):
        Curves.for_space(short, space)
    other = tmp_path / "other.yaml"
    other.write_text(space_path.read_text().replace('"conv_blocks": 1', '"conv_blocks": 2'))
    with pytest.raises(RecordingError, match="recorded with fixed values"):
        Curves.for_space(path, load_space(other))
    longer = tmp_path / "longer.yaml"
    longer.write_text(space_path.read_text().replace('"epochs": 9', '"epochs": 27'))
    with pytest.raises(RecordingError, match="holds runs of 9 epochs, but .* trains trials for 27"):
        Curves.for_space(path, load_space(longer))
    continuous = tmp_path / "continuous.yaml"
    continuous.write_text(space_path.read_text().replace(
        "{type: categorical, choices: [0.001, 0.01, 0.1]}", "{type: float, low: 0.001, high: 0.1}"))
    with pytest.raises(RecordingError, match="learning_rate must be categorical"):
        Curves.for_space(path, load_space(continuous))


def test_a_recording_cut_short_while_written_loses_only_its_last_line(recorded_table, tmp_path):
    _, path = recorded_table
    cut = tmp_path / "cut.jsonl"
    cut.write_text(path.read_text()[:-40])
    assert len(recording.read(cut)) == len(recording.read(path)) - 1
    broken = tmp_path / "broken.jsonl"
    lines = path.read_text().splitlines()
    broken.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(RecordingError, match="broken.jsonl, line 2: not a recorded run"):
        recording.read(broken)


def test_seed_zero_replays_the_recording_and_other_seeds_move_by_the_measured_spread(recorded_table):
    space_path, path = recorded_table
    curves = Curves.for_space(path, load_space(space_path))
    recorded = {"learning_rate": 0.001, "filters": 8}  # recorded under seeds 0, 1 and 2
    assert curves.curve(recorded, 0) == rising_curve(0.80, 0.5)
    assert curves.curve(recorded, 2) == rising_curve(0.80, 0.5, 0.006)
    # Seeds 0-2 differ by 0.003 a seed at every epoch: a standard deviation of 0.003.
    assert np.allclose(curves.seed_spread["val_accuracy"], 0.003, atol=1e-4)
    other = {"learning_rate": 0.1, "filters": 16}  # seed 0 only
    base = [e["val_accuracy"] for e in curves.curve(other, 0)]
    moved = [e["val_accuracy"] for e in curves.curve(other, 5)]
    shift = np.subtract(moved, base)
    assert np.allclose(shift, shift[0], atol=1e-4) and 0 < abs(shift[0]) < 0.003 * 4  # one draw, held
    assert curves.curve(other, 5) == curves.curve(other, 5)  # the same study replays the same curves
    assert curves.curve(other, 6) != curves.curve(other, 5)
    at_budget = [rising_curve(0.80, 0.5, 0.003 * seed)[-1]["val_accuracy"] for seed in (0, 1, 2)]
    assert curves.full_budget_accuracy(recorded, 9) == pytest.approx(np.mean(at_budget))


def epochs_by_the_rule(curves: list[list[float]], rungs: list[int], reduction_factor: int, budget: int) -> list[int]:
    """ASHA's rule worked out by hand for trials run one at a time, in order (the i-epoch cut is one
    rung): at each rung a trial goes on when its value is not below the (1 - 1/R) quantile of the
    values of the trials that reached that rung before it; it is counted there either way."""
    reached: dict[int, list[float]] = {rung: [] for rung in rungs}
    trained = []
    for values in curves:
        epochs = budget
        for rung in rungs:
            before, value = list(reached[rung]), values[rung - 1]
            reached[rung].append(value)
            if before and value < np.percentile(before, (1 - 1 / reduction_factor) * 100):
                epochs = rung
                break
        trained.append(epochs)
    return trained


def trials_in_order(study) -> list[list[float]]:
    """Each trial's val accuracy per epoch, in the order the trials were proposed (Optuna's numbers)."""
    import optuna

    stored = optuna.load_study(study_name=study.name, storage=f"sqlite:///{study / 'optuna.db'}")
    order = [t.user_attrs["trial_id"] for t in sorted(stored.trials, key=lambda t: t.number)]
    return [[json.loads(line)["val_accuracy"]
             for line in (study / f"trial_{trial_id}" / "result.json").read_text().splitlines()]
            for trial_id in order]


def assert_decided_as_the_rule_says(study, rungs: list[int], reduction_factor: int, budget: int = 9) -> None:
    curves = trials_in_order(study)
    expected = epochs_by_the_rule(curves, rungs, reduction_factor, budget)
    assert [len(values) for values in curves] == expected, curves
    assert min(expected) < budget and max(expected) == budget  # the table makes the cut bite


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module's in-process studies (search's own start-up and shutdown are
    what the CLI tests cover): a replayed study then takes seconds."""
    import ray

    from fashion_tune import ray_start

    ray_start.start_local(num_cpus=2)
    yield
    ray.shutdown()


def replay_search(recorded_table, results_dir, name, **flags):
    """A replayed study through the driver, in this process (search.new_study, as the CLI calls it)."""
    from fashion_tune.search import new_study

    space, path = recorded_table
    return new_study({"space": str(space), "replay": str(path), "results_dir": str(results_dir), "name": name,
                      **flags}, {}).path


def test_the_i_epoch_cut_decides_as_its_rule_says(recorded_table, tmp_path, local_ray, caplog):
    caplog.set_level("INFO", logger="fashion_tune")
    study = replay_search(recorded_table, tmp_path, "cut", scheduler="i-epoch", grace_period=2, reduction_factor=2)
    assert_decided_as_the_rule_says(study, [2], 2)
    assert "stopped early by the i-epoch cut after epoch 2 of 9" in caplog.text
    summary = (study / "summary.md").read_text()
    assert "**Replayed, not trained**" in summary and str(recorded_table[1]) in summary
    assert "--data-dir" not in json.loads((study / "study.json").read_text())["command"]
    assert_optuna_study_matches_leaderboard(study)


def test_the_i_epoch_cut_goes_on_after_resume_with_the_values_before_it(recorded_table, tmp_path):
    """Interrupted in its sixth trial, then resumed: the trials after the resume are cut against the
    values of those before it (read back from their records), exactly as in one run."""
    space, path = recorded_table
    study = tmp_path / "cut"
    interrupted_search(["--space", space, "--replay", path, "--replay-time-scale", "20", "--results-dir", tmp_path,
                        "--name", "cut", "--scheduler", "i-epoch", "--grace-period", "2", "--reduction-factor", "2"],
                       until=lambda: len(list(study.glob("trial_*"))) >= 6)
    ran = len(list(study.glob("trial_*")))
    assert 6 <= ran < 12
    done = run_cli("search", "--resume", "cut", "--results-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(read_leaderboard(study)) == 12
    assert_decided_as_the_rule_says(study, [2], 2)
    assert_optuna_study_matches_leaderboard(study)


@pytest.mark.parametrize("scheduler, flags, trial_epochs", [
    ("none", {}, 12 * 9),
    ("halving", {"max_concurrent": 0}, None),
    ("hyperband", {"max_concurrent": 0}, None),
    ("asha", {}, None),
])
def test_a_replayed_study_runs_every_scheduler_to_its_end(recorded_table, tmp_path, local_ray, scheduler, flags,
                                                          trial_epochs):
    """A paused trial (halving, hyperband) goes on from its checkpoint with its epoch count intact."""
    study = replay_search(recorded_table, tmp_path, scheduler, scheduler=scheduler, **flags)
    assert_epochs_intact(study)
    rows = read_leaderboard(study)
    assert len(rows) == 12 and all(r["status"] in ("completed", "stopped early") for r in rows), rows
    epochs = [int(r["epochs_trained"]) for r in rows]
    if trial_epochs is not None:
        assert sum(epochs) == trial_epochs
    elif scheduler == "asha":  # one trial at a time: every decision is known (rungs at 1 and 3 epochs)
        assert_decided_as_the_rule_says(study, [1, 3], 3)
    else:
        assert sum(epochs) < 12 * 9 and max(epochs) == 9
    assert json.loads((study / "study.json").read_text())["finished_at"]
    assert_optuna_study_matches_leaderboard(study)
    assert_one_checkpoint_each(study)


def assert_one_checkpoint_each(study):
    """A finished study keeps each trial's last checkpoint only (search/old_checkpoints.py)."""
    kept = {d.name: sorted(c.name for c in d.glob("checkpoint_*")) for d in study.glob("trial_*")}
    assert all(len(names) == 1 for names in kept.values()), kept


def test_old_checkpoints_go_and_a_driver_killed_outright_still_resumes(recorded_table, tmp_path, monkeypatch):
    """Snapshots every step (TUNE_GLOBAL_CHECKPOINT_S=0), so old checkpoints are deleted while trials
    run; the driver is then killed with SIGKILL: --resume restores every trial from a checkpoint
    that is still there, no epoch repeated or skipped."""
    from tests.test_distributed import kill_session, start_search, trial_rows, wait_for

    space, path = recorded_table
    study = tmp_path / "dead"
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")
    process = start_search(space, ["--replay", path, "--replay-time-scale", "5", "--scheduler", "none",
                                   "--results-dir", tmp_path, "--name", "dead"])
    wait_for(lambda: any(len(rows) >= 6 for rows in trial_rows(study).values()), what="a trial at epoch 6")
    running = max(study.glob("trial_*"), key=lambda d: len(trial_rows(study).get(d.name, [])))
    assert len(list(running.glob("checkpoint_*"))) < 6  # its old checkpoints went while it ran
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    kill_session(process.pid)
    monkeypatch.delenv("TUNE_GLOBAL_CHECKPOINT_S")
    done = run_cli("search", "--resume", "dead", "--results-dir", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_leaderboard(study)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"completed"}, rows
    assert_epochs_intact(study)
    assert_optuna_study_matches_leaderboard(study)
    assert_one_checkpoint_each(study)


def test_replay_refuses_what_it_cannot_use(recorded_table, tmp_path):
    space, path = recorded_table
    done = run_cli("search", "--space", str(space), "--replay", str(path), "--subset", "1000",
                   "--results-dir", str(tmp_path))
    assert done.returncode == 2 and "--subset cannot go with --replay" in done.stderr
    done = run_cli("search", "--space", str(space), "--replay-time-scale", "1", "--results-dir", str(tmp_path))
    assert done.returncode == 2 and "--replay-time-scale does nothing without --replay" in done.stderr
    done = run_cli("search", "--space", str(space), "--replay", str(tmp_path / "none.jsonl"),
                   "--results-dir", str(tmp_path))
    assert done.returncode == 2 and "none.jsonl: cannot be read" in done.stderr
    assert not list(tmp_path.glob("*/study.json"))
