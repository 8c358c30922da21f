"""Each trial's record of its epochs (Tune's result.json and progress.csv), kept whole when the trial
pauses and goes on, and written in the study's folder on this disk.

Tune's loggers write in the driver's staging folder, which reaches the study's folder only when Tune
snapshots the study (every 10 s or more; old_checkpoints.py says why not after every few epochs).
These loggers and TensorBoard's (trial_events.py) write in the study's own trial folders instead
(InStudyFolder), or for a study in a bucket in its working copy, pushed at each snapshot
(storage.py): live for TensorBoard and `report`, nothing for Tune to copy, and cut back to the
checkpoint's epoch when a trial goes on from it.

Whenever a trial that has a checkpoint starts, Tune's loggers first copy the record from the study's
storage over the one they write (ray.tune.logger.LoggerCallback._restore_from_remote): wrong for a
trial that HyperBand or successive halving paused and then promoted in the same run, whose record in
a bucket may be older than its last epochs (seen in CI with a staging folder: a promoted trial's
result.json held epochs 2 and 3, not 1). Here a record this disk has is left alone.

Tune pickles these loggers with the study, and --resume unpickles them by this module path.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.result import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE, TRAINING_ITERATION

from fashion_tune import storage


class InStudyFolder:
    """Hands the logger's methods the trial with its folder in the study on this disk as its local_path."""

    record: str | None = None  # the file the logger appends a line an epoch to, if any

    def log_trial_start(self, trial):
        trial = _TrialInStudy(trial)
        if self.record:
            saved = trial.latest_checkpoint_result  # what the trial goes on from; none: from scratch
            _cut_after(Path(trial.local_path, self.record), saved.metrics.get(TRAINING_ITERATION, 0) if saved else 0)
        super().log_trial_start(trial)

    def log_trial_result(self, iteration, trial, result):
        super().log_trial_result(iteration, _TrialInStudy(trial), result)

    def log_trial_end(self, trial, failed=False):
        super().log_trial_end(_TrialInStudy(trial), failed)


def _cut_after(record: Path, epoch: int) -> None:
    """Drop the record's lines after `epoch`, the one the trial goes on from (its checkpoint's). Live
    in the study, a record can be ahead of Tune's last snapshot when the driver is killed outright or
    a trial is interrupted before its first checkpoint; the trial then trains those epochs again and
    reports them anew."""
    if not record.is_file():
        return
    if record.suffix == ".json":
        lines = record.read_text().splitlines(keepends=True)
        kept = [line for line in lines if line.strip() and json.loads(line)[TRAINING_ITERATION] <= epoch]
        if len(kept) < len(lines):
            record.write_text("".join(kept))
        return
    with record.open(newline="") as f:
        rows = list(csv.DictReader(f))
    kept = [row for row in rows if int(row[TRAINING_ITERATION]) <= epoch]
    if len(kept) < len(rows):
        with record.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)


class _TrialInStudy:
    """The trial, but local_path is its folder in the study on this disk; the same key in the loggers'
    tables."""

    def __init__(self, trial):
        self._trial = trial

    @property
    def local_path(self) -> str:
        here = storage.on_this_disk(self._trial.storage.storage_filesystem, self._trial.path)
        here.mkdir(parents=True, exist_ok=True)  # Tune's loggers write before they make it
        return str(here)

    def __getattr__(self, name):
        return getattr(self._trial, name)

    def __hash__(self):
        return hash(self._trial)

    def __eq__(self, other):
        return self._trial is getattr(other, "_trial", other)


class _KeepsThisRunsRecord:
    """Copies a trial's record from the study's storage only when this disk has none."""

    def _restore_from_remote(self, file_name: str, trial) -> None:
        if trial.local_path != trial.path and not Path(trial.local_path, file_name).exists():
            super()._restore_from_remote(file_name, trial)


class TrialResults(InStudyFolder, _KeepsThisRunsRecord, JsonLoggerCallback):
    """Tune's result.json logger (a JSON line an epoch), whole across pauses."""

    record = EXPR_RESULT_FILE


class TrialProgress(InStudyFolder, _KeepsThisRunsRecord, CSVLoggerCallback):
    """Tune's progress.csv logger (a row an epoch), whole across pauses."""

    record = EXPR_PROGRESS_FILE
