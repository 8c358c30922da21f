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
REFERENCE_EXPORT = ROOT / "results" / "photos" / "model"  # layout.REFERENCE_EXPORT, the committed model
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


def rising_curve(final: float, start: float, seed_shift: float = 0.0, seconds: float = 0.01) -> list[dict]:
    """Nine recorded epochs rising from `start` towards `final`."""
    return [{"val_accuracy": round(final - (final - start) / (e + 1) + seed_shift, 4), "val_loss": 1 / (e + 1),
             "train_accuracy": 0.9, "train_loss": 0.3, "epoch_time_s": seconds} for e in range(9)]


@pytest.fixture
def recorded_table(tmp_path):
    """A space of 6 configurations (9 epochs) and a hand-made recording of them, for replayed
    studies (search --replay): late bloomers and fast starters (the best at epoch 9 are not the best
    at epoch 1), the first two recorded under seeds 0-2. -> (space file, recording)."""
    import itertools
    import json

    from fashion_tune import recording

    fixed = {"epochs": 9, "conv_blocks": 1}
    space = tmp_path / "table.yaml"
    space.write_text("metric: val_accuracy\n"
                     f"fixed: {json.dumps(fixed)}\n"
                     "params:\n"
                     "  learning_rate: {type: categorical, choices: [0.001, 0.01, 0.1]}\n"
                     "  filters: {type: categorical, choices: [8, 16]}\n"
                     "search: {num_samples: 12, max_concurrent: 1, tpe_startup_trials: 3}\n")
    path = tmp_path / "curves.jsonl"
    for i, (lr, filters) in enumerate(itertools.product((0.001, 0.01, 0.1), (8, 16))):
        for seed in (0, 1, 2) if i < 2 else (0,):
            epochs = rising_curve(0.80 + 0.02 * i, 0.5 + 0.06 * ((i * 7) % 6), 0.003 * seed)
            recording.append(path, recording.RecordedRun(config={"learning_rate": lr, "filters": filters}, seed=seed,
                                                         epochs=epochs, fixed=fixed, backend="hand-made"))
    return space, path


def reported_epochs(study: Path) -> int:
    """Epochs every trial of the study has reported so far (lines of their result.json, live in the study)."""
    return sum(len(f.read_text().splitlines()) for f in study.glob("trial_*/result.json"))


def popen_hearing_ctrl_c(command, **kwargs):
    """subprocess.Popen(command) with Ctrl-C (SIGINT) at its default in the child: a suite started as
    a background job of a script inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt, so a test that sends Ctrl-C would wait for a command that does not hear it."""
    import signal
    import subprocess

    return subprocess.Popen(command, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def interrupted_search(args, until, *, cwd=ROOT, env=None, timeout=300) -> str:
    """`python -m fashion_tune search ARGS`, stopped with Ctrl-C (SIGINT) once until() holds (checked
    every 0.2 s, for at most `timeout` s): asserts it stopped as interrupted (exit 130), returns its stderr."""
    import signal
    import sys
    import time

    process = popen_hearing_ctrl_c([sys.executable, "-m", "fashion_tune", "search", *map(str, args)], cwd=cwd, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and not until():
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 130, err[-3000:]
    return err


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


def tensorboard_steps(folder) -> dict[str, list[int]]:
    """Each scalar's steps as TensorBoard shows them (its own reader, which hides the steps a
    restarted run purged), over every event file in the folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
