"""Retrain a configuration (a study's best) on the full training set, for its full epoch budget.

Writes <study>/retrain/: model.keras, history.csv, retrain.json (what was trained, on what data,
for how many epochs, how long), and tensorboard/ with the curves. With --early-stopping a
stratified slice of the training images is held out, training stops when its loss stops
improving, the best epoch's weights are kept, and the epoch chosen is recorded.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from fashion_tune import data
from fashion_tune.config import ConfigError, DataSettings, TrainParams
from fashion_tune.errors import UserError
from fashion_tune.results import BEST_CONFIG, write_json

log = logging.getLogger(__name__)

RETRAIN_DIR = "retrain"
MODEL_FILE = "model.keras"
RECORD_FILE = "retrain.json"


@dataclasses.dataclass
class FitResult:
    history: dict  # metric name -> one value per epoch
    epochs_run: int  # epochs actually trained
    chosen_epoch: int  # the epoch whose weights the model holds (early stopping), else epochs_run
    seconds: float


def fit(model, params: TrainParams, x: np.ndarray, y: np.ndarray, *, holdout=None, patience: Optional[int] = None,
        tensorboard_dir: Optional[Path] = None, verbose: Optional[int] = None) -> FitResult:
    """Train a compiled model for params.epochs on (x, y); the one fitting loop outside Tune.

    holdout: (x_val, y_val) to score each epoch on; with patience, early stopping on its loss.
    """
    import keras

    callbacks = []
    if tensorboard_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir), histogram_freq=0))
    if patience is not None:
        if holdout is None:
            raise ValueError("early stopping needs a holdout set")
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
        callbacks.append(stopper)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2  # a progress bar on a terminal, a line an epoch in logs
    began = time.perf_counter()
    history = model.fit(x, y, batch_size=params.batch_size, epochs=params.epochs, validation_data=holdout,
                        callbacks=callbacks, verbose=verbose).history
    seconds = time.perf_counter() - began
    epochs_run = len(history["loss"])
    chosen = epochs_run
    if patience is not None and "val_loss" in history:
        chosen = int(np.argmin(history["val_loss"])) + 1
    return FitResult({k: [float(v) for v in vs] for k, vs in history.items()}, epochs_run, chosen, seconds)


def save_model_atomically(model, path: Path) -> None:
    """Save beside the target, then rename: no half-written model is ever at `path`."""
    partial = path.with_name(f".{path.stem}.partial.keras")
    model.save(partial)
    os.replace(partial, path)


def read_best_config(path: Path) -> dict:
    """A best_config.json (written by a study), checked enough to retrain from."""
    try:
        best = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (a study writes best_config.json when it ends)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(best, dict) or not isinstance(best.get("params"), dict):
        raise UserError(f"{path}: no 'params' mapping; expected a study's best_config.json")
    try:
        TrainParams.from_config(best["params"])
    except ConfigError as e:
        raise UserError(f"{path}: params: {e}") from None
    return best


def config_path_for(study: Optional[str], config: Optional[str], results_dir: str) -> Path:
    if bool(study) == bool(config):
        raise UserError("give either --study NAME or --config FILE")
    return Path(config) if config else Path(results_dir) / study / BEST_CONFIG


def retrain(config_path: Path, *, epochs: Optional[int] = None, patience: Optional[int] = None,
            holdout_fraction: float = 0.1, data_settings: Optional[DataSettings] = None,
            out_dir: Optional[Path] = None, verbose: Optional[int] = None) -> Path:
    """Train the configuration in config_path; return the folder holding the model."""
    data_settings = data_settings or DataSettings()
    best = read_best_config(config_path)
    params = TrainParams.from_config(best["params"])
    if epochs is not None:
        params = dataclasses.replace(params, epochs=epochs)
    out_dir = Path(out_dir) if out_dir else Path(config_path).parent / RETRAIN_DIR
    if patience is not None and patience < 1:
        raise UserError(f"--early-stopping is {patience}, must be >= 1 epoch")
    if not 0 < holdout_fraction < 0.5:
        raise UserError(f"--holdout is {holdout_fraction}, must be > 0 and < 0.5")

    dataset = data.load(data_settings.data_dir)
    images, labels = data.training_set(dataset, data_settings.subset, params.seed)
    holdout = None
    if patience is not None:
        from sklearn.model_selection import train_test_split

        images, x_hold, labels, y_hold = train_test_split(
            images, labels, test_size=holdout_fraction, stratify=labels, random_state=params.seed)
        holdout = (data.to_model_input(x_hold), y_hold.astype(np.int32))
    x, y = data.to_model_input(images), labels.astype(np.int32)
    log.info("retraining %s on %d images for up to %d epochs%s", best.get("study", config_path), len(y), params.epochs,
             f" (early stopping, patience {patience}, on {len(holdout[1])} held-out images)" if holdout else "")

    import keras

    from fashion_tune.model import build_model, compile_model

    keras.utils.set_random_seed(params.seed)
    model = compile_model(build_model(params), params, len(y))
    out_dir.mkdir(parents=True, exist_ok=True)
    result = fit(model, params, x, y, holdout=holdout, patience=patience,
                 tensorboard_dir=out_dir / "tensorboard", verbose=verbose)
    save_model_atomically(model, out_dir / MODEL_FILE)
    _write_history(out_dir / "history.csv", result.history)
    write_json(out_dir / RECORD_FILE, {
        "study": best.get("study"),
        "config": str(Path(config_path).resolve()),
        "params": params.to_dict(),
        "epochs_budget": params.epochs,
        "epochs_run": result.epochs_run,
        "chosen_epoch": result.chosen_epoch,
        "early_stopping": {"patience": patience, "holdout_fraction": holdout_fraction} if patience else None,
        "train_images": int(len(y)),
        "subset": data_settings.subset,
        "seconds": result.seconds,
        "data": {"source": dataset.source, "checksums": dataset.checksums},
        "final": {k: v[result.chosen_epoch - 1] for k, v in result.history.items()},
    })
    log.info("model saved to %s (%d epochs in %.0f s)", out_dir / MODEL_FILE, result.epochs_run, result.seconds)
    return out_dir


def _write_history(path: Path, history: dict) -> None:
    keys = list(history)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *keys])
        for epoch in range(len(history[keys[0]])):
            writer.writerow([epoch + 1, *(history[k][epoch] for k in keys)])
