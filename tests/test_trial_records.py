"""A trial's record of its epochs, with Tune's real Trial, storage and logger code on local Ray: on
this machine's disk, written live in the study folder and cut back to the epoch a trial goes on from
after a driver killed outright; for a study in object storage, written in its working copy here,
surviving a pause (the copy in storage behind) and --resume on a machine with no working copy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fashion_tune.search.trial_records import TrialProgress, TrialResults


@pytest.fixture(scope="module")
def local_ray():
    import ray

    # A Ray of its own: a bare ray.init() joins a cluster another test started with `ray start`
    # (tests run two at a time), which refuses num_cpus.
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def make_trial(results_dir: Path, on_this_disk: bool = True):
    """A trial of a study in results_dir; not on_this_disk: the same folder behind a pyarrow
    filesystem that is not the local one (as object storage would be), so Tune stages its files."""
    import pyarrow.fs
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    results_dir.mkdir(parents=True, exist_ok=True)
    study = results_dir.parent.name  # Tune's staging folder is named by the study (and the second)
    storage = (StorageContext(storage_path=str(results_dir), experiment_dir_name=study) if on_this_disk else
               StorageContext(storage_path=results_dir.name, experiment_dir_name=study, storage_filesystem=(
                   pyarrow.fs.SubTreeFileSystem(str(results_dir.parent), pyarrow.fs.LocalFileSystem()))))
    trial = Trial("train", config={}, trial_id="a", stub=True, storage=storage)
    trial.relative_logdir = trial.storage.trial_dir_name = "trial_a"
    trial.init_local_path()
    return trial


def in_study(results_dir: Path) -> Path:
    return results_dir / results_dir.parent.name / "trial_a"


def checkpoint(trial, folder: Path, epoch: int = 1) -> None:
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult

    folder.mkdir(exist_ok=True)
    trial.on_checkpoint(_TrainingResult(checkpoint=Checkpoint(str(folder)), metrics={"training_iteration": epoch}))


def epochs_in(logger, path: Path) -> list[int]:
    if isinstance(logger, TrialResults):
        return [json.loads(line)["training_iteration"] for line in path.read_text().splitlines()]
    return [int(row["training_iteration"]) for row in csv.DictReader(path.open())]


LOGGERS = [(TrialResults, "result.json"), (TrialProgress, "progress.csv")]


@pytest.mark.parametrize("logger_class, file_name", LOGGERS)
def test_on_this_disk_the_record_is_live_in_the_study_and_cut_back_after_a_kill(tmp_path, local_ray, logger_class,
                                                                                file_name):
    trial, logger = make_trial(tmp_path / "results"), logger_class()
    logger.on_trial_start(0, [trial], trial)
    for epoch in (1, 2, 3):
        logger.on_trial_result(0, [trial], trial, {"training_iteration": epoch})
        assert epochs_in(logger, in_study(tmp_path / "results") / file_name) == list(range(1, epoch + 1))
    assert not Path(trial.local_path, file_name).exists()  # nothing staged for Tune to copy
    # The driver is killed outright; the last snapshot had the trial's checkpoint after epoch 1:
    # --resume goes on from there, and the record with it.
    checkpoint(trial, tmp_path / "checkpoint_1", epoch=1)
    resumed = logger_class()
    resumed.on_trial_start(0, [trial], trial)
    resumed.on_trial_result(0, [trial], trial, {"training_iteration": 2})
    assert epochs_in(resumed, in_study(tmp_path / "results") / file_name) == [1, 2]


def working_copy_of(trial) -> Path:
    """Where the trial's records are written for a study in object storage (storage.on_this_disk)."""
    from fashion_tune import storage

    return storage.on_this_disk(trial.storage.storage_filesystem, trial.path)


@pytest.mark.parametrize("logger_class, file_name", LOGGERS)
def test_a_paused_trial_keeps_its_earlier_epochs_when_the_stored_copy_lags(tmp_path, local_ray, logger_class,
                                                                           file_name, monkeypatch):
    """Object storage: the record is written in the study's working copy; when a paused trial is
    promoted, the copy in storage (pushed at Tune's snapshots, behind) does not replace it."""
    monkeypatch.setenv("FASHION_TUNE_CACHE", str(tmp_path / "cache"))
    trial, logger = make_trial(tmp_path / "results", on_this_disk=False), logger_class()
    logger.on_trial_start(0, [trial], trial)
    # the study's copy in storage was written before the first epoch...
    in_study(tmp_path / "results").mkdir(parents=True)
    (in_study(tmp_path / "results") / file_name).write_text("")
    logger.on_trial_result(0, [trial], trial, {"training_iteration": 1})
    checkpoint(trial, tmp_path / "checkpoint_1")
    # ...and the trial pauses at its rung, then is promoted before the next push.
    logger.on_trial_complete(0, [trial], trial)
    logger.on_trial_start(0, [trial], trial)
    logger.on_trial_result(0, [trial], trial, {"training_iteration": 2})
    assert epochs_in(logger, working_copy_of(trial) / file_name) == [1, 2]
    assert str(tmp_path / "cache") in str(working_copy_of(trial))


