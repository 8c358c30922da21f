"""Score a trained model on the 10,000 untouched test images, and show where and how sure it is.

Writes to <study>/evaluation/ (or --out): metrics.json; report.md putting numbers and pictures
together; the confusion matrix (counts and row-normalised) as CSV and PNG; a grid of the most
confident mistakes and the most confused class pairs; per-image probability bars; calibration
(expected calibration error, reliability diagram, and how accurate the predictions above each
confidence threshold are, to decide when a person should check); and tensorboard/ with the same
figures as images and the metrics as scalars.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from fashion_tune import data, plots
from fashion_tune.data import CLASS_NAMES
from fashion_tune.errors import UserError
from fashion_tune.results import write_json
from fashion_tune.retrain import MODEL_FILE, RETRAIN_DIR

log = logging.getLogger(__name__)

EVALUATION_DIR = "evaluation"
METRICS_FILE = "metrics.json"
CALIBRATION_BINS = 15
# A retailer lets predictions below the review threshold go to a person; above it, the
# accepted predictions must be at least this accurate.
REVIEW_TARGET_ACCURACY = 0.98
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def model_path_for(study: Optional[str], model: Optional[str], results_dir: str) -> Path:
    if bool(study) == bool(model):
        raise UserError("give either --study NAME or --model PATH")
    path = Path(model) if model else Path(results_dir) / study / RETRAIN_DIR / MODEL_FILE
    if not path.is_file():
        hint = f"; run `fashion-tune retrain --study {study}` first" if study else ""
        raise UserError(f"{path}: no such model file{hint}")
    return path


def load_model(path: Path, compile: bool = True):
    """Load a .keras model; safe_mode stays on (no arbitrary code from the file).

    compile=False leaves out the optimizer: all inference needs, and a third of the file to save.
    """
    import keras

    try:
        return keras.models.load_model(path, safe_mode=True, compile=compile)
    except Exception as e:  # Keras raises several types for a bad file; the user needs one line
        raise UserError(f"{path}: cannot load it as a Keras model ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
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


def review_thresholds(confidence: np.ndarray, correct: np.ndarray) -> dict:
    """For each threshold: the share of images predicted at or above it, and their accuracy;
    and the lowest threshold whose accepted predictions reach REVIEW_TARGET_ACCURACY."""
    table = []
    for t in THRESHOLDS:
        accepted = confidence >= t
        table.append({"threshold": t, "coverage": float(accepted.mean()),
                      "accuracy": float(correct[accepted].mean()) if accepted.any() else None})
    review = None
    for t in np.round(np.arange(0.30, 1.0, 0.01), 2):
        accepted = confidence >= t
        if accepted.any() and correct[accepted].mean() >= REVIEW_TARGET_ACCURACY:
            review = {"threshold": float(t), "coverage": float(accepted.mean()),
                      "accuracy": float(correct[accepted].mean()), "target_accuracy": REVIEW_TARGET_ACCURACY}
            break
    return {"table": table, "review": review}


def evaluate_model(model, images: np.ndarray, labels: np.ndarray, out_dir: Path, title: str,
                   extra: Optional[dict] = None, sample_seed: int = 0) -> dict:
    """Score `model` on uint8 test images (N, 28, 28) and write every figure and report to out_dir."""
    from sklearn.metrics import classification_report, confusion_matrix

    out_dir.mkdir(parents=True, exist_ok=True)
    x = data.to_model_input(images)
    probabilities = model.predict(x, batch_size=512, verbose=0).astype(np.float64)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    correct = predicted == labels
    loss = float(np.mean(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0))))
    report = classification_report(labels, predicted, labels=range(len(CLASS_NAMES)), target_names=CLASS_NAMES,
                                   output_dict=True, digits=4, zero_division=0)
    report_text = classification_report(labels, predicted, labels=range(len(CLASS_NAMES)), target_names=CLASS_NAMES,
                                        digits=4, zero_division=0)
    counts = confusion_matrix(labels, predicted, labels=range(len(CLASS_NAMES)))
    normalised = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    calib = calibration(confidence, correct)
    thresholds = review_thresholds(confidence, correct)
    pairs = _most_confused(counts)

    figures = {
        "confusion_matrix": plots.confusion_matrix(counts, CLASS_NAMES, False, f"{title}: confusion matrix (counts)"),
        "confusion_matrix_normalized": plots.confusion_matrix(normalised, CLASS_NAMES, True,
                                                              f"{title}: confusion matrix (share of each true class)"),
        "misclassified": _misclassified_grid(x, labels, predicted, confidence, title),
        "certainty": _certainty_sample(x, labels, probabilities, title, sample_seed),
        "reliability": plots.reliability_diagram(calib["bin_confidence"], calib["bin_accuracy"],
                                                 calib["bin_counts"], calib["ece"], f"{title}: reliability"),
    }
    for name, png in figures.items():
        plots.save_png(png, out_dir / f"{name}.png")
    _write_matrix(out_dir / "confusion_matrix.csv", counts.astype(int), "{}")
    _write_matrix(out_dir / "confusion_matrix_normalized.csv", normalised, "{:.4f}")
    (out_dir / "classification_report.txt").write_text(report_text)

    metrics = {
        "title": title,
        "test_images": int(len(labels)),
        "accuracy": float(correct.mean()),
        "loss": loss,
        "macro_precision": report["macro avg"]["precision"],
        "macro_recall": report["macro avg"]["recall"],
        "macro_f1": report["macro avg"]["f1-score"],
        "per_class": {name: {k: report[name][k] for k in ("precision", "recall", "f1-score", "support")}
                      for name in CLASS_NAMES},
        "most_confused": pairs,
        "calibration": {"ece": calib["ece"], "bins": CALIBRATION_BINS,
                        "bin_accuracy": calib["bin_accuracy"].tolist(),
                        "bin_confidence": calib["bin_confidence"].tolist(),
                        "bin_counts": calib["bin_counts"].tolist()},
        "thresholds": thresholds["table"],
        "review": thresholds["review"],
        "mean_confidence": float(confidence.mean()),
        **(extra or {}),
    }
    _write_tensorboard(out_dir / "tensorboard", metrics, figures)
    write_json(out_dir / METRICS_FILE, metrics)
    (out_dir / "report.md").write_text(report_markdown(metrics, report_text))
    log.info("%s: test accuracy %.4f, loss %.4f, macro F1 %.4f, ECE %.4f; report in %s", title, metrics["accuracy"],
             loss, metrics["macro_f1"], calib["ece"], out_dir / "report.md")
    return metrics


def evaluate(model_path: Path, out_dir: Optional[Path] = None, data_dir: Optional[str] = None) -> dict:
    """The `evaluate` command: the model at model_path on the full test set."""
    model = load_model(model_path)
    dataset = data.load(data_dir)
    out_dir = Path(out_dir) if out_dir else model_path.parent.parent / EVALUATION_DIR
    extra = {"model": str(model_path.resolve()), "parameters": int(model.count_params()),
             "test_data": {"source": dataset.source, "checksums": dataset.checksums}}
    retrain_record = model_path.parent / "retrain.json"
    if retrain_record.is_file():
        extra["retrain"] = json.loads(retrain_record.read_text())
    study = extra.get("retrain", {}).get("study") or model_path.stem
    return evaluate_model(model, dataset.test_images, dataset.test_labels.astype(np.int64), out_dir,
                          title=f"{study}", extra=extra)


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


def _misclassified_grid(x, labels, predicted, confidence, title, count: int = 36) -> bytes:
    """The mistakes the model was surest of: the ones worth a human look."""
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-confidence[wrong])][:count]
    captions = [f"true {CLASS_NAMES[labels[i]]}\npred {CLASS_NAMES[predicted[i]]} {confidence[i]:.2f}" for i in wrong]
    return plots.image_grid(x[wrong], captions, f"{title}: most confident mistakes ({len(wrong)} of "
                            f"{int((predicted != labels).sum())})")


def _certainty_sample(x, labels, probabilities, title, seed, count: int = 10) -> bytes:
    pick = np.random.default_rng(seed).choice(len(labels), size=min(count, len(labels)), replace=False)
    return plots.probability_bars(x[pick], probabilities[pick], labels[pick], CLASS_NAMES,
                                  f"{title}: class probabilities of {len(pick)} random test images")


def _write_matrix(path: Path, matrix: np.ndarray, fmt: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *CLASS_NAMES])
        for name, row in zip(CLASS_NAMES, matrix):
            writer.writerow([name, *(fmt.format(v) for v in row)])


def _write_tensorboard(folder: Path, metrics: dict, figures: dict) -> None:
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for key in ("accuracy", "loss", "macro_f1", "macro_precision", "macro_recall"):
            tf.summary.scalar(f"test/{key}", metrics[key], step=0)
        tf.summary.scalar("test/ece", metrics["calibration"]["ece"], step=0)
        for name, png in figures.items():
            tf.summary.image(f"evaluation/{name}", tf.image.decode_png(png, channels=4)[None], step=0)
    writer.close()


def report_markdown(metrics: dict, report_text: str) -> str:
    review = metrics["review"]
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
              "(`confusion_matrix.csv`, `confusion_matrix_normalized.csv`).", "",
              "![confusion matrix](confusion_matrix.png)", "", "![row-normalised](confusion_matrix_normalized.png)", "",
              "## Most confused pairs", "", "| true | predicted as | count | share of the true class |", "|---|---|---|---|"]
    lines += [f"| {p['true']} | {p['predicted']} | {p['count']} | {p['share_of_true_class']:.1%} |"
              for p in metrics["most_confused"]]
    lines += ["", "## The most confident mistakes", "",
              "Would a person make them too? Many are ambiguous at 28x28 pixels (shirt, T-shirt, pullover, coat).", "",
              "![misclassified](misclassified.png)", "",
              "## Certainty", "", "Class probabilities for random test images (green: true class; red: a wrong top "
              "prediction).", "", "![certainty](certainty.png)", "",
              "### Calibration", "", "![reliability diagram](reliability.png)", "",
              "| confidence at least | share of images | their accuracy |", "|---|---|---|"]
    for row in metrics["thresholds"]:
        acc = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "—"
        lines.append(f"| {row['threshold']:.2f} | {row['coverage']:.1%} | {acc} |")
    if review:
        lines += ["", f"Send predictions below **{review['threshold']:.2f}** confidence to a person: the "
                  f"{review['coverage']:.1%} of images at or above it are {review['accuracy']:.2%} accurate "
                  f"(target {review['target_accuracy']:.0%})."]
    else:
        lines += ["", f"No confidence threshold reaches {REVIEW_TARGET_ACCURACY:.0%} accuracy: have a person check "
                  "every prediction, or improve the model."]
    lines.append("")
    return "\n".join(lines)
