"""Classify new product photos with an exported model.

The model is an export folder (model.keras + model_card.json) or a .keras file; by default the
newest export (recorded in <results_dir>/LATEST_EXPORT by `export`), and before you have exported
one, the reference model committed with the repository (results/reference/model). A file that
cannot be read as an image gets its own one-line error; the others are still classified.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from fashion_tune import images
from fashion_tune.data import CLASS_NAMES
from fashion_tune.errors import UserError

log = logging.getLogger(__name__)

LATEST_EXPORT = "LATEST_EXPORT"
EXPORT_MODEL = "model.keras"
# The reference study's export, committed with the repository: what a newcomer classifies with
# right after installing. Present in a source checkout (and an editable install), not in a wheel.
REFERENCE_EXPORT = Path(__file__).resolve().parents[1] / "results" / "reference" / "model"


@dataclass
class Prediction:
    file: str
    probabilities: dict = field(default_factory=dict)  # class name -> probability
    error: Optional[str] = None

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]

    def to_json(self, k: int) -> dict:
        if self.error:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "top": [{"class": c, "probability": p} for c, p in self.top(k)],
                "probabilities": self.probabilities}


def resolve_model(model: Optional[str], results_dir: str) -> Path:
    """The .keras file to classify with: --model (an export folder or a .keras file), else the
    newest export, else the reference model."""
    if model:
        path = Path(model)
        path = path / EXPORT_MODEL if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"--model {model}: no {EXPORT_MODEL} there (pass an export folder or a .keras file)")
        return path
    pointer = Path(results_dir) / LATEST_EXPORT
    if pointer.is_file():
        path = Path(pointer.read_text().strip()) / EXPORT_MODEL
        if path.is_file():
            return path
        raise UserError(f"{pointer} points at {path.parent}, which holds no {EXPORT_MODEL}; export again or pass --model")
    reference = REFERENCE_EXPORT / EXPORT_MODEL
    if reference.is_file():
        log.info("no export of your own in %s/: using the reference model %s", results_dir, REFERENCE_EXPORT)
        return reference
    raise UserError("no exported model found: run `fashion-tune export --study NAME --out DIR`, or pass --model DIR")


def classify(paths, model_path: Path) -> list[Prediction]:
    """Classify every file (folders expanded); unreadable ones carry their error."""
    from fashion_tune.evaluate import load_model

    files = images.expand_inputs(paths)
    if not files:
        raise UserError("no image files given (folders are searched for " + ", ".join(images.IMAGE_SUFFIXES) + ")")
    predictions, batch, batch_index = [], [], []
    for path in files:
        try:
            batch.append(images.load(path))
            batch_index.append(len(predictions))
            predictions.append(Prediction(str(path)))
        except images.ImageError as e:
            predictions.append(Prediction(str(path), error=str(e)))
    if batch:
        model = load_model(model_path)
        probabilities = model.predict(np.stack(batch), batch_size=256, verbose=0)
        for i, probs in zip(batch_index, probabilities):
            predictions[i].probabilities = {name: float(p) for name, p in zip(CLASS_NAMES, probs)}
    return predictions


def format_text(predictions: list[Prediction], k: int) -> tuple[list[str], list[str]]:
    """Lines for stdout (classified files) and stderr (errors)."""
    out, err = [], []
    for p in predictions:
        if p.error:
            err.append(f"fashion-tune: error: {p.error}")
        else:
            out.append(f"{p.file}: " + ", ".join(f"{name} {prob:.1%}" for name, prob in p.top(k)))
    return out, err


def format_json(predictions: list[Prediction], k: int, model_path: Path) -> str:
    return json.dumps({"model": str(model_path), "predictions": [p.to_json(k) for p in predictions]}, indent=2)
