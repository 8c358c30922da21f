"""Score a trained model on the 10,000 untouched test images, and show where and how sure it is.

score() measures (no files); write_evaluation() writes an EvaluationDir, by default
<study>/evaluation/ (or --out): metrics.json; report.md putting numbers and pictures
together; the confusion matrix (counts and row-normalised) as CSV and PNG; a grid of the most
confident mistakes and the most confused class pairs; per-image probability bars; calibration
(expected calibration error, reliability diagram, and how accurate the predictions above each
confidence threshold are, to decide when a person should check); robustness: the accuracy on the
test images rendered as ordinary product photos in named tiers (robustness.py), with an example
strip per tier; and tensorboard/ with the same figures as images and the metrics as scalars.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from fashion_tune import atomic, batches, data, layout, plots, robustness
from fashion_tune.calibration import (
    CALIBRATION_BINS,
    REVIEW_TARGET_ACCURACY,
    expected_calibration_error,
    measured_on,
    review_thresholds,
)
from fashion_tune.data import CLASS_NAMES
from fashion_tune.layout import EvaluationDir, ModelDir
from fashion_tune.model import load_model
from fashion_tune.records import CHOSEN_ON_TEST, Calibration, RetrainRecord, Review

log = logging.getLogger(__name__)

ROBUSTNESS_FIGURE = "robustness_"  # + the tier's name: its example strip

@dataclass
class Scores:
    """A model's answers on labelled images, and every figure derived from them: no files."""

    x: np.ndarray  # the model inputs (N, 28, 28, 1), for the picture grids
    labels: np.ndarray  # true classes (N,)
    probabilities: np.ndarray  # (N, 10)
    counts: np.ndarray  # the confusion matrix: rows true class, columns prediction
    report: dict  # scikit-learn's classification report
    report_text: str  # the same as text
    calibration: dict  # expected_calibration_error()
    thresholds: dict  # review_thresholds(), chosen on these images

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1)

    @property
    def normalised(self) -> np.ndarray:
        """Each row of the confusion matrix as shares of its true class."""
        return self.counts / np.maximum(self.counts.sum(axis=1, keepdims=True), 1)

    def metrics(self) -> dict:
        """The numbers, ready for metrics.json."""
        calib, report = self.calibration, self.report
        loss = np.mean(-np.log(np.clip(self.probabilities[np.arange(len(self.labels)), self.labels], 1e-7, 1.0)))
        return {
            "test_images": int(len(self.labels)),
            "accuracy": float((self.predicted == self.labels).mean()),
            "loss": float(loss),
            "macro_precision": report["macro avg"]["precision"],
            "macro_recall": report["macro avg"]["recall"],
            "macro_f1": report["macro avg"]["f1-score"],
            "per_class": {name: {k: report[name][k] for k in ("precision", "recall", "f1-score", "support")}
                          for name in CLASS_NAMES},
            "most_confused": _most_confused(self.counts),
            "calibration": {"ece": calib["ece"], "bins": CALIBRATION_BINS,
                            "bin_accuracy": calib["bin_accuracy"].tolist(),
                            "bin_confidence": calib["bin_confidence"].tolist(),
                            "bin_counts": calib["bin_counts"].tolist()},
            "thresholds": self.thresholds["table"],
            "review": self.thresholds["review"].to_json() if self.thresholds["review"] else None,
            "mean_confidence": float(self.confidence.mean()),
        }


def score(model, images: np.ndarray, labels: np.ndarray) -> Scores:
    """Run `model` on uint8 images (N, 28, 28) and measure it against their labels."""
    from sklearn.metrics import classification_report, confusion_matrix

    x = data.to_model_input(images)
    probabilities = model.predict(batches.in_order(x), verbose=0).astype(np.float64)
    predicted = probabilities.argmax(axis=1)
    correct = predicted == labels
    classes = dict(labels=range(len(CLASS_NAMES)), target_names=CLASS_NAMES, digits=4, zero_division=0)
    confidence = probabilities.max(axis=1)
    return Scores(
        x=x, labels=labels, probabilities=probabilities,
        counts=confusion_matrix(labels, predicted, labels=range(len(CLASS_NAMES))),
        report=classification_report(labels, predicted, output_dict=True, **classes),
        report_text=classification_report(labels, predicted, **classes),
        calibration=expected_calibration_error(confidence, correct),
        thresholds=review_thresholds(confidence, correct, chosen_on=CHOSEN_ON_TEST),
    )


