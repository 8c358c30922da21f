"""Retrain a configuration (a study's best) on the full training set, for its full epoch budget.

Writes a ModelDir (by default <study>/retrain/): model.keras, history.csv, retrain.json (what was
trained, on what data, for how many epochs, how long), and tensorboard/ with the curves. The data
folder and the validation share come from the study (best_config.json's `data`) unless given;
every training image is used unless --subset says otherwise. With --early-stopping a stratified
slice is held out, training stops when its loss stops improving, the best epoch's weights are
kept, and the epoch chosen is recorded.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping, Optional

from fashion_tune import atomic, data, training
from fashion_tune.config import DataSettings, TrainParams
from fashion_tune.errors import UserError
from fashion_tune.layout import ModelDir
from fashion_tune.model import compiled_model
from fashion_tune.results import read_best_config

log = logging.getLogger(__name__)


def data_settings_for(best: dict, given: Mapping[str, Any], seed: int) -> DataSettings:
    """The study's data folder and validation share, then what the command line gives (None: not
    given); all training images unless a subset is given; the configuration's seed."""
    study = best.get("data") or {}
    recorded = {"data_dir": data.recorded_folder(study.get("data_dir"), "the study"),
                "val_fraction": study.get("val_fraction")}
    return DataSettings.layered(recorded, given, {"seed": seed})


def retrain(config_path: Path, out: ModelDir, *, epochs: Optional[int] = None, patience: Optional[int] = None,
            data_flags: Optional[Mapping[str, Any]] = None, verbose: Optional[int] = None) -> ModelDir:
    """Train the configuration in config_path into `out`; return it."""
    best = read_best_config(config_path)
    params = TrainParams.from_config(best["params"])
    if epochs is not None:
        params = dataclasses.replace(params, epochs=epochs)
    if patience is not None and patience < 1:
        raise UserError(f"--early-stopping is {patience}, must be >= 1 epoch")
    settings = data_settings_for(best, data_flags or {}, params.seed)
    splits = data.prepare(settings, validation=patience is not None)
    log.info("retraining %s on %s for up to %d epochs%s", best.get("study", config_path), splits.describe(),
             params.epochs, f" (early stopping, patience {patience})" if patience else "")
    model = compiled_model(params, len(splits.y_train))
    out.path.mkdir(parents=True, exist_ok=True)
    result = training.fit(model, params, splits, patience=patience, tensorboard_dir=out.tensorboard, verbose=verbose)
    atomic.save_model(model, out.model)
    training.write_history(out.history, result.history)
    atomic.write_json(out.record, {
        "study": best.get("study"),
        "config": str(Path(config_path).resolve()),
        "params": params.to_dict(),
        "epochs_budget": params.epochs,
        "epochs_run": result.epochs_run,
        "chosen_epoch": result.chosen_epoch,
        "early_stopping": {"patience": patience, "holdout_fraction": settings.val_fraction} if patience else None,
        "train_images": int(len(splits.y_train)),
        "subset": settings.subset,
        "seconds": result.seconds,
        "data": {"source": splits.source, "checksums": splits.checksums},
        "final": result.final,
    })
    log.info("model saved to %s (%d epochs in %.0f s)", out.model, result.epochs_run, result.seconds)
    return out
