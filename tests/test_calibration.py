"""Calibration error, the review threshold and temperature scaling (calibration.py) on cases
whose answers are known, and a temperature-scaled model saved and loaded like any other."""

import numpy as np
import pytest

from fashion_tune import calibration


def test_calibration_error_and_review_threshold_of_known_cases():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.2, 1.0, 200_000)
    calibrated = rng.random(confidence.size) < confidence  # right exactly as often as it claims
    assert calibration.expected_calibration_error(confidence, calibrated)["ece"] < 0.01
    overconfident = rng.random(confidence.size) < confidence - 0.15
    assert calibration.expected_calibration_error(confidence, overconfident)["ece"] == pytest.approx(0.15, abs=0.01)
    review = calibration.review_thresholds(confidence, calibrated, chosen_on="these images")["review"]
    assert review.accuracy >= 0.98 and review.threshold >= 0.95 and review.chosen_on == "these images"
    assert calibration.accepted_at(1.01, confidence, calibrated) == {"threshold": 1.01, "coverage": 0.0,
                                                                     "accuracy": None}


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("sharpness", [0.5, 2.0])
def test_fit_temperature_finds_the_temperature_that_undoes_a_miscalibration(sharpness):
    """Labels drawn from softmax(z) (calibrated); the model says softmax(z * s): under-confident for
    s < 1, over-confident for s > 1. Fitted on 5,000 images, T comes out as s, and undoes it."""
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (5000, 10))
    labels = np.array([rng.choice(10, p=p) for p in softmax(logits)])
    said = softmax(logits * sharpness)
    fitted = calibration.fit_temperature(said, labels)
    assert fitted == pytest.approx(sharpness, rel=0.1)
    fixed = calibration.rescaled(said, fitted)
    assert np.array_equal(fixed.argmax(axis=1), said.argmax(axis=1))  # the same answers, only surer or less sure
    correct = said.argmax(axis=1) == labels
    before = calibration.expected_calibration_error(said.max(axis=1), correct)["ece"]
    after = calibration.expected_calibration_error(fixed.max(axis=1), correct)["ece"]
    assert after < 0.03 < before
    assert calibration.negative_log_likelihood(fixed, labels) < calibration.negative_log_likelihood(said, labels)
    assert np.allclose(calibration.rescaled(said, 1.0), said)


def test_a_temperature_scaled_model_answers_as_rescaled_and_loads_in_safe_mode(tmp_path):
    from fashion_tune import atomic
    from fashion_tune.config import TrainParams
    from fashion_tune.model import compiled_model, load_model

    model = compiled_model(TrainParams(conv_blocks=1, filters=4, dense_units=8))
    x = np.random.default_rng(2).random((16, 28, 28, 1), dtype=np.float32)
    scaled = calibration.with_temperature(model, 0.4)
    expected = calibration.rescaled(model.predict(x, verbose=0).astype(np.float64), 0.4)
    assert np.allclose(scaled.predict(x, verbose=0), expected, atol=1e-5)
    atomic.save_model(scaled, tmp_path / "calibrated.keras")
    loaded = load_model(tmp_path / "calibrated.keras")
    assert loaded.get_layer("temperature").temperature == 0.4
    assert np.allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)
