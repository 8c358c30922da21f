"""A trial's record of its epochs survives a pause (its study copy behind the driver's) and --resume
(the driver has no copy yet), with Tune's real Trial, storage and logger code on local Ray."""

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


def make_trial(results_dir: Path):
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    trial = Trial("train", config={}, trial_id="a", stub=True,
                  storage=StorageContext(storage_path=str(results_dir), experiment_dir_name="study"))
    trial.storage.trial_dir_name = "trial_a"
    trial.init_local_path()
    return trial


def checkpoint(trial, folder: Path) -> None:
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult

    folder.mkdir(exist_ok=True)
    trial.on_checkpoint(_TrainingResult(checkpoint=Checkpoint(str(folder)), metrics={}))


def epochs_in(logger, path: Path) -> list[int]:
    if isinstance(logger, TrialResults):
        return [json.loads(line)["training_iteration"] for line in path.read_text().splitlines()]
    return [int(row["training_iteration"]) for row in csv.DictReader(path.open())]


LOGGERS = [(TrialResults, "result.json"), (TrialProgress, "progress.csv")]


@pytest.mark.parametrize("logger_class, file_name", LOGGERS)
def test_a_paused_trial_keeps_its_earlier_epochs_when_the_study_copy_lags(tmp_path, local_ray, logger_class,
                                                                          file_name):
    trial, logger = make_trial(tmp_path / "results"), logger_class()
    logger.on_trial_start(0, [trial], trial)
    # Tune's background copy to the study folder runs before the first epoch is written...
    Path(trial.path).mkdir(parents=True)
    Path(trial.path, file_name).write_text("")
    logger.on_trial_result(0, [trial], trial, {"training_iteration": 1})
    checkpoint(trial, tmp_path / "checkpoint_1")
    # ...and the trial pauses at its rung, then is promoted before the next copy.
    logger.on_trial_complete(0, [trial], trial)
    logger.on_trial_start(0, [trial], trial)
    logger.on_trial_result(0, [trial], trial, {"training_iteration": 2})
    assert epochs_in(logger, Path(trial.local_path, file_name)) == [1, 2]


@pytest.mark.parametrize("logger_class, file_name", LOGGERS)
def test_a_resumed_study_continues_the_record_from_the_study_folder(tmp_path, local_ray, logger_class, file_name):
    trial, logger = make_trial(tmp_path / "results"), logger_class()
    logger.on_trial_start(0, [trial], trial)
    logger.on_trial_result(0, [trial], trial, {"training_iteration": 1})
    logger.on_trial_complete(0, [trial], trial)
    checkpoint(trial, tmp_path / "checkpoint_1")
    Path(trial.path).mkdir(parents=True)
    Path(trial.path, file_name).write_bytes(Path(trial.local_path, file_name).read_bytes())
    # --resume: a new driver, whose staging folder does not hold the file yet.
    Path(trial.local_path, file_name).unlink()
    resumed = logger_class()
    resumed.on_trial_start(0, [trial], trial)
    resumed.on_trial_result(0, [trial], trial, {"training_iteration": 2})
    assert epochs_in(resumed, Path(trial.local_path, file_name)) == [1, 2]
