"""Export a trained model for shipping: .keras, a TensorFlow SavedModel, and a model card.

The folder (an ExportDir) is built beside its destination and renamed into place when complete,
so a reader never finds half an export. The newest export is recorded in <results_dir>/LATEST_EXPORT,
which `predict` and `serve` use by default.
"""

from __future__ import annotations

import json
import logging
import time
from importlib import metadata
from pathlib import Path
from typing import Optional

from fashion_tune import atomic, images, layout
from fashion_tune.data import CLASS_NAMES, IMAGE_SHAPE, file_sha256
from fashion_tune.errors import UserError
from fashion_tune.layout import ExportDir, ModelDir
from fashion_tune.model import inference_copy, load_model
from fashion_tune.records import ModelCard, RetrainRecord, Review, TestMetrics

log = logging.getLogger(__name__)

LIBRARIES = ("tensorflow", "keras", "ray", "optuna", "numpy", "scikit-learn", "pillow")


def export(model_dir: ModelDir, out: ExportDir, results_dir: str = "results", force: bool = False) -> ExportDir:
    """Write `out` from the model of model_dir (its training record and evaluation, when there, go
    into the model card); record it as the newest export. Refused, before anything is written: an
    --out that is not an earlier export (--force replaces only those), a results folder that
    cannot be written, and an evaluation that is not of this model (it was trained again since)."""
    layout.check_output(out.path, "--out", reads=[model_dir.model], replace=force)
    if out.path.exists() and any(out.path.iterdir()) and not force:
        raise UserError(f"--out {out.path}: exists and is not empty; choose another folder or pass --force to "
                        "replace it")
    layout.check_writable(results_dir, "--results-dir")  # where LATEST_EXPORT goes
    _check_evaluation_is_of(model_dir)
    model = inference_copy(load_model(model_dir.model, compile=False))  # the weights, without training state
    with atomic.staged_folder(out.path) as folder:
        staged = ExportDir(folder)
        model.save(staged.model)
        write_saved_model(model, staged.saved_model)
        card = model_card(model, model_dir)
        card.write(staged.card_json)
        atomic.write_text(staged.card_md, card_markdown(card))
    layout.record_latest_export(results_dir, out)
    log.info("exported to %s (.keras, SavedModel, model card); predict uses it by default", out.path)
    return out


def _check_evaluation_is_of(model_dir: ModelDir) -> None:
    """The evaluation beside the model must be of this model, or the card would ship another's figures
    (accuracy, review threshold): evaluate records the model file's checksum; evaluations written
    before it did are matched by the retrain record they quote."""
    metrics_path = model_dir.evaluation.metrics
    if not metrics_path.is_file():
        return
    metrics = json.loads(metrics_path.read_text())
    if "model_sha256" in metrics:
        same = metrics["model_sha256"] == file_sha256(model_dir.model)
    else:
        retrain = RetrainRecord.read(model_dir.record)
        same = metrics.get("retrain") == (retrain.to_json() if retrain else None)
    if not same:
        raise UserError(f"{metrics_path}: scores an earlier model ({model_dir.model} was trained again since); "
                        f"evaluate it again first (`fashion-tune evaluate`), so its card carries its own figures")


def write_saved_model(model, path: Path) -> None:
    """The TensorFlow SavedModel TF Serving loads: a `serve` signature, float32 (None, 28, 28, 1)
    -> (None, 10) probabilities, in inference mode. Keras's model.export calls the model without
    `training`, and its augmentation layers then default to training: the served answers were
    those of randomly shifted and flipped images. The endpoint alone tracks the variables it
    reads: archive.track(model) would store the weights a second time (Keras 3.15 saves its own
    variable objects beside the TensorFlow ones the endpoint captured), doubling the file."""
    import keras

    archive = keras.export.ExportArchive()
    archive.add_endpoint("serve", lambda images: model(images, training=False),
                         input_signature=[keras.InputSpec(shape=(None, *IMAGE_SHAPE), dtype="float32")])
    archive.write_out(str(path), verbose=False)


def model_card(model, model_dir: ModelDir) -> ModelCard:
    """What a user of the model needs to know, gathered from its training record and evaluation."""
    retrain = RetrainRecord.read(model_dir.record)
    metrics = json.loads(model_dir.evaluation.metrics.read_text()) if model_dir.evaluation.metrics.is_file() else None
    recorded = retrain.to_json() if retrain else {}
    return ModelCard(
        name=f"fashion_tune {(retrain.study if retrain else None) or model_dir.model.stem}",
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        study=retrain.study if retrain else None,
        source_model=str(model_dir.model.resolve()),
        classes=tuple(CLASS_NAMES),
        input={"shape": [None, *IMAGE_SHAPE], "dtype": "float32", "range": [0.0, 1.0],
               "meaning": "grayscale, object light on a dark background, as in Fashion-MNIST"},
        output={"shape": [None, len(CLASS_NAMES)],
                "meaning": "class probabilities (softmax), in the order of 'classes'"},
        preprocessing=tuple(images.PREPROCESSING_STEPS),
        preprocessing_code="fashion_tune.images.to_model_input_from_bytes",
        max_input_pixels=images.MAX_PIXELS,
        parameters=int(model.count_params()),
        averaging=retrain.averaging.what if retrain else "one model, no averaging",
        config=retrain.params if retrain else None,
        training={k: recorded.get(k) for k in TRAINING},
        training_data=retrain.data if retrain else None,
        test_metrics=_test_metrics(metrics) if metrics else None,
        libraries={name: _version(name) for name in LIBRARIES},
    )


