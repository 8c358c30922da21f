"""The one fitting loop outside Tune: retrain and baselines train with it.

A trial (search/trainable.py) fits epoch by epoch under Tune's control; everything else fits a compiled
model here, with TensorBoard curves, an optional held-out slice scored every epoch, and early
stopping on it that keeps the best epoch's weights. Given a backup folder, a fit saves its model
(weights and optimizer, as a trial's checkpoint does) and its history there after every epoch, so
the same fit started again after an interruption goes on from the last finished epoch. (Keras's
BackupAndRestore saves weights only, and could not load them back into our models.)
"""

from __future__ import annotations

import csv
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from fashion_tune import atomic, batches
from fashion_tune.config import TrainParams
from fashion_tune.data import Splits
from fashion_tune.layout import BackupDir
from fashion_tune.model import load_model


@dataclass
class FitResult:
    history: dict  # metric name -> one value per epoch
    epochs_run: int  # epochs actually trained
    chosen_epoch: int  # the epoch whose weights the model holds (early stopping), else epochs_run
    seconds: float
    model: object  # the Keras model trained (the one given, or the backup's it went on from)

    @property
    def final(self) -> dict:
        """Every metric at the chosen epoch."""
        return {k: v[self.chosen_epoch - 1] for k, v in self.history.items()}


EPOCH_SECONDS = "epoch_seconds"  # the history's column of each epoch's wall time


def fit(model, params: TrainParams, splits: Splits, *, patience: Optional[int] = None,
        tensorboard_dir: Optional[Path] = None, backup: Optional[BackupDir] = None,
        verbose: Optional[int] = None) -> FitResult:
    """Train a compiled model for params.epochs on splits' training arrays.

    Its validation slice, when it has one, is scored every epoch; with `patience`, training stops
    when that loss has not improved for `patience` epochs and the best epoch's weights are kept.
    With a backup folder, the model (weights and optimizer) and the history are saved there after every
    epoch, and a fit that finds them goes on from the last saved epoch with that model instead of
    `model` (the caller checks that the backup is of the same training, and removes the folder
    once it has kept the result). FitResult.model is the model trained.
    """
    import keras

    initial_epoch = 0
    if backup is not None:
        backup.path.mkdir(parents=True, exist_ok=True)
        initial_epoch, saved = last_backup(backup)
        if saved is not None:
            model = load_model(saved)
            _keep_history(backup, initial_epoch)  # rows of epochs after the saved one are trained again
    callbacks = [_epoch_clock()]
    if tensorboard_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir), histogram_freq=0))
    if backup is not None:
        callbacks += [keras.callbacks.CSVLogger(str(backup.history), append=True), _saver(backup)]
    if patience is not None:
        if splits.validation is None:
            raise ValueError("early stopping needs a validation slice")
        # After the saver: a best epoch's weights are backed up only once its model is, so the
        # backup never holds the best weights of an epoch that a resumed fit trains again.
        callbacks.append(_early_stopping(patience, backup))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2  # a progress bar on a terminal, a line an epoch in logs
    history = model.fit(**batches.for_fit(splits.x_train, splits.y_train, params.batch_size, splits.validation,
                                         splits.photo_views_for(params.photo_share), params.photo_share),
                        epochs=params.epochs, initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose).history
    if backup is not None:
        history = _backup_history(backup)
    history = {k: [float(v) for v in vs] for k, vs in history.items()}
    epochs_run = len(history["loss"])
    chosen = epochs_run
    if patience is not None and "val_loss" in history:
        chosen = int(np.argmin(history["val_loss"])) + 1
    return FitResult(history, epochs_run, chosen, sum(history[EPOCH_SECONDS]), model)


def last_backup(backup: BackupDir) -> tuple[int, Optional[Path]]:
    """The last epoch a backup folder holds a model of, and that model (0, None: none)."""
    saved = backup.epoch_models()
    return (max(saved), saved[max(saved)]) if saved else (0, None)


def _backup_rows(backup: BackupDir) -> dict:
    """Keras's CSVLogger rows by epoch (0-based, as it writes them), an epoch's last row winning."""
    path = backup.history
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {int(row["epoch"]): row for row in csv.DictReader(f)}


def _keep_history(backup: BackupDir, epochs: int) -> None:
    rows = [row for epoch, row in sorted(_backup_rows(backup).items()) if epoch < epochs]
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic.write_text(backup.history, out.getvalue())


def _backup_history(backup: BackupDir) -> dict:
    rows = _backup_rows(backup)
    epochs = sorted(rows)
    # Keras's CSVLogger writes NA in val_ columns of its own making when a fit has no validation data.
    keys = [key for key, value in rows[epochs[0]].items() if key != "epoch" and value != "NA"]
    return {key: [float(rows[e][key]) for e in epochs] for key in keys}


def _early_stopping(patience: int, backup: Optional[BackupDir]):
    """Keras's EarlyStopping on the held-out loss, keeping the best epoch's weights. With a backup
    folder it also keeps them there, and a fit that goes on from the backup goes on from them too:
    the best loss so far, its weights and the epochs waited since (Keras's own would start afresh
    and end on the best weights since the interruption, not the best epoch recorded)."""
    import keras

    class EarlyStopping(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            rows = sorted(_backup_rows(backup).items()) if backup else []
            losses = [float(row["val_loss"]) for _, row in rows]
            if not losses:
                return
            best_epoch = int(np.argmin(losses))
            if best_epoch == len(losses) - 1:  # the epoch the fit goes on from: the model holds its weights
                self.best_weights = self.model.get_weights()
            elif backup.best_weights.is_file():
                with np.load(backup.best_weights) as saved:
                    self.best_weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
            else:  # a backup from before the best weights were kept: start afresh, as Keras does
                return
            self.best_epoch, self.best, self.wait = best_epoch, losses[best_epoch], len(losses) - 1 - best_epoch

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if backup is not None and self.best_epoch == epoch:  # a new best (or the first epoch)
                weights = io.BytesIO()
                np.savez(weights, *self.best_weights)
                atomic.write_bytes(backup.best_weights, weights.getvalue())

    return EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)


def _saver(backup: BackupDir):
    import keras

    class Saver(keras.callbacks.Callback):
        """After each epoch: the model as epoch_<n>.keras (whole, or not at all), then the older one
        removed, so the folder always holds one complete model to go on from."""

        def on_epoch_end(self, epoch, logs=None):
            atomic.save_model(self.model, backup.epoch_model(epoch + 1))
            for done, older in backup.epoch_models().items():
                if done != epoch + 1:
                    older.unlink()

    return Saver()


def _epoch_clock():
    import keras

    class Clock(keras.callbacks.Callback):
        """Puts each epoch's wall seconds in its logs, so history and history.csv carry them."""

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs[EPOCH_SECONDS] = time.perf_counter() - self.began

    return Clock()


def write_history(path: Path, history: dict) -> None:
    """history.csv: a row an epoch, a column a metric."""
    keys = list(history)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["epoch", *keys])
    for epoch in range(len(history[keys[0]])):
        writer.writerow([epoch + 1, *(history[k][epoch] for k in keys)])
    atomic.write_text(path, out.getvalue())
