"""Retrain a configuration (a study's best) on the full training set, for its full epoch budget.

Writes a ModelDir (by default <study>/retrain/): model.keras, history.csv, retrain.json (what was
trained, on what data, for how many epochs, how long), and tensorboard/ with the curves. The
RetrainSettings (flags, else the space file's `retrain:` rule carried in best_config.json) may ask
for other epochs, for the study's top k trials as an ensemble (each in member<i>/, with its
history and curves), and for flip averaging; model.keras is then the one averaging model. The data
folder and the validation share come from the study (best_config.json's `data`) unless given;
every training image is used unless --subset says otherwise. With --early-stopping a stratified
slice is held out, training stops when its loss stops improving, the best epoch's weights are
kept, and the epoch chosen is recorded. With --calibrate a slice is held out too, and the saved
model's confidence is temperature-scaled on it and the review threshold chosen on it
(calibration.py), so that evaluate chooses nothing on the test set.

An interrupted retrain loses no finished epoch: each model's state is kept in its folder's backup/
after every epoch, and the same command started again goes on from there (early stopping then
goes on with its best epoch and patience as they were). The backups are removed once the model
is saved.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from fashion_tune import atomic, calibration, data, layout, training
from fashion_tune.config import ConfigError, DataSettings, RetrainSettings, TrainParams
from fashion_tune.errors import Interrupted, UserError
from fashion_tune.layout import BackupDir, ModelDir, StudyDir
from fashion_tune.model import compiled_model
from fashion_tune.records import Averaging, Calibration, RetrainRecord
from fashion_tune.results import read_best_config, top_configs

log = logging.getLogger(__name__)


def data_settings_for(best: dict, given: Mapping[str, Any], seed: int) -> DataSettings:
    """The study's data folder and validation share, then what the command line gives (None: not
    given); all training images unless a subset is given; the configuration's seed."""
    study = best.get("data") or {}
    recorded = {"data_dir": data.recorded_folder(study.get("data_dir"), "the study"),
                "val_fraction": study.get("val_fraction")}
    return DataSettings.layered(recorded, given, {"seed": seed})


def run(study: Optional[str], config: Optional[str], results_dir: str, out: Optional[str],
        flags: Mapping[str, Any], data_flags: Mapping[str, Any], patience: Optional[int] = None,
        verbose: Optional[int] = None) -> ModelDir:
    """The `retrain` command: the best configuration of --study (or the --config file), retrained
    as its space file's `retrain:` rule says, overridden by `flags` (RetrainSettings values; None:
    not given), into --out or where layout.retrain_dir_for says. With top K > 1 the study's K best
    trials are the members. Ctrl-C is an Interrupted that names the backups the same command goes on from."""
    config_path = layout.best_config_of(study, config, results_dir)
    folder = layout.retrain_dir_for(study, config, out, results_dir)
    layout.check_output(folder.path, "--out" if out else "the retrain folder", reads=[config_path])
    best = read_best_config(config_path)
    try:
        settings = RetrainSettings.layered(best.get("retrain") or {}, flags)
    except ConfigError as e:
        raise UserError(f"{config_path}: retrain: {e}") from None
    if patience is not None and patience < 1:
        raise UserError(f"--early-stopping is {patience}, must be >= 1 epoch")
    members = [best]
    if settings.top > 1:
        if not study:
            raise UserError(f"top {settings.top} (--top, or the space file's retrain: section) needs --study: "
                            "its leaderboard ranks the trials; --config names one configuration")
        asked_by = "--top" if flags.get("top") is not None else f"{config_path}: retrain.top (the space file's rule)"
        members = top_configs(StudyDir.named(results_dir, study), settings.top, asked_by)
    try:
        return retrain(best, config_path, folder, settings, members, patience, data_flags, verbose)
    except KeyboardInterrupt:
        backups = ", ".join(str(f.backup.path) for f in _folders(folder, len(members)))
        raise Interrupted("retrain stopped before its end; the same command goes on from its last finished "
                          f"epoch (kept in {backups})") from None


def retrain(best: dict, config_path: Path, out: ModelDir, settings: RetrainSettings, members: Sequence[dict],
            patience: Optional[int] = None, data_flags: Optional[Mapping[str, Any]] = None,
            verbose: Optional[int] = None) -> ModelDir:
    """Train each of `members` (best_config-like dicts; one: `best`, read from config_path) into
    `out` (an ensemble: into out's member folders, averaged as one model); return `out`."""
    params = [_params(config, settings) for config in members]
    data_settings = data_settings_for(best, data_flags or {}, params[0].seed)
    folders = _folders(out, len(members))
    for folder, member_params in zip(folders, params):
        _check_backup(folder.backup, {"params": member_params.to_dict(), "patience": patience,
                                      "calibrate": settings.calibrate, "data": dataclasses.asdict(data_settings)},
                      member_params.epochs)
    splits = data.prepare(data_settings, validation=patience is not None or settings.calibrate)
    if any(p.photo_share for p in params):
        from fashion_tune import photo_views

        splits = photo_views.with_views(splits)
    from fashion_tune import averaging  # Keras: only once the checks above have passed

    log.info("retraining %s on %s for up to %d epochs%s; the saved model %s", _what(best, config_path, len(members)),
             splits.describe(), max(p.epochs for p in params), f" (early stopping, patience {patience})" if patience
             else "", averaging.describe(settings.flip_tta, len(members)))
    out.path.mkdir(parents=True, exist_ok=True)
    trained, runs = [], []
    for number, (config, member_params, folder) in enumerate(zip(members, params, folders), start=1):
        model, fitted = _train(member_params, splits, folder, patience, verbose)
        trained.append(model)
        runs.append({"trial_id": config.get("trial_id"), "value": config.get("value"), **fitted})
        if len(members) > 1:
            log.info("member %d of %d (trial %s) trained in %.0f s", number, len(members), config.get("trial_id"),
                     fitted["seconds"])
    model = averaging.averaged(trained, settings.flip_tta)
    calibrated = None
    if settings.calibrate:
        model, calibrated = _calibrated(model, splits)
    atomic.save_model(model, out.model)
    record = _record(best, config_path, settings, runs, calibrated, patience, data_settings, splits)
    record.write(out.record)
    for folder in folders:
        shutil.rmtree(folder.backup.path, ignore_errors=True)
    log.info("model saved to %s (%d epochs in %.0f s)", out.model, sum(r["epochs_run"] for r in runs), record.seconds)
    return out


