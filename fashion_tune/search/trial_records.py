"""Each trial's record of its epochs (Tune's result.json and progress.csv), kept whole when the trial
pauses and goes on.

Tune's loggers write these files in the driver's staging folder, and Tune copies that folder to the
study's folder in the background (ray.tune.execution.experiment_state). Whenever a trial that has a
checkpoint starts, the loggers first copy the study's file back over the staging one
(ray.tune.logger.LoggerCallback._restore_from_remote): right for --resume, where the staging folder is
new and empty, wrong for a trial that HyperBand or successive halving paused and then promoted in the
same run, where the study's copy may be a background copy taken before the trial's last epochs. Those
epochs' lines were lost (seen in CI: a promoted trial's result.json held epochs 2 and 3, not 1).

Here a staging file that exists is left alone: this driver wrote it, so it is never older than the
study's copy. Tune pickles these loggers with the study, and --resume unpickles them by this module path.
"""

from __future__ import annotations

from pathlib import Path

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback


class _KeepsThisRunsRecord:
    """Copies a trial's record from the study's folder only when this driver has none of its own."""

    def _restore_from_remote(self, file_name: str, trial) -> None:
        if not Path(trial.local_path, file_name).exists():
            super()._restore_from_remote(file_name, trial)


class TrialResults(_KeepsThisRunsRecord, JsonLoggerCallback):
    """Tune's result.json logger (a JSON line an epoch), whole across pauses."""


class TrialProgress(_KeepsThisRunsRecord, CSVLoggerCallback):
    """Tune's progress.csv logger (a row an epoch), whole across pauses."""