# What the card says of the training, from retrain.json.
TRAINING = ("epochs_run", "chosen_epoch", "train_images", "seconds", "early_stopping", "calibration")


def card_markdown(card: ModelCard) -> str:
    lines = [
        f"# Model card: {card.name}", "",
        f"Classifies a product photo into one of {len(card.classes)} clothing categories: "
        + ", ".join(card.classes) + ".", "",
        "## Files", "",
        f"- `{layout.MODEL_FILE}`: Keras 3. `import fashion_tune` registers the package's layers and loss with "
        "Keras; then `keras.models.load_model` loads it",
        f"- `{layout.SAVED_MODEL_DIR}/`: TensorFlow SavedModel for TF Serving (signature `serve`); needs only "
        "TensorFlow (`tf.saved_model.load`)",
        "", "## Input and preprocessing", "",
        f"Input: float32 {card.input['shape']} in [0, 1]; {card.input['meaning']}. Output: {card.output['meaning']}.",
        "", f"Photos are converted by `{card.preprocessing_code}`:", "",
    ]
    lines += [f"{i}. {step}" for i, step in enumerate(card.preprocessing, 1)]
    lines += ["", "## Test metrics (10,000 Fashion-MNIST test images)", ""]
    lines += _metrics_markdown(card)
    lines += ["", "## Provenance", "", f"- study: {card.study}", f"- parameters: {card.parameters:,}",
              f"- answers: {card.averaging}", f"- created: {card.created}",
              "- libraries: " + ", ".join(f"{k} {v}" for k, v in card.libraries.items())]
    if card.training_data:
        lines += ["- training data: " + ", ".join(f"{name} sha256 {sha[:12]}…"
                                                  for name, sha in card.training_data["checksums"].items())]
    if card.config:
        lines += ["", "## Configuration", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in card.config.items()]
    lines.append("")
    return "\n".join(lines)


def _metrics_markdown(card: ModelCard) -> list[str]:
    metrics = card.test_metrics
    if metrics is None:
        return ["Not evaluated yet: run `fashion-tune evaluate` before exporting to record them here."]
    lines = [f"- accuracy {metrics.accuracy:.4f}, loss {metrics.loss:.4f}, macro F1 {metrics.macro_f1:.4f}",
             f"- expected calibration error {metrics.ece:.4f}"]
    calibrated = card.training.get("calibration")
    if calibrated:
        lines.append(f"- confidences temperature-scaled (T = {calibrated['temperature']:.3f}, fitted on "
                     f"{calibrated['held_out_images']:,} training images held out from training)")
    if metrics.review:
        r = metrics.review
        lines.append(f"- have a person check predictions below {r.threshold:.2f} confidence "
                     f"({1 - r.coverage:.1%} of test images); the rest are {r.accuracy:.2%} accurate "
                     + ("(the threshold was chosen on the test images: a slightly optimistic figure)"
                        if r.chosen_on_test else f"(the threshold was chosen on {r.chosen_on})"))
    if metrics.robustness:
        r = metrics.robustness
        lines += ["", f"On product photos rendered from {r['images_per_tier']:,} test images (raw accuracy "
                  f"{r['raw_accuracy']:.4f} on them), per robustness tier:", "", "| tier | accuracy |", "|---|---|"]
        lines += [f"| {name} | {accuracy:.4f} |" for name, accuracy in r["tiers"].items()]
    return lines


def _test_metrics(metrics: dict) -> TestMetrics:
    """The headline figures of evaluate's metrics.json."""
    measured = metrics.get("robustness")
    robustness = {"images_per_tier": measured["images"], "raw_accuracy": measured["raw_accuracy"],
                  "tiers": {name: tier["accuracy"] for name, tier in measured["tiers"].items()}} if measured else None
    review = Review.from_json(metrics["review"]) if metrics.get("review") else None
    return TestMetrics(accuracy=metrics["accuracy"], loss=metrics["loss"], macro_f1=metrics["macro_f1"],
                       ece=metrics["calibration"]["ece"], review=review, robustness=robustness)


def _version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
