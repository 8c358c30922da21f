"""Classify new product photos with an exported model.

The model is an ExportDir (model.keras + model_card.json) or a .keras file; by default the newest
export, and before you have exported one, the reference model committed with the repository
(layout.resolve_export). A file that cannot be read as an image gets its own one-line error;
the others are still classified.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from fashion_tune import images
from fashion_tune.data import CLASS_NAMES
from fashion_tune.errors import UserError
from fashion_tune.layout import ExportDir
from fashion_tune.model import load_model

log = logging.getLogger(__name__)

DEFAULT_UNSURE_BELOW = 0.5  # used when the model card carries no review threshold from evaluate


class ExportedModel:
    """An exported model with its card: probabilities for model inputs, and what they mean for a
    user (the category, and whether a person should check it). predict and serve both use it."""

    def __init__(self, export: ExportDir):
        self.model = load_model(export.model)
        self.card = json.loads(export.card_json.read_text()) if export.card_json.is_file() else {"classes": list(CLASS_NAMES)}
        review = (self.card.get("test_metrics") or {}).get("review") or {}
        self.unsure_below = float(review.get("threshold", DEFAULT_UNSURE_BELOW))

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, 28, 28, 1) model inputs -> (N, 10); a direct call: no predict() set-up per batch."""
        return self.model(x, training=False).numpy()

    def describe(self, probs: np.ndarray) -> dict:
        order = np.argsort(-probs)
        top = float(probs[order[0]])
        return {
            "category": CLASS_NAMES[order[0]],
            "probability": top,
            "unsure": top < self.unsure_below,  # below the threshold evaluate found: a person should check
            "unsure_below": self.unsure_below,
            "probabilities": {CLASS_NAMES[i]: float(probs[i]) for i in order},
        }


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


def classify(paths, export: ExportDir) -> list[Prediction]:
    """Classify every file (folders expanded); unreadable ones carry their error."""
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
        model = load_model(export.model)
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


def format_json(predictions: list[Prediction], k: int, export: ExportDir) -> str:
    return json.dumps({"model": str(export.model), "predictions": [p.to_json(k) for p in predictions]}, indent=2)
