"""Trials that replay recorded learning curves instead of training (`search --replay RECORDING`).

Everything else in the study is the real driver: the searcher, the scheduler, the time budget,
progress lines, optuna.db, the leaderboard and the summary. Only the trainable differs: each trial
looks up its configuration in the recording (fashion_tune/recording.py), then reports the recorded
epochs one by one, each after its recorded seconds times --replay-time-scale (0: at once), with a
checkpoint holding the epoch, so a scheduler can pause it and --resume goes on from it.

A rerun of a configuration does not give the same curve: with study seed S, a trial replays the
configuration's run recorded with seed S when there is one; otherwise its seed-0 curve shifted by
the seed-to-seed spread measured on the configurations recorded under several seeds (each epoch's
standard deviation across seeds, times one normal draw fixed by the seed and the configuration).
Seed 0 replays the recording exactly.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
from functools import cached_property
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from fashion_tune import recording
from fashion_tune.layout import CheckpointDir
from fashion_tune.recording import RecordingError
from fashion_tune.space import SearchSpace

# The metrics the replay moves by the seed-to-seed spread; the seconds are replayed as recorded.
NOISY = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")


class Curves:
    """A recording, indexed by configuration, as the replay trainable needs it."""

    def __init__(self, runs: list[recording.RecordedRun], names: list[str]):
        self.names = sorted(names)
        self.runs: dict[str, dict[int, list[dict]]] = {}
        for run in runs:
            self.runs.setdefault(recording.config_key(run.config, self.names), {})[run.seed] = run.epochs

    @classmethod
    def for_space(cls, path: str | Path, space: SearchSpace) -> "Curves":
        """The recording at `path`, checked against the space a study searches: every configuration the
        space can propose is recorded, with its fixed values and at least its budget's epochs."""
        runs = recording.read(Path(path))
        not_categorical = [p.name for p in space.params if p.type != "categorical"]
        if not_categorical:
            raise RecordingError(f"--replay {path}: the space's {', '.join(not_categorical)} must be categorical "
                                 "(a recording holds a table of configurations)")
        fixed = {k: v for k, v in space.fixed.items() if k != "epochs"}
        other = next((r for r in runs if {k: v for k, v in r.fixed.items() if k != "epochs"} != fixed), None)
        if other is not None:
            raise RecordingError(f"--replay {path}: recorded with fixed values {other.fixed}, but {space.path} "
                                 f"fixes {space.fixed}")
        curves = cls(runs, [p.name for p in space.params])
        shortest = min(len(epochs) for seeds in curves.runs.values() for epochs in seeds.values())
        if shortest < space.max_epochs:
            raise RecordingError(f"--replay {path}: holds runs of {shortest} epochs, but {space.path} trains "
                                 f"trials for {space.max_epochs}")
        for values in _every_config(space):
            if 0 not in curves.runs.get(recording.config_key(values, curves.names), {}):
                raise RecordingError(f"--replay {path}: {json.dumps(values, sort_keys=True)}, which {space.path} "
                                     "can propose, has no run recorded with seed 0")
        return curves

    @cached_property
    def seed_spread(self) -> dict[str, np.ndarray]:
        """Each metric's standard deviation across seeds at each epoch, averaged over the
        configurations recorded with several seeds (zeros when none was)."""
        several = [seeds for seeds in self.runs.values() if len(seeds) > 1]
        epochs = min(len(e) for seeds in self.runs.values() for e in seeds.values())
        spread = {}
        for metric in NOISY:
            per_config = [[statistics.stdev(s[e][metric] for s in seeds.values()) for e in range(epochs)]
                          for seeds in several]
            spread[metric] = np.mean(per_config, axis=0) if per_config else np.zeros(epochs)
        return spread

    def curve(self, config: Mapping, seed: int) -> list[dict]:
        """The epochs a trial of `config` reports in a study of seed `seed`."""
        seeds = self.runs[recording.config_key(config, self.names)]
        if seed in seeds:
            return seeds[seed]
        key = f"{seed}:{recording.config_key(config, self.names)}".encode()
        draw = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "big")).standard_normal()
        shifted = []
        for e, epoch in enumerate(seeds[0]):
            moved = {m: epoch[m] + draw * float(self.seed_spread[m][min(e, len(self.seed_spread[m]) - 1)])
                     for m in NOISY}
            moved["val_accuracy"] = min(1.0, max(0.0, moved["val_accuracy"]))
            moved["train_accuracy"] = min(1.0, max(0.0, moved["train_accuracy"]))
            shifted.append({**epoch, **moved})
        return shifted

    def full_budget_accuracy(self, config: Mapping, epochs: int) -> float:
        """What the configuration is worth: its val accuracy at `epochs`, the mean over its recorded seeds."""
        return statistics.fmean(e[epochs - 1]["val_accuracy"] for e in self.runs[
            recording.config_key(config, self.names)].values())


def _every_config(space: SearchSpace):
    import itertools

    names = [p.name for p in space.params]
    for values in itertools.product(*(p.choices for p in space.params)):
        yield dict(zip(names, values))


def replay_trial(config: dict, curves: Curves, time_scale: Optional[float]) -> None:
    """Tune's function trainable for a replayed trial: the recorded epochs, from its checkpoint on."""
    import ray
    from ray import tune

    where = {"node_id": ray.get_runtime_context().get_node_id()}  # in its results, as trainable.py reports it
    curve = curves.curve(config, config["seed"])
    checkpoint = tune.get_checkpoint()
    first = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            first = json.loads(CheckpointDir(Path(folder)).state.read_text())["epoch"]
    for epoch in range(first, config["epochs"]):
        recorded = curve[epoch]
        if time_scale:
            time.sleep(recorded["epoch_time_s"] * time_scale)
        metrics = {"epoch": epoch + 1, **{k: recorded[k] for k in recording.EPOCH_KEYS}, **where}
        with tempfile.TemporaryDirectory() as folder:
            CheckpointDir(Path(folder)).state.write_text(json.dumps({"epoch": epoch + 1}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
