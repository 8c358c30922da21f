"""Export a trained model for shipping: .keras, a TensorFlow SavedModel, and a model card.

The folder is built beside its destination and renamed into place when complete, so a reader
never finds half an export. The newest export is recorded in <results_dir>/LATEST_EXPORT, which
`predict` uses by default.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Optional

from fashion_tune import images
from fashion_tune.data import CLASS_NAMES, IMAGE_SHAPE
from fashion_tune.errors import UserError
from fashion_tune.evaluate import EVALUATION_DIR, METRICS_FILE, load_model
from fashion_tune.predict import EXPORT_MODEL, LATEST_EXPORT
from fashion_tune.results import write_json

log = logging.getLogger(__name__)

SAVED_MODEL_DIR = "saved_model"
CARD_JSON, CARD_MD = "model_card.json", "model_card.md"
LIBRARIES = ("tensorflow", "keras", "ray", "optuna", "numpy", "scikit-learn", "pillow")

PREPROCESSING = [
    "decode the image (PNG, JPEG, BMP, GIF, WebP, TIFF); apply its EXIF orientation",
    "composite transparent pixels onto white",
    "convert to 8-bit grayscale",
    "if the corners are light (median > 127), negate intensities so the object is light on dark",
    "subtract the corners' median (the background), scale so the brightest pixel is 255",
    "trim to the object (pixels above 10% of the maximum)",
    "resize the longest edge to 28 pixels (Lanczos), keeping the aspect ratio",
    "centre on a 28x28 black canvas; divide by 255 -> float32 in [0, 1], shape (28, 28, 1)",
]


def export(model_path: Path, out_dir: Path, results_dir: str = "results", force: bool = False) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise UserError(f"--out {out_dir}: exists and is not empty; choose another folder or pass --force to replace it")
    model = load_model(model_path, compile=False)  # the weights, without the optimizer's training state
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        model.save(staging / EXPORT_MODEL)
        # TF Serving loads this: `serve` signature, float32 (None, 28, 28, 1) -> (None, 10) probabilities.
        model.export(str(staging / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
        card = model_card(model, model_path)
        write_json(staging / CARD_JSON, card)
        (staging / CARD_MD).write_text(card_markdown(card))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    pointer = Path(results_dir) / LATEST_EXPORT
    pointer.write_text(str(out_dir.resolve()) + "\n")
    log.info("exported to %s (.keras, SavedModel, model card); predict uses it by default", out_dir)
    return out_dir


def model_card(model, model_path: Path) -> dict:
    """What a user of the model needs to know, gathered from the files beside it."""
    study_dir = model_path.parent.parent
    retrain = _read_json(model_path.parent / "retrain.json")
    metrics = _read_json(study_dir / EVALUATION_DIR / METRICS_FILE)
    return {
        "name": f"fashion_tune {retrain.get('study') or model_path.stem}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "study": retrain.get("study"),
        "source_model": str(model_path.resolve()),
        "classes": list(CLASS_NAMES),
        "input": {"shape": [None, *IMAGE_SHAPE], "dtype": "float32", "range": [0.0, 1.0],
                  "meaning": "grayscale, object light on a dark background, as in Fashion-MNIST"},
        "output": {"shape": [None, len(CLASS_NAMES)], "meaning": "class probabilities (softmax), in the order of 'classes'"},
        "preprocessing": PREPROCESSING,
        "preprocessing_code": "fashion_tune.images.to_model_input_from_bytes",
        "max_input_pixels": images.MAX_PIXELS,
        "parameters": int(model.count_params()),
        "config": retrain.get("params"),
        "training": {k: retrain.get(k) for k in ("epochs_run", "chosen_epoch", "train_images", "seconds", "early_stopping")},
        "training_data": retrain.get("data"),
        "test_metrics": _test_metrics(metrics),
        "libraries": {name: _version(name) for name in LIBRARIES},
    }


def card_markdown(card: dict) -> str:
    metrics = card["test_metrics"] or {}
    lines = [
        f"# Model card: {card['name']}", "",
        f"Classifies a product photo into one of {len(card['classes'])} clothing categories: "
        + ", ".join(card["classes"]) + ".", "",
        "## Files", "",
        f"- `{EXPORT_MODEL}`: Keras 3 (`keras.models.load_model`)",
        f"- `{SAVED_MODEL_DIR}/`: TensorFlow SavedModel for TF Serving (signature `serve`)",
        "", "## Input and preprocessing", "",
        f"Input: float32 {card['input']['shape']} in [0, 1]; {card['input']['meaning']}. Output: {card['output']['meaning']}.",
        "", f"Photos are converted by `{card['preprocessing_code']}`:", "",
    ]
    lines += [f"{i}. {step}" for i, step in enumerate(card["preprocessing"], 1)]
    lines += ["", "## Test metrics (10,000 Fashion-MNIST test images)", ""]
    if metrics:
        lines += [f"- accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, macro F1 {metrics['macro_f1']:.4f}",
                  f"- expected calibration error {metrics['ece']:.4f}"]
        if metrics.get("review"):
            r = metrics["review"]
            lines.append(f"- have a person check predictions below {r['threshold']:.2f} confidence "
                         f"({1 - r['coverage']:.1%} of test images); the rest are {r['accuracy']:.2%} accurate")
    else:
        lines.append("Not evaluated yet: run `fashion-tune evaluate` before exporting to record them here.")
    lines += ["", "## Provenance", "", f"- study: {card['study']}", f"- parameters: {card['parameters']:,}",
              f"- created: {card['created']}", "- libraries: " + ", ".join(f"{k} {v}" for k, v in card["libraries"].items())]
    if card["training_data"]:
        lines += ["- training data: " + ", ".join(f"{name} sha256 {sha[:12]}…"
                                                  for name, sha in card["training_data"]["checksums"].items())]
    if card["config"]:
        lines += ["", "## Configuration", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in card["config"].items()]
    lines.append("")
    return "\n".join(lines)


def _test_metrics(metrics: dict) -> Optional[dict]:
    """The headline figures of evaluate's metrics.json; None when the model was not evaluated."""
    if not metrics:
        return None
    return {"accuracy": metrics["accuracy"], "loss": metrics["loss"], "macro_f1": metrics["macro_f1"],
            "ece": metrics["calibration"]["ece"], "review": metrics.get("review")}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
