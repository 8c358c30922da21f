"""How far a model's confidence can be trusted, and below what confidence a person should check:
the expected calibration error, the review threshold, and temperature scaling.

Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks") divides the
model's log-probabilities by one number T fitted on held-out images, then normalises again: the
predicted class never changes, only how sure the model says it is. Label smoothing, for one,
leaves a model under-confident (T < 1 sharpens it). retrain fits T and chooses the review
threshold on the images it held out (retrain --calibrate); evaluate then only measures both on
the test images. No TensorFlow at import: its Keras layer is keras_objects.Temperature.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fashion_tune.records import HeldOut, Review

CALIBRATION_BINS = 15
# A retailer lets predictions below the review threshold go to a person; above it, the
# accepted predictions must be at least this accurate.
REVIEW_TARGET_ACCURACY = 0.98
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
TEMPERATURE_RANGE = (0.05, 20.0)  # searched for the best T; far wider than any model needs


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Expected calibration error over equal-width confidence bins, with each bin's figures."""
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_conf = np.where(counts > 0, conf_sum / counts, 0.0)
        bin_acc = np.where(counts > 0, correct_sum / counts, 0.0)
    ece = float(np.sum(counts / len(confidence) * np.abs(bin_acc - bin_conf)))
    return {"ece": ece, "bin_confidence": bin_conf, "bin_accuracy": bin_acc, "bin_counts": counts}


def accepted_at(threshold: float, confidence: np.ndarray, correct: np.ndarray) -> dict:
    """The share of images predicted at or above `threshold`, and their accuracy (None: none)."""
    accepted = confidence >= threshold
    return {"threshold": float(threshold), "coverage": float(accepted.mean()),
            "accuracy": float(correct[accepted].mean()) if accepted.any() else None}


def review_thresholds(confidence: np.ndarray, correct: np.ndarray, chosen_on: str) -> dict:
    """accepted_at() for each of THRESHOLDS; and the review threshold chosen on these images (words
    for them: `chosen_on`): the lowest (in steps of 0.01) whose accepted predictions reach
    REVIEW_TARGET_ACCURACY (None: none does)."""
    review = None
    for t in np.round(np.arange(0.30, 1.0, 0.01), 2):
        row = accepted_at(t, confidence, correct)
        if row["accuracy"] is not None and row["accuracy"] >= REVIEW_TARGET_ACCURACY:
            review = Review(**row, target_accuracy=REVIEW_TARGET_ACCURACY, chosen_on=chosen_on)
            break
    return {"table": [accepted_at(t, confidence, correct) for t in THRESHOLDS], "review": review}


def measured_on(review: Review, confidence: np.ndarray, correct: np.ndarray) -> Review:
    """A review threshold chosen on other images (held out), with what it gives on these (the test
    images), and what it gave where it was chosen."""
    held_out = HeldOut(coverage=review.coverage, accuracy=review.accuracy)
    return dataclasses.replace(review, **accepted_at(review.threshold, confidence, correct), on_held_out=held_out)


def rescaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T): the same ranking of classes, sharper for T < 1, flatter for T > 1."""
    scaled = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the negative log-likelihood of rescaled(probabilities, T) on these
    (held-out) images: one number, so a few thousand images pin it down."""
    from scipy.optimize import minimize_scalar

    # Searched in log T: the likelihood is smooth there, and T stays positive.
    found = minimize_scalar(lambda log_t: negative_log_likelihood(rescaled(probabilities, np.exp(log_t)), labels),
                            bounds=tuple(np.log(TEMPERATURE_RANGE)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def with_temperature(model, temperature: float, name: str = "fashion_calibrated"):
    """`model` (images -> probabilities) with its probabilities rescaled by `temperature`, as one
    Keras model that saves, loads and exports like any other; the model is copied without its
    optimizer (model.inference_copy), which inference does not need."""
    import keras

    from fashion_tune.keras_objects import Temperature  # Keras, started quietly
    from fashion_tune.model import inference_copy

    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    outputs = Temperature(temperature, name="temperature")(inference_copy(model)(inputs))
    return keras.Model(inputs, outputs, name=name)