def evaluate_model(model, images: np.ndarray, labels: np.ndarray, out: EvaluationDir, title: str,
                   extra: Optional[dict] = None, sample_seed: int = 0, robustness_images: Optional[int] = None,
                   calibration: Optional[Calibration] = None) -> dict:
    """Score `model` on uint8 test images (N, 28, 28) and write every figure and report to `out`;
    the robustness tiers on the first `robustness_images` of them (None: all; 0: none). Where the
    model was calibrated (retrain --calibrate: `calibration`), the review threshold chosen there on
    held-out images is measured on the test images; otherwise one is chosen on them."""
    scores = score(model, images, labels)
    metrics = {"title": title, **scores.metrics(), **(extra or {})}
    if calibration:  # the review threshold was chosen on held-out images: measured here
        chosen = calibration.review
        measured = measured_on(chosen, scores.confidence, scores.predicted == scores.labels) if chosen else None
        metrics["review"] = measured.to_json() if measured else None
    strips = {}
    if robustness_images != 0:
        count = len(images) if robustness_images is None else robustness_images
        log.info("robustness: rendering %d test images as product photos in %d tiers", min(count, len(images)),
                 len(robustness.TIERS))
        metrics["robustness"], strips = robustness.measure(model, images, labels, count)
    write_evaluation(scores, metrics, out, sample_seed, strips, calibration)
    log.info("%s: test accuracy %.4f, loss %.4f, macro F1 %.4f, ECE %.4f; report in %s", title, metrics["accuracy"],
             metrics["loss"], metrics["macro_f1"], metrics["calibration"]["ece"], out.report)
    return metrics


def write_evaluation(scores: Scores, metrics: dict, out: EvaluationDir, sample_seed: int = 0,
                     strips: Optional[dict] = None, calibration: Optional[Calibration] = None) -> None:
    """metrics.json, report.md, the classification report, the confusion matrices as CSV, every
    figure as PNG (robustness strips too, when given), and all of it in TensorBoard: built beside
    `out` and put in its place whole, so an interrupted evaluation leaves the last one as it was and
    nothing of an earlier one stays beside a new one."""
    figures = _figures(scores, metrics["title"], sample_seed)
    for tier, (photos, inputs, predicted) in (strips or {}).items():
        figures[ROBUSTNESS_FIGURE + tier] = plots.photo_strip(
            photos, inputs, [CLASS_NAMES[p] for p in predicted], f"{metrics['title']}: robustness tier '{tier}' "
            "(top: the photo; bottom: what the model saw, and its answer)")
    with atomic.staged_folder(out.path) as staging:
        staged = EvaluationDir(staging)
        for name, png in figures.items():
            atomic.write_bytes(staged.figure(name), png)
        atomic.write_text(staged.table("confusion_matrix"), _matrix_csv(scores.counts.astype(int), "{}"))
        atomic.write_text(staged.table("confusion_matrix_normalized"), _matrix_csv(scores.normalised, "{:.4f}"))
        atomic.write_text(staged.classification_report, scores.report_text)
        _write_tensorboard(staged.tensorboard, metrics, figures)
        atomic.write_json(staged.metrics, metrics)
        atomic.write_text(staged.report, report_markdown(metrics, scores.report_text, calibration))


def evaluate(model_dir: ModelDir, out: Optional[Path] = None, data_dir: Optional[str] = None,
             robustness_images: Optional[int] = None) -> tuple[dict, EvaluationDir]:
    """The `evaluate` command: the model of model_dir on the full test set, written to `out` (by
    default the model's evaluation folder). The test images are read from --data-dir, else from
    the folder its retraining read, else the usual places."""
    evaluation = EvaluationDir(Path(out)) if out else model_dir.evaluation
    layout.check_output(evaluation.path, "--out" if out else "the evaluation folder", reads=[model_dir.model])
    record = RetrainRecord.read(model_dir.record)
    model = load_model(model_dir.model)
    recorded_source = record.data.get("source") if record else None
    dataset = data.load(data_dir or data.recorded_folder(recorded_source, "its retraining"))
    extra = {"model": str(model_dir.model.resolve()), "model_sha256": data.file_sha256(model_dir.model),
             "parameters": int(model.count_params()),
             "test_data": {"source": dataset.source, "checksums": dataset.checksums}}
    if record is not None:
        extra["retrain"] = record.to_json()
    title = (record.study if record else None) or model_dir.model.stem
    metrics = evaluate_model(model, dataset.test_images, dataset.test_labels.astype(np.int64), evaluation,
                             title=title, extra=extra, robustness_images=robustness_images,
                             calibration=record.calibration if record else None)
    return metrics, evaluation


