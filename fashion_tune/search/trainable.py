"""One trial: build the model its config describes, fit it epoch by epoch, report to Tune.

After every epoch the trial reports its metrics with a checkpoint (the whole model, optimizer
state included, as `.keras`), so its scheduler can stop or pause it at any rung and a restarted or resumed trial
picks up from its last finished epoch. The data arrive through Ray's object store
(tune.with_parameters in study.py), never re-read from disk here.

Tune reuses a trial's process for the next trial (reuse_actors, study.py): TensorFlow stays
imported and configured, and each trial begins by clearing Keras's state, so a trial in a reused
process builds, seeds and trains exactly as in a new one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import ray
from ray import tune

from fashion_tune import batches
from fashion_tune.config import TrainParams
from fashion_tune.data import Splits
from fashion_tune.layout import CheckpointDir
from fashion_tune.model import compiled_model, load_model
from fashion_tune.quiet_tensorflow import configure_tensorflow

log = logging.getLogger(__name__)


# Before handing this process to the next trial, Tune waits this long for the last trial's thread
# to end, then gives up on the study (tune_controller: "Could not re-use actor ... reset_config()");
# its 2 s default was too short on a loaded 2-core machine (seen in CI). Read in this process.
REUSE_WAIT_S = "60"


def train_trial(config: dict, splits: Splits) -> None:
    """Tune's function trainable. A failure raises, and Tune records the trial as errored."""
    os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = REUSE_WAIT_S
    params = TrainParams.from_config(config)
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "checkpoint created" line per epoch is noise
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    configure_tensorflow(threads=max(1, round(cpus)))
    import keras

    # the previous trial's model, graphs and layer names, in a reused process
    keras.backend.clear_session(free_memory=True)
    model, first_epoch = _restore_or_build(params, len(splits.y_train))
    model.fit(
        **batches.for_fit(splits.x_train, splits.y_train, params.batch_size, splits.validation,
                          splits.photo_views_for(params.photo_share), params.photo_share),
        epochs=params.epochs,
        initial_epoch=first_epoch,
        callbacks=[_epoch_reporter()],
        verbose=0,  # the driver tells each epoch (progress.py); Keras stays quiet inside trials
    )


def _restore_or_build(params: TrainParams, train_images: int):
    """The model from the trial's last checkpoint (retry, resume), or a new one."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return compiled_model(params, train_images), 0
    import keras

    keras.utils.set_random_seed(params.seed)  # shuffling and augmentation go on seeded
    with checkpoint.as_directory() as folder:
        saved = CheckpointDir(Path(folder))
        state = json.loads(saved.state.read_text())
        # Our own file, written by this trial; safe_mode stays on all the same.
        model = load_model(saved.model)
    log.info("resuming from the checkpoint after epoch %d", state["epoch"])
    return model, state["epoch"]


def _epoch_reporter():
    """A Keras callback that reports each epoch to Tune with a checkpoint.

    Ray's own Keras callbacks changed with most releases; this one only needs tune.report.
    """
    import keras

    class ReportEpochToTune(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            # Where the trial runs, in its results: which node, which GPUs (ids as Ray assigned them).
            context = ray.get_runtime_context()
            self._placement = {"node_id": context.get_node_id(),
                               "gpu_ids": ",".join(str(g) for g in context.get_accelerator_ids().get("GPU", []))}

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            seconds = time.perf_counter() - self._started
            loss = float(logs.get("loss", math.nan))
            if not math.isfinite(loss):
                # Recorded by Tune as the trial's error; Optuna learns the config failed.
                raise FloatingPointError(
                    f"training loss is {loss} after epoch {epoch + 1}; the learning rate is likely too high"
                )
            metrics = {
                "epoch": epoch + 1,
                "val_accuracy": float(logs["val_accuracy"]),
                "val_loss": float(logs["val_loss"]),
                "train_accuracy": float(logs["accuracy"]),
                "train_loss": loss,
                "epoch_time_s": seconds,
                **self._placement,
            }
            with tempfile.TemporaryDirectory() as folder:
                saved = CheckpointDir(Path(folder))
                self.model.save(saved.model)
                saved.state.write_text(json.dumps({"epoch": epoch + 1}))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    return ReportEpochToTune()
