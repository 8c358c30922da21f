"""An exported model with its model card: probabilities for model inputs, and what they mean to
a user (the category, and whether a person should check it). `predict` and `serve` both answer
through it, so a photo gets the same answer from either.
"""

from __future__ import annotations

import json

import numpy as np

from fashion_tune.data import CLASS_NAMES, IMAGE_SHAPE
from fashion_tune.layout import ExportDir
from fashion_tune.model import load_model

DEFAULT_UNSURE_BELOW = 0.5  # used when the model card carries no review threshold from evaluate


class ExportedModel:
    """The model of an ExportDir (or a .keras file), and the review threshold from its card."""

    def __init__(self, export: ExportDir):
        self.model = load_model(export.model)
        self.card = json.loads(export.card_json.read_text()) if export.card_json.is_file() else {"classes": list(CLASS_NAMES)}
        review = (self.card.get("test_metrics") or {}).get("review") or {}
        self.unsure_below = float(review.get("threshold", DEFAULT_UNSURE_BELOW))
        # One traced graph for any batch size: an eager call of the reference model took 19.5 ms
        # for one image and this 1.9 ms (the service's replica, 2 cores); predict() sets up more.
        import tensorflow as tf

        self._forward = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True,
                                    input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32)])

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, 28, 28, 1) model inputs -> (N, 10), in inference mode (augmentation layers off)."""
        return self._forward(np.asarray(x, np.float32)).numpy()

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