def _folders(out: ModelDir, members: int) -> list[ModelDir]:
    """Where each model trains: `out` itself, or an ensemble's member folders in it."""
    return [out] if members == 1 else [out.member(n) for n in range(1, members + 1)]


def _record(best: dict, config_path: Path, settings: RetrainSettings, runs: list[dict],
            calibrated: Optional[Calibration], patience: Optional[int], data_settings: DataSettings,
            splits: data.Splits) -> RetrainRecord:
    """retrain.json: the first member's training, every member's when there are several."""
    from fashion_tune import averaging

    first = runs[0]
    return RetrainRecord(
        study=best.get("study"), config=str(Path(config_path).resolve()), params=first["params"],
        epochs_budget=first["epochs_budget"], epochs_run=first["epochs_run"], chosen_epoch=first["chosen_epoch"],
        averaging=Averaging(flip_tta=settings.flip_tta, members=len(runs),
                            what=averaging.describe(settings.flip_tta, len(runs))),
        members=tuple(runs) if len(runs) > 1 else None,
        early_stopping={"patience": patience, "holdout_fraction": data_settings.val_fraction} if patience else None,
        calibration=calibrated, train_images=int(len(splits.y_train)), subset=data_settings.subset,
        seconds=sum(r["seconds"] for r in runs), data={"source": splits.source, "checksums": splits.checksums},
        final=first["final"])


def _calibrated(model, splits) -> tuple[object, Calibration]:
    """`model` with its confidence temperature-scaled on the held-out images, and the review
    threshold chosen on them (calibration.py); and what was fitted, for retrain.json."""
    from fashion_tune import batches

    probabilities = model.predict(batches.in_order(splits.x_val), verbose=0).astype(np.float64)
    correct = probabilities.argmax(axis=1) == splits.y_val
    temperature = calibration.fit_temperature(probabilities, splits.y_val)
    scaled = calibration.rescaled(probabilities, temperature)
    chosen_on = f"{len(splits.y_val):,} training images retrain held out"
    fitted = Calibration(
        temperature=temperature,
        held_out_images=int(len(splits.y_val)),
        ece_before=calibration.expected_calibration_error(probabilities.max(axis=1), correct)["ece"],
        ece_after=calibration.expected_calibration_error(scaled.max(axis=1), correct)["ece"],
        loss_before=calibration.negative_log_likelihood(probabilities, splits.y_val),
        loss_after=calibration.negative_log_likelihood(scaled, splits.y_val),
        review=calibration.review_thresholds(scaled.max(axis=1), correct, chosen_on)["review"],
    )
    log.info("calibrated on %d held-out images: temperature %.3f, calibration error %.4f -> %.4f; review threshold %s",
             fitted.held_out_images, temperature, fitted.ece_before, fitted.ece_after,
             f"{fitted.review.threshold:.2f}" if fitted.review else "none reaches the target")
    return calibration.with_temperature(model, temperature), fitted


def _params(config: dict, settings: RetrainSettings) -> TrainParams:
    params = TrainParams.from_config(config["params"])
    return params if settings.epochs is None else dataclasses.replace(params, epochs=settings.epochs)


def _what(best: dict, config_path: Path, members: int) -> str:
    study = best.get("study") or str(config_path)
    return f"the {members} best trials of {study}" if members > 1 else study


def _train(params: TrainParams, splits, folder: ModelDir, patience: Optional[int], verbose: Optional[int]):
    """One model, fitted (or finished, from the backup an interrupted run left), its curves and
    history in `folder`; the model and what its record says of it."""
    model = compiled_model(params, len(splits.y_train))
    folder.path.mkdir(parents=True, exist_ok=True)
    result = training.fit(model, params, splits, patience=patience, tensorboard_dir=folder.tensorboard,
                          backup=folder.backup, verbose=verbose)
    training.write_history(folder.history, result.history)
    return result.model, {"params": params.to_dict(), "epochs_budget": params.epochs, "epochs_run": result.epochs_run,
                   "chosen_epoch": result.chosen_epoch, "seconds": result.seconds, "final": result.final}


def _check_backup(backup: BackupDir, training_of: dict, epochs: int) -> None:
    """Go on from a backup of this same training (say so), refuse one of another, or start one."""
    recorded = backup.training_of
    if recorded.is_file():
        before = json.loads(recorded.read_text())
        if before != training_of:
            changed = [k for k in sorted({*before["params"], *training_of["params"]})
                       if before["params"].get(k) != training_of["params"].get(k)]
            changed += [k for k in ("patience", "calibrate", "data") if before.get(k) != training_of[k]]
            raise UserError(f"{backup.path}: holds an unfinished retrain with other settings ({', '.join(changed)}); "
                            "remove that folder to start afresh, or give --out another folder")
        done, _ = training.last_backup(backup)
        if done:
            log.info("going on from epoch %d of %d (the unfinished retrain in %s)", done, epochs, backup.path)
        return
    backup.path.mkdir(parents=True, exist_ok=True)
    atomic.write_json(recorded, training_of)
