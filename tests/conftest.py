"""Shared fixtures: seeding, the real Fashion-MNIST folder, space files written on the fly, and a
small export with a model card."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"
REFERENCE_EXPORT = ROOT / "results" / "reference" / "model"
# Where this project's machines (and CI) keep the official files; FASHION_TUNE_DATA wins.
SHARED_DATA = ROOT.parent / "shared" / "data" / "fashion-mnist"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state: Python's, NumPy's, and Keras's with its
    backend's (keras.utils.set_random_seed seeds all of them)."""
    from fashion_tune.quiet_tensorflow import import_tensorflow

    import_tensorflow()  # as the commands do: TensorFlow's start-up lines stay out of the test log
    import keras

    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The folder with the real Fashion-MNIST files (integration tests)."""
    folder = Path(os.environ.get("FASHION_TUNE_DATA") or SHARED_DATA)
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        message = f"Fashion-MNIST not found in {folder}; set FASHION_TUNE_DATA to the folder with the official files"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI has the files: a missing folder is a broken setup, not a skip
        pytest.skip(message)
    return folder


@pytest.fixture
def write_space(tmp_path):
    """write_space(text) -> path of a space file holding text."""
    counter = iter(range(1000))

    def write(text: str, name: str | None = None) -> Path:
        path = tmp_path / (name or f"space{next(counter)}.yaml")
        path.write_text(text)
        return path

    return write


def free_port() -> int:
    """A loopback port that was free a moment ago (nothing listens there now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def constant_model(probabilities: np.ndarray):
    """A real Keras model that answers `probabilities` for every image (zero weights, set biases)."""
    import keras

    inputs = keras.Input(shape=(28, 28, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    dense = model.layers[-1]
    dense.set_weights([np.zeros((784, 10), np.float32), np.log(probabilities).astype(np.float32)])
    return model


@pytest.fixture
def unsure_bag_export(tmp_path):
    """An export folder whose model answers Bag with probability 0.7 for every image, and whose
    card asks for a person's review below 0.8: every answer is 'unsure'."""
    import dataclasses

    from fashion_tune.data import CLASS_NAMES
    from fashion_tune.layout import ExportDir
    from fashion_tune.records import ModelCard

    probabilities = np.full(10, 0.3 / 9)
    probabilities[CLASS_NAMES.index("Bag")] = 0.7
    folder = ExportDir(tmp_path / "export")
    folder.path.mkdir()
    constant_model(probabilities).save(folder.model)
    # The reference model's card, but this model's name and review threshold.
    card = ModelCard.read(REFERENCE_EXPORT / "model_card.json")
    review = dataclasses.replace(card.review, threshold=0.8)
    card = dataclasses.replace(card, name="unit", test_metrics=dataclasses.replace(card.test_metrics, review=review))
    card.write(folder.card_json)
    return folder