def headline(metrics: dict) -> str:
    """One line of the figures that matter most."""
    return (f"test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, macro F1 {metrics['macro_f1']:.4f}, "
            f"ECE {metrics['calibration']['ece']:.4f}")


def _figures(scores: Scores, title: str, sample_seed: int) -> dict[str, bytes]:
    calib = scores.calibration
    return {
        "confusion_matrix": plots.confusion_matrix(scores.counts, CLASS_NAMES, False,
                                                   f"{title}: confusion matrix (counts)"),
        "confusion_matrix_normalized": plots.confusion_matrix(scores.normalised, CLASS_NAMES, True,
                                                              f"{title}: confusion matrix (share of each true class)"),
        "misclassified": _misclassified_grid(scores, title),
        "certainty": _certainty_sample(scores, title, sample_seed),
        "reliability": plots.reliability_diagram(calib["bin_confidence"], calib["bin_accuracy"],
                                                 calib["bin_counts"], calib["ece"], f"{title}: reliability"),
    }


def _most_confused(counts: np.ndarray, top: int = 10) -> list[dict]:
    off = counts.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    pairs = []
    for flat in order:
        true, pred = np.unravel_index(flat, off.shape)
        if off[true, pred] == 0:
            break
        pairs.append({"true": CLASS_NAMES[true], "predicted": CLASS_NAMES[pred], "count": int(off[true, pred]),
                      "share_of_true_class": float(off[true, pred] / counts[true].sum())})
    return pairs


def _misclassified_grid(scores: Scores, title: str, count: int = 36) -> bytes:
    """The mistakes the model was surest of: the ones worth a human look."""
    predicted, confidence, labels = scores.predicted, scores.confidence, scores.labels
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-confidence[wrong])][:count]
    captions = [f"true {CLASS_NAMES[labels[i]]}\npred {CLASS_NAMES[predicted[i]]} {confidence[i]:.2f}" for i in wrong]
    return plots.image_grid(scores.x[wrong], captions, f"{title}: most confident mistakes ({len(wrong)} of "
                            f"{int((predicted != labels).sum())})")


def _certainty_sample(scores: Scores, title: str, seed: int, count: int = 10) -> bytes:
    labels = scores.labels
    pick = np.random.default_rng(seed).choice(len(labels), size=min(count, len(labels)), replace=False)
    return plots.probability_bars(scores.x[pick], scores.probabilities[pick], labels[pick], CLASS_NAMES,
                                  f"{title}: class probabilities of {len(pick)} random test images")


def _matrix_csv(matrix: np.ndarray, fmt: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["true \\ predicted", *CLASS_NAMES])
    for name, row in zip(CLASS_NAMES, matrix):
        writer.writerow([name, *(fmt.format(v) for v in row)])
    return out.getvalue()


def _write_tensorboard(folder: Path, metrics: dict, figures: dict) -> None:
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for key in ("accuracy", "loss", "macro_f1", "macro_precision", "macro_recall"):
            tf.summary.scalar(f"test/{key}", metrics[key], step=0)
        tf.summary.scalar("test/ece", metrics["calibration"]["ece"], step=0)
        for tier, figures_of_tier in ((metrics.get("robustness") or {}).get("tiers") or {}).items():
            tf.summary.scalar(f"robustness/{tier}", figures_of_tier["accuracy"], step=0)
        for name, png in figures.items():
            tf.summary.image(f"evaluation/{name}", tf.image.decode_png(png, channels=4)[None], step=0)
    writer.close()


