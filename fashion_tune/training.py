"""The one fitting loop outside Tune: retrain and baselines train with it.

A trial (trainable.py) fits epoch by epoch under Tune's control; everything else fits a compiled
model here, with TensorBoard curves, an optional held-out slice scored every epoch, and early
stopping on it that keeps the best epoch's weights.
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

from fashion_tune import atomic
from fashion_tune.config import TrainParams
from fashion_tune.data import Splits


@dataclass
class FitResult:
    history: dict  # metric name -> one value per epoch
    epochs_run: int  # epochs actually trained
    chosen_epoch: int  # the epoch whose weights the model holds (early stopping), else epochs_run
    seconds: float

    @property
    def final(self) -> dict:
        """Every metric at the chosen epoch."""
        return {k: v[self.chosen_epoch - 1] for k, v in self.history.items()}


def fit(model, params: TrainParams, splits: Splits, *, patience: Optional[int] = None,
        tensorboard_dir: Optional[Path] = None, verbose: Optional[int] = None) -> FitResult:
    """Train a compiled model for params.epochs on splits' training arrays.

    Its validation slice, when it has one, is scored every epoch; with `patience`, training stops
    when that loss has not improved for `patience` epochs and the best epoch's weights are kept.
    """
    import keras

    callbacks = []
    if tensorboard_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir), histogram_freq=0))
    if patience is not None:
        if splits.validation is None:
            raise ValueError("early stopping needs a validation slice")
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2  # a progress bar on a terminal, a line an epoch in logs
    began = time.perf_counter()
    history = model.fit(splits.x_train, splits.y_train, batch_size=params.batch_size, epochs=params.epochs,
                        validation_data=splits.validation, callbacks=callbacks, verbose=verbose).history
    seconds = time.perf_counter() - began
    epochs_run = len(history["loss"])
    chosen = epochs_run
    if patience is not None and "val_loss" in history:
        chosen = int(np.argmin(history["val_loss"])) + 1
    return FitResult({k: [float(v) for v in vs] for k, vs in history.items()}, epochs_run, chosen, seconds)


def write_history(path: Path, history: dict) -> None:
    """history.csv: a row an epoch, a column a metric."""
    keys = list(history)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["epoch", *keys])
    for epoch in range(len(history[keys[0]])):
        writer.writerow([epoch + 1, *(history[k][epoch] for k in keys)])
    atomic.write_text(path, out.getvalue())
