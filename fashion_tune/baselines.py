"""The hand-designed models a tuned model must beat, as named presets, compared in one table.

  mlp               Flatten, Dense 128 relu, Dense 10
  cnn               Conv 16 5x5, BN, pool, dropout 0.25, Conv 32 5x5, BN, pool, dropout 0.25,
                    Dense 256, dropout 0.25, Dense 10
  cnn_unnormalised  the same CNN fed raw pixels (0-255) instead of [0, 1]

Each is made by model.compiled_model, trained by training.fit and scored by
evaluate.evaluate_model, exactly as a tuned model is; `--study NAME` adds that study's evaluated
model to the table. Each preset's folder under --out is a ModelDir with its evaluation/ inside.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from typing import Optional, Sequence

import numpy as np

from fashion_tune import atomic, data, training
from fashion_tune.config import DataSettings, TrainParams
from fashion_tune.data import CLASS_NAMES, IMAGE_SHAPE
from fashion_tune.errors import UserError
from fashion_tune.evaluate import evaluate_model
from fashion_tune.layout import BaselinesDir, StudyDir
from fashion_tune.model import compiled_model
from fashion_tune.records import RetrainRecord

log = logging.getLogger(__name__)

PRESETS = {
    "mlp": "Flatten, Dense 128 relu, Dense 10",
    "cnn": "Conv 16 5x5, BN, pool, dropout 0.25, Conv 32 5x5, BN, pool, dropout 0.25, Dense 256, dropout 0.25",
    "cnn_unnormalised": "the same CNN trained and evaluated on raw pixels (0-255)",
}
COLUMNS = ("model", "description", "parameters", "epochs", "train_seconds", "test_accuracy", "macro_f1",
           "test_loss", "ece")


def build_preset(name: str):
    """An uncompiled Keras model for a preset; every preset takes [0, 1] pixels, as data.py gives."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    if name == "mlp":
        x = layers.Flatten()(inputs)
        x = layers.Dense(128, activation="relu")(x)
    else:
        # Scaling back to 0-255 inside the model is the same as feeding raw pixels, while the
        # model keeps the one input convention that evaluate and predict use.
        x = layers.Rescaling(255.0, name="raw_pixels")(inputs) if name == "cnn_unnormalised" else inputs
        for filters in (16, 32):
            x = layers.Conv2D(filters, 5, padding="same", activation="relu")(x)
            x = layers.BatchNormalization()(x)
            x = layers.MaxPooling2D(2)(x)
            x = layers.Dropout(0.25)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(256, activation="relu")(x)
        x = layers.Dropout(0.25)(x)
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def run_baselines(names: Sequence[str], epochs: int, data_settings: DataSettings, out: BaselinesDir,
                  studies: Sequence[str] = (), results_dir: str = "results",
                  robustness_images: Optional[int] = None) -> list[dict]:
    """Train and evaluate each preset; write baselines.csv and baselines.md; return the rows."""
    study_rows = [_study_row(name, results_dir) for name in studies]  # fail before training, not after
    dataset = data.load(data_settings.data_dir)
    splits = data.prepare(data_settings, validation=False, dataset=dataset)
    # The seeds' models trained with Adam at its default rate, in batches of 128.
    params = TrainParams(optimizer="adam", learning_rate=1e-3, batch_size=128, epochs=epochs, seed=data_settings.seed)
    rows = []
    for name in names:
        log.info("baseline %s: training on %d images for %d epochs", name, len(splits.y_train), epochs)
        model = compiled_model(params, network=lambda _: build_preset(name))
        folder = out.preset(name)
        folder.path.mkdir(parents=True, exist_ok=True)
        result = training.fit(model, params, splits, tensorboard_dir=folder.tensorboard)
        atomic.save_model(model, folder.model)
        metrics = evaluate_model(model, dataset.test_images, dataset.test_labels.astype(np.int64), folder.evaluation,
                                 title=f"baseline {name}", robustness_images=robustness_images,
                                 extra={"parameters": int(model.count_params()), "epochs": epochs,
                                        "train_images": int(len(splits.y_train)), "train_seconds": result.seconds})
        rows.append(_row(name, PRESETS[name], metrics, epochs, result.seconds))
    rows += study_rows
    _write_table(out, rows, data_settings, epochs)
    return rows


def _row(name, description, metrics, epochs, seconds) -> dict:
    return {"model": name, "description": description, "parameters": metrics.get("parameters"), "epochs": epochs,
            "train_seconds": None if seconds is None else round(seconds, 1), "test_accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"], "test_loss": metrics["loss"], "ece": metrics["calibration"]["ece"]}


def _study_row(study: str, results_dir: str) -> dict:
    retrained = StudyDir.named(results_dir, study).retrained
    path = retrained.evaluation.metrics
    if not path.is_file():
        raise UserError(f"--study {study}: no {path}; run `fashion-tune evaluate --study {study}` first")
    metrics = json.loads(path.read_text())
    record = RetrainRecord.read(retrained.record)
    return _row(f"tuned: {study}", "best configuration of the study, retrained", metrics,
                record.epochs_run if record else None, record.seconds if record else None)


def _write_table(out: BaselinesDir, rows: list[dict], data_settings: DataSettings, epochs: int) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(out.table_csv, buffer.getvalue())
    trained_on = f"{data_settings.subset:,} training images" if data_settings.subset else "all 60,000 training images"
    lines = ["# Baselines against the tuned model", "",
             f"Baselines trained on {trained_on} for {epochs} epochs (Adam, learning rate 1e-3, batch 128); every "
             "model scored on the same 10,000 test images by the same evaluation code.", "",
             "| model | parameters | epochs | train time | test accuracy | macro F1 | test loss | ECE |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["test_accuracy"]):
        seconds = f"{r['train_seconds']:.0f} s" if r["train_seconds"] is not None else "—"
        params = f"{r['parameters']:,}" if r["parameters"] else "—"
        lines.append(f"| {r['model']} | {params} | {r['epochs'] or '—'} | {seconds} | **{r['test_accuracy']:.4f}** | "
                     f"{r['macro_f1']:.4f} | {r['test_loss']:.4f} | {r['ece']:.4f} |")
    lines += ["", "Presets:", ""] + [f"- `{name}`: {text}" for name, text in PRESETS.items()] + [""]
    atomic.write_text(out.table_md, "\n".join(lines))


def ranking(rows: list[dict]) -> list[str]:
    """A line a model, best test accuracy first."""
    return [f"{row['model']:<28} test accuracy {row['test_accuracy']:.4f}  macro F1 {row['macro_f1']:.4f}"
            for row in sorted(rows, key=lambda r: -r["test_accuracy"])]


def resolve_names(names: Optional[Sequence[str]]) -> list[str]:
    names = list(names or PRESETS)
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise UserError(f"unknown baseline {unknown[0]!r}; presets: {', '.join(PRESETS)}")
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice:
        raise UserError(f"--only: {twice} is given twice; each preset trains once")
    return names
