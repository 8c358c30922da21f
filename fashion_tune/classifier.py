"""An exported model with its model card: probabilities for model inputs, and what they mean to
a user (the category, and whether a person should check it). `predict` and `serve` both answer
through ExportedModel.answer, so a photo gets the same answer from either.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from fashion_tune import images
from fashion_tune.data import CLASS_NAMES, IMAGE_SHAPE
from fashion_tune.layout import ExportDir
from fashion_tune.model import load_model
from fashion_tune.records import ModelCard

log = logging.getLogger(__name__)


class ExportedModel:
    """The model of an ExportDir (or a .keras file), and the review threshold from its card."""

    def __init__(self, export: ExportDir):
        self.card: Optional[ModelCard] = ModelCard.read(export.card_json)  # None: a bare .keras file
        self.model = load_model(export.model)
        review = self.card.review if self.card else None
        # No threshold is invented where the card has none: no answer is then marked unsure.
        self.unsure_below: Optional[float] = review.threshold if review else None
        if review is None:
            log.info("%s: no review threshold (%s), so no answer is marked unsure", export.model,
                     "the model card was written before an evaluation" if self.card else "no model card beside it")
        # One traced graph for any batch size: an eager call of the reference model took 19.5 ms
        # for one image and this 1.9 ms (the service's replica, 2 cores); predict() sets up more.
        import tensorflow as tf

        self._forward = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True,
                                    input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32)])

    def card_json(self) -> dict:
        """The model card as the service's GET /v1/model gives it (a bare model: its classes only)."""
        return self.card.to_json() if self.card else {"classes": list(CLASS_NAMES)}

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, 28, 28, 1) model inputs -> (N, 10), in inference mode (augmentation layers off)."""
        return self._forward(np.asarray(x, np.float32)).numpy()

    def answer(self, name: str, x: np.ndarray, probs: np.ndarray, include_input: bool = False) -> dict:
        """One classified photo, as `predict --json` and the service answer it: its name, the category,
        its probability, whether a person should check it, every class's probability (most likely
        first) and, when asked, the model input `x` as a PNG data URL."""
        order = np.argsort(-probs)
        top = float(probs[order[0]])
        answer = {
            "file": name,
            "category": CLASS_NAMES[order[0]],
            "probability": top,
            "unsure": self.unsure_below is not None and top < self.unsure_below,  # a person should check
            "unsure_below": self.unsure_below,
            "probabilities": {CLASS_NAMES[i]: float(probs[i]) for i in order},
        }
        if include_input:
            answer["model_input"] = images.to_data_url(x)
        return answer
