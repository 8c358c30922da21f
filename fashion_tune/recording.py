"""Recorded learning curves: real trainings kept epoch by epoch, so searches can be replayed from them.

A recording is a JSON-lines file, one line a training run: the searched values of its configuration,
the seed it trained with, where and how it ran, and every epoch's metrics and seconds. It is made by
benchmarks/record_curves.py (every configuration of a discrete space, trained to its full budget)
and read by the replay trainable (search/replay.py), whose trials report these curves instead of
training. Lines are only ever appended, one whole line per finished run, so a recording interrupted
at any moment is still valid and is continued by running its command again.

No Ray, no TensorFlow.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from fashion_tune.errors import UserError

# What every recorded epoch holds: the metrics a trial reports (search/trainable.py) and its seconds.
EPOCH_KEYS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss", "epoch_time_s")


class RecordingError(UserError, ValueError):
    """A recording that cannot be read, or does not cover what it is asked for."""


def config_key(config: Mapping[str, Any], names) -> str:
    """The configuration's searched values, as one canonical string (the recording's lookup key)."""
    return json.dumps({n: config[n] for n in sorted(names)}, sort_keys=True)


@dataclass(frozen=True)
class RecordedRun:
    config: dict  # the searched values
    seed: int  # TrainParams.seed: weights and shuffling
    epochs: list  # one dict of EPOCH_KEYS per epoch, in order
    fixed: dict = field(default_factory=dict)  # the space's fixed values it trained with (epochs: its budget)
    backend: str = ""  # what trained it: Keras back-end, device, threads, host
    data: dict = field(default_factory=dict)  # the DataSettings it trained on (subset, val_fraction, seed)

    def key(self) -> str:
        return config_key(self.config, self.config)

    def to_line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True) + "\n"


def read(path: Path) -> list[RecordedRun]:
    """Every run in a recording. A last line cut short (a recorder killed while writing) is left out."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise RecordingError(f"recording {path}: cannot be read ({e.strerror or e})") from None
    runs = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            run = RecordedRun(**row)
        except (ValueError, TypeError) as e:
            if number == len(lines) and not line.endswith("}"):
                break
            raise RecordingError(f"recording {path}, line {number}: not a recorded run ({e})") from None
        missing = [k for k in EPOCH_KEYS if any(k not in epoch for epoch in run.epochs)]
        if missing or not run.epochs:
            raise RecordingError(f"recording {path}, line {number}: every epoch needs {', '.join(EPOCH_KEYS)}")
        runs.append(run)
    if not runs:
        raise RecordingError(f"recording {path}: holds no run")
    return runs


def append(path: Path, run: RecordedRun) -> None:
    """Add one finished run, as a whole line on disk before this returns."""
    with open(path, "a") as f:
        f.write(run.to_line())
        f.flush()
        os.fsync(f.fileno())
