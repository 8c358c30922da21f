"""Classify new product photos with an exported model.

The model is an ExportDir (model.keras + model_card.json) or a .keras file; by default the newest
export, and before you have exported one, the reference model committed with the repository
(layout.resolve_export). A file that cannot be read as an image, or has no garment in it, gets
its own one-line error; the others are still classified. A prediction below the review threshold
in the model card (the confidence above which answers were 98% accurate where it was chosen:
images retrain held out, else the test images) is marked unsure, as the service marks it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from fashion_tune import atomic, images
from fashion_tune.classifier import ExportedModel
from fashion_tune.errors import UserError
from fashion_tune.layout import ExportDir

log = logging.getLogger(__name__)

BATCH = 256  # model inputs per call


@dataclass
class Prediction:
    file: str
    answer: dict = field(default_factory=dict)  # ExportedModel.answer(): category, probabilities, unsure, ...
    model_input: Optional[np.ndarray] = None  # the 28x28 image the model saw
    error: Optional[str] = None

    def top(self, k: int) -> list[tuple[str, float]]:
        return list(self.answer["probabilities"].items())[:k]  # answer() orders them, most likely first

    def to_json(self, k: int) -> dict:
        if self.error:
            return {"file": self.file, "error": self.error}
        return {**self.answer, "top": [{"class": c, "probability": p} for c, p in self.top(k)]}


def classify(paths, export: ExportDir, include_input: bool = False) -> list[Prediction]:
    """Classify every file (folders expanded); unreadable ones, and those with no garment in
    them, carry their error. include_input: each answer carries its model input as a PNG data URL."""
    files = images.expand_inputs(paths)
    if not files:
        raise UserError("no image files given (folders are searched for " + ", ".join(images.IMAGE_SUFFIXES) + ")")
    predictions = []
    for path in files:
        try:
            predictions.append(Prediction(str(path), model_input=images.load(path)))
        except images.ImageError as e:
            predictions.append(Prediction(str(path), error=str(e)))
    found = [p for p in predictions if p.error is None]
    if found:
        model = ExportedModel(export)
        for start in range(0, len(found), BATCH):
            chunk = found[start: start + BATCH]
            for prediction, probs in zip(chunk, model.probabilities(np.stack([p.model_input for p in chunk]))):
                prediction.answer = model.answer(prediction.file, prediction.model_input, probs, include_input)
    return predictions


def write_inputs(predictions: list[Prediction], folder: Path) -> list[Path]:
    """Each classified photo's model input as <folder>/<photo name>.png (28x28, 8-bit); a name
    that two photos share gets -2, -3, ..., and a line that says which photo it is."""
    folder.mkdir(parents=True, exist_ok=True)
    written, taken = [], set()
    for prediction in predictions:
        if prediction.error:
            continue
        stem, n = Path(prediction.file).stem, 1
        while (name := stem + (f"-{n}" if n > 1 else "") + ".png") in taken:
            n += 1
        if n > 1:  # said, so nobody takes shoe-2.png for a second view of the first shoe.png
            log.info("%s: its model input is %s (%s.png is another photo's)", prediction.file, folder / name, stem)
        taken.add(name)
        atomic.write_bytes(folder / name, images.to_png(prediction.model_input))
        written.append(folder / name)
    return written


def format_text(predictions: list[Prediction], k: int) -> tuple[list[str], list[str]]:
    """Lines for stdout (classified files) and stderr (errors)."""
    out, err = [], []
    for p in predictions:
        if p.error:
            err.append(f"fashion-tune: error: {p.error}")
            continue
        line = f"{p.file}: " + ", ".join(f"{name} {prob:.1%}" for name, prob in p.top(k))
        if p.answer["unsure"]:
            line += (f"  [unsure: below the model's review threshold of {p.answer['unsure_below']:.0%}; "
                     "have a person check]")
        out.append(line)
    return out, err


def format_json(predictions: list[Prediction], k: int, export: ExportDir) -> str:
    return json.dumps({"model": str(export.model), "predictions": [p.to_json(k) for p in predictions]}, indent=2)
