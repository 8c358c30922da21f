"""Scoring apart from writing: score() on a model whose answers are known, write_evaluation()
filling an EvaluationDir, and the review threshold: chosen on the test images, or measured there
when retrain chose it on held-out images."""

import dataclasses
import json

import numpy as np
import pytest

from fashion_tune.data import CLASS_NAMES
from fashion_tune.records import Calibration, Review
from tests.conftest import constant_model


@pytest.fixture
def known():
    """100 images, 30 of them Trousers; the model says Trouser with probability 0.6 every time."""
    probabilities = np.full(10, 0.4 / 9)
    probabilities[1] = 0.6
    labels = np.array([1] * 30 + [0] * 70)
    images = np.random.default_rng(0).integers(0, 256, (100, 28, 28), dtype=np.uint8)
    return constant_model(probabilities), images, labels


def test_score_measures_what_the_model_answered(known):
    from fashion_tune.evaluate import score

    model, images, labels = known
    scores = score(model, images, labels)
    metrics = scores.metrics()
    assert metrics["accuracy"] == pytest.approx(0.30)
    assert scores.counts[:, 1].tolist() == [70, 30] + [0] * 8 and scores.counts.sum() == 100
    # loss: -log 0.6 for the 30 trousers, -log(0.4 / 9) for the 70 T-shirts
    assert metrics["loss"] == pytest.approx((30 * -np.log(0.6) + 70 * -np.log(0.4 / 9)) / 100, rel=1e-4)
    assert metrics["most_confused"][0] == {"true": CLASS_NAMES[0], "predicted": CLASS_NAMES[1], "count": 70,
                                           "share_of_true_class": 1.0}
    assert metrics["mean_confidence"] == pytest.approx(0.6, rel=1e-5)
    # every answer 0.6 sure and 30% right: the calibration error is the gap
    assert metrics["calibration"]["ece"] == pytest.approx(0.30, rel=1e-4)
    assert metrics["review"] is None  # no threshold reaches 98%


def test_write_evaluation_fills_the_evaluation_folder(known, tmp_path):
    from fashion_tune.evaluate import evaluate_model
    from fashion_tune.layout import EvaluationDir

    model, images, labels = known
    out = EvaluationDir(tmp_path / "evaluation")
    metrics = evaluate_model(model, images, labels, out, title="known", extra={"parameters": 7850}, robustness_images=0)
    assert json.loads(out.metrics.read_text()) == metrics and metrics["parameters"] == 7850
    for path in (out.report, out.classification_report, out.table("confusion_matrix"),
                 out.figure("misclassified"), out.figure("reliability")):
        assert path.stat().st_size > 0, path
    assert "| test accuracy | **0.3000** |" in out.report.read_text()
    assert "robustness" not in metrics and "Not measured (`--robustness-images 0`)" in out.report.read_text()
    assert not list(tmp_path.rglob("*.partial"))  # nothing half-written left behind
    evaluate_model(model, images, labels, out, title="again", robustness_images=0)
    assert len(list(out.tensorboard.glob("events.out.tfevents.*"))) == 1  # replaced, not shown twice


def test_a_review_threshold_chosen_on_held_out_images_is_measured_on_the_test_set_not_chosen(known, tmp_path):
    from fashion_tune.evaluate import evaluate_model
    from fashion_tune.layout import EvaluationDir

    model, images, labels = known  # every answer Trouser, 0.6 sure; 30% right
    chosen = Review(threshold=0.55, coverage=0.9, accuracy=0.985, target_accuracy=0.98,
                    chosen_on="500 training images retrain held out")
    calibrated = Calibration(temperature=0.8, held_out_images=500, ece_before=0.07, ece_after=0.02, loss_before=0.5,
                             loss_after=0.4, review=chosen)
    out = EvaluationDir(tmp_path / "evaluation")
    metrics = evaluate_model(model, images, labels, out, title="known", robustness_images=0, calibration=calibrated)
    assert metrics["review"] == {"threshold": 0.55, "coverage": 1.0, "accuracy": pytest.approx(0.30),
                                 "target_accuracy": 0.98, "chosen_on": "500 training images retrain held out",
                                 "on_held_out": {"coverage": 0.9, "accuracy": 0.985}}
    report = out.report.read_text()
    assert "Chosen on 500 training images retrain held out before the test set was seen" in report
    assert "temperature-scaled (T = 0.800" in report and "Chosen on these test images" not in report

    # Held-out images on which no threshold reached the target: none is chosen on the test images either.
    metrics = evaluate_model(model, images, labels, out, title="known", robustness_images=0,
                             calibration=dataclasses.replace(calibrated, review=None))
    assert metrics["review"] is None and "reaches 98% accuracy on the held-out images" in out.report.read_text()


def test_a_new_evaluation_replaces_the_folder_whole(known, tmp_path):
    """Re-run with --robustness-images 0, an evaluation once left the last one's tier pictures beside
    a report saying "not measured" (issue 34): the folder is built beside the old one and replaces it."""
    from fashion_tune import robustness
    from fashion_tune.evaluate import score, write_evaluation
    from fashion_tune.layout import EvaluationDir

    model, images, labels = known
    scores = score(model, images, labels)
    out = EvaluationDir(tmp_path / "evaluation")
    strip = (robustness.examples(0, images, seed=0, count=2), scores.x[:2], scores.predicted[:2])
    write_evaluation(scores, {"title": "known", **scores.metrics(), "robustness": None}, out,
                     strips={"packshot": strip})
    assert out.figure("robustness_packshot").is_file()
    write_evaluation(scores, {"title": "known", **scores.metrics()}, out)
    assert not list(out.path.glob("robustness_*.png")) and "Not measured" in out.report.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluation"]  # no staging folder left beside it