def report_markdown(metrics: dict, report_text: str, calibration: Optional[Calibration] = None) -> str:
    """report.md: the numbers and the figures (linked by their names in the evaluation folder) together."""
    figure, table = EvaluationDir.figure_name, EvaluationDir.table_name
    review = Review.from_json(metrics["review"]) if metrics["review"] else None
    lines = [
        f"# Evaluation: {metrics['title']}",
        "",
        f"On the {metrics['test_images']:,} test images, which no search or training step has seen.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test accuracy | **{metrics['accuracy']:.4f}** |",
        f"| test loss | {metrics['loss']:.4f} |",
        f"| macro precision / recall / F1 | {metrics['macro_precision']:.4f} / {metrics['macro_recall']:.4f} / "
        f"{metrics['macro_f1']:.4f} |",
        f"| expected calibration error ({metrics['calibration']['bins']} bins) | {metrics['calibration']['ece']:.4f} |",
        f"| mean confidence | {metrics['mean_confidence']:.4f} |",
    ]
    if "parameters" in metrics:
        lines.append(f"| parameters | {metrics['parameters']:,} |")
    lines += ["", "## Per class", "", "```", report_text.rstrip(), "```", "",
              "## Confusion matrix", "", "Rows are the true class, columns the prediction "
              f"(`{table('confusion_matrix')}`, `{table('confusion_matrix_normalized')}`).", "",
              f"![confusion matrix]({figure('confusion_matrix')})", "",
              f"![row-normalised]({figure('confusion_matrix_normalized')})", "",
              "## Most confused pairs", "", "| true | predicted as | count | share of the true class |",
              "|---|---|---|---|"]
    lines += [f"| {p['true']} | {p['predicted']} | {p['count']} | {p['share_of_true_class']:.1%} |"
              for p in metrics["most_confused"]]
    lines += ["", "## The most confident mistakes", "",
              "Would a person make them too? Many are ambiguous at 28x28 pixels (shirt, T-shirt, pullover, coat).", "",
              f"![misclassified]({figure('misclassified')})", "",
              "## Certainty", "", "Class probabilities for random test images (green: true class; red: a wrong top "
              "prediction).", "", f"![certainty]({figure('certainty')})", "",
              "### Calibration", "", f"![reliability diagram]({figure('reliability')})", "",
              "| confidence at least | share of images | their accuracy |", "|---|---|---|"]
    for row in metrics["thresholds"]:
        acc = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "—"
        lines.append(f"| {row['threshold']:.2f} | {row['coverage']:.1%} | {acc} |")
    lines += review_markdown(review, calibration)
    lines += robustness_markdown(metrics.get("robustness"))
    lines.append("")
    return "\n".join(lines)


def review_markdown(review: Optional[Review], calibrated: Optional[Calibration]) -> list[str]:
    """The report's words on the review threshold: where it was chosen, and what it gives here."""
    lines = [""]
    if calibrated:
        lines += [f"Confidences are temperature-scaled (T = {calibrated.temperature:.3f}, fitted on "
                  f"{calibrated.held_out_images:,} training images that retrain held out: their calibration error "
                  f"{calibrated.ece_before:.4f} before, {calibrated.ece_after:.4f} after).", ""]
    if not review:
        where = "on the held-out images" if calibrated else "on these test images"
        return lines + [f"No confidence threshold reaches {REVIEW_TARGET_ACCURACY:.0%} accuracy {where}: have a "
                        "person check every prediction, or improve the model."]
    lines.append(f"Send predictions below **{review.threshold:.2f}** confidence to a person: the "
                 f"{review.coverage:.1%} of test images at or above it are {review.accuracy:.2%} accurate "
                 f"(target {review.target_accuracy:.0%}). `predict` and `serve` mark answers below it as unsure.")
    if review.chosen_on_test:
        lines.append("Chosen on these test images, the one choice made on them (retrain held no images out to "
                     "choose it on; `retrain --calibrate` does): the accuracy above it is a slightly optimistic "
                     "estimate.")
    else:
        held = review.on_held_out
        lines.append(f"Chosen on {review.chosen_on} before the test set was seen (there {held.coverage:.1%} "
                     f"of images were at or above it, {held.accuracy:.2%} accurate); measured here.")
    return lines


def robustness_markdown(measured: Optional[dict]) -> list[str]:
    """The report's robustness section: accuracy per tier beside the raw images', and a strip each."""
    if not measured:
        return ["", "## Robustness on product photos", "", "Not measured (`--robustness-images 0`)."]
    lines = ["", "## Robustness on product photos", "",
             f"The first {measured['images']:,} test images rendered as product photos (seed {measured['seed']}), "
             "encoded as JPEG and sent through the preprocessing that `predict` and `serve` use "
             "(`fashion_tune/robustness.py` renders them). \"No garment found\" counts as wrong.", "",
             "| tier | conditions | accuracy | vs the raw 28x28 images | no garment found |", "|---|---|---|---|---|",
             f"| raw | the test images as they are | {measured['raw_accuracy']:.4f} | | |"]
    for name, tier in measured["tiers"].items():
        lines.append(f"| {name} | {tier['description']} | {tier['accuracy']:.4f} | {-tier['drop']:+.4f} | "
                     f"{tier['no_garment_found']} |")
    for name in measured["tiers"]:
        lines += ["", f"![{name}]({EvaluationDir.figure_name(ROBUSTNESS_FIGURE + name)})"]
    return lines