@pytest.mark.parametrize("logger_class, file_name", LOGGERS)
def test_a_resumed_study_continues_the_record_from_storage(tmp_path, local_ray, logger_class, file_name,
                                                          monkeypatch):
    """Object storage, --resume on a machine whose working copy lacks the record: it is read from
    storage first, then continued."""
    monkeypatch.setenv("FASHION_TUNE_CACHE", str(tmp_path / "cache"))
    trial, logger = make_trial(tmp_path / "results", on_this_disk=False), logger_class()
    logger.on_trial_start(0, [trial], trial)
    logger.on_trial_result(0, [trial], trial, {"training_iteration": 1})
    logger.on_trial_complete(0, [trial], trial)
    checkpoint(trial, tmp_path / "checkpoint_1")
    in_study(tmp_path / "results").mkdir(parents=True)  # as pushed
    (in_study(tmp_path / "results") / file_name).write_bytes((working_copy_of(trial) / file_name).read_bytes())
    (working_copy_of(trial) / file_name).unlink()  # another machine
    resumed = logger_class()
    resumed.on_trial_start(0, [trial], trial)
    resumed.on_trial_result(0, [trial], trial, {"training_iteration": 2})
    assert epochs_in(resumed, working_copy_of(trial) / file_name) == [1, 2]


def test_tensorboard_hides_the_epochs_a_restarted_trial_reports_again(tmp_path, local_ray):
    """A trial restarted from its checkpoint after epoch 1 reports epoch 2 again: TensorBoard (its own
    reader) shows each epoch once, the later value for epoch 2."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fashion_tune.search.trial_events import TrialScalars

    trial, logger = make_trial(tmp_path / "results"), TrialScalars(max_epochs=9)
    logger.on_trial_start(0, [trial], trial)
    for epoch in (1, 2, 3):
        logger.on_trial_result(0, [trial], trial, {"training_iteration": epoch, "val_accuracy": 0.1 * epoch})
    checkpoint(trial, tmp_path / "checkpoint_1", epoch=1)
    logger.on_trial_start(0, [trial], trial)  # restarted (a lost node): goes on after epoch 1
    logger.on_trial_result(0, [trial], trial, {"training_iteration": 2, "val_accuracy": 0.5})
    logger.on_trial_complete(0, [trial], trial)
    events = EventAccumulator(str(in_study(tmp_path / "results")))
    events.Reload()
    shown = [(e.step, round(e.value, 3)) for e in events.Scalars("val_accuracy")]
    assert shown == [(1, 0.1), (2, 0.5)], shown


def test_tensorboard_events_reach_the_file_within_seconds_without_the_driver_syncing_each_epoch(tmp_path, local_ray,
                                                                                               monkeypatch):
    """The driver's loop does not wait for the disk each epoch (tensorboardX fsyncs every flush); the
    writer's own thread writes the events out within FLUSH_SECONDS, while the trial runs."""
    import os
    import threading
    import time

    from fashion_tune.search import trial_events
    from fashion_tune.search.trial_events import TrialScalars
    from tests.conftest import tensorboard_steps

    synced_by = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced_by.append(threading.current_thread()), real_fsync(fd))[1])
    trial, logger = make_trial(tmp_path / "results"), TrialScalars(max_epochs=9)
    logger.on_trial_start(0, [trial], trial)
    for epoch in (1, 2, 3):
        logger.on_trial_result(0, [trial], trial, {"training_iteration": epoch, "val_accuracy": 0.1 * epoch})
    assert threading.main_thread() not in synced_by
    deadline = time.monotonic() + trial_events.FLUSH_SECONDS + 10
    while tensorboard_steps(in_study(tmp_path / "results")).get("val_accuracy") != [1, 2, 3]:
        assert time.monotonic() < deadline, "the events did not reach the file while the trial ran"
        time.sleep(0.5)
    logger.on_trial_complete(0, [trial], trial)
