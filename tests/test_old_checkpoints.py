"""search/old_checkpoints.py's rule, step by step as Tune calls it: a trial's older checkpoints go only
once the study's folder holds a snapshot written at the step that named the newer one. Tune copies
snapshots in the background and skips a copy while the one before is going, so the file there can be
newer than a snapshot yet hold the one before it (what a file's time let through, and a driver
killed then resumed a trial from a deleted checkpoint: tests/test_replay.py end to end)."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow.fs
import pytest
from ray.train import Checkpoint

from fashion_tune.search.old_checkpoints import OldCheckpoints

SNAPSHOT = "experiment_state-2026-12-06_23-00-00.json"


@pytest.fixture
def study(tmp_path):
    """A study's folder, one trial in it, and a callback that has seen the trial's first checkpoint."""
    folder = tmp_path / "study"
    (folder / "trial_a").mkdir(parents=True)
    trial = SimpleNamespace(trial_id="a", storage=SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem(),
                                                                  experiment_fs_path=str(folder)))
    return folder, trial, OldCheckpoints()


def save(folder, trial, callback, number: int) -> Checkpoint:
    path = folder / "trial_a" / f"checkpoint_{number:06d}"
    path.mkdir()
    checkpoint = Checkpoint.from_directory(str(path))
    callback.on_checkpoint(iteration=0, trials=[trial], trial=trial, checkpoint=checkpoint)
    return checkpoint


def store_snapshot(folder, step: int, runner_padding: int = 0, cut_at: str | None = None) -> None:
    """The snapshot file as Tune writes it: trials first, runner_data (with the step) near the end;
    cut_at: end the file just before this text (a file caught while it is copied)."""
    text = ('{"trial_data": [["...", "..."]], "runner_data": {"_iteration": %d, "_stopper": "%s"}, '
            '"stats": {"start_time": 0}}' % (step, "0" * runner_padding))
    (folder / SNAPSHOT).write_text(text[:text.index(cut_at)] if cut_at else text)


def named_at(step: int, folder, trial, callback) -> None:
    """Checkpoints 1 and 2 saved in Tune's step `step`, and that step's snapshot naming 2."""
    callback.on_step_begin(iteration=step, trials=[trial])
    save(folder, trial, callback, 1)
    save(folder, trial, callback, 2)
    callback.get_state()


def kept(folder) -> list[str]:
    return sorted(path.name for path in (folder / "trial_a").iterdir())


def test_a_snapshot_of_the_step_before_keeps_the_checkpoints_it_may_name(study):
    folder, trial, callback = study
    callback.on_step_begin(iteration=10, trials=[trial])
    save(folder, trial, callback, 1)
    save(folder, trial, callback, 2)
    callback.get_state()  # the snapshot of step 10 names checkpoint 2
    callback.on_step_begin(iteration=11, trials=[trial])
    save(folder, trial, callback, 3)
    store_snapshot(folder, 9)  # the copy of step 9's snapshot lands only now
    callback.get_state()
    assert kept(folder) == ["checkpoint_000001", "checkpoint_000002", "checkpoint_000003"]
    store_snapshot(folder, 11)  # step 11's, naming checkpoint 3
    callback.on_step_begin(iteration=12, trials=[trial])
    callback.get_state()
    assert kept(folder) == ["checkpoint_000003"]


def test_a_snapshot_of_the_naming_step_lets_the_older_checkpoints_go(study):
    folder, trial, callback = study
    named_at(4, folder, trial, callback)
    store_snapshot(folder, 4)
    callback.on_step_begin(iteration=5, trials=[trial])
    save(folder, trial, callback, 3)
    callback.get_state()
    assert kept(folder) == ["checkpoint_000002", "checkpoint_000003"]  # 3 is newer than what is stored


@pytest.mark.parametrize("cut_at, counts", [(None, True), ('5, "_stopper"', False), ('"runner_data"', False),
                                              ('"stats"', True)])
def test_a_snapshot_caught_while_copied_counts_only_with_its_whole_step(study, cut_at, counts):
    """Cut inside the step count it reads as an earlier step (55 as 5); cut before it, as none; cut
    after it, the trials' states are whole."""
    folder, trial, callback = study
    named_at(55, folder, trial, callback)
    callback.on_step_begin(iteration=56, trials=[trial])
    store_snapshot(folder, 55, cut_at=cut_at)
    callback.get_state()
    assert kept(folder) == (["checkpoint_000002"] if counts else ["checkpoint_000001", "checkpoint_000002"])


def test_a_runner_state_larger_than_the_tail_read_is_read_whole(study):
    folder, trial, callback = study
    named_at(7, folder, trial, callback)
    store_snapshot(folder, 7, runner_padding=40_000)
    callback.get_state()
    assert kept(folder) == ["checkpoint_000002"]


def test_the_study_end_keeps_each_trials_last_checkpoint_once_its_snapshot_is_stored(study):
    folder, trial, callback = study
    callback.on_step_begin(iteration=3, trials=[trial])
    save(folder, trial, callback, 1)
    trial.checkpoint = save(folder, trial, callback, 2)
    callback.on_step_end(iteration=4, trials=[trial])
    callback.get_state()  # Tune's last snapshot, after its last step
    store_snapshot(folder, 3)  # not it yet
    callback.on_experiment_end(trials=[trial])
    assert kept(folder) == ["checkpoint_000001", "checkpoint_000002"]
    store_snapshot(folder, 4)
    callback.on_experiment_end(trials=[trial])
    assert kept(folder) == ["checkpoint_000002"]
