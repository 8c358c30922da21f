"""What each trial's TensorBoard events hold: our curves under our own names, and its HParams session.

Tune's TensorBoard logger writes every number a result carries (done, time_since_restore,
iterations_since_restore, time_this_iter_s, ...) as a scalar under "ray/tune/", beside the curves
a user opens TensorBoard for, and an HParams experiment of its own into every trial. Here a trial's
events hold only what the trainable reports about the model (hparams.METRICS), each under its own
name (val_accuracy, not ray/tune/val_accuracy), with the trial's hyperparameters, how far it got and
its final metrics (the HParams session); the study's one experiment is hparams.write_experiment's.
Written in the study's own trial folder, live (trial_records.InStudyFolder).

Tune pickles TrialScalars with the study, and --resume unpickles it by its module path.
"""

from __future__ import annotations

import math

from ray.tune.logger import TBXLoggerCallback
from ray.tune.result import TRAINING_ITERATION
from ray.tune.utils import flatten_dict

from fashion_tune.hparams import EPOCHS_TRAINED, METRICS, RAN_FULL_BUDGET
from fashion_tune.search.trial_records import InStudyFolder


class TrialScalars(InStudyFolder, TBXLoggerCallback):
    """Tune's TensorBoard logger (a writer per trial, the HParams session at a trial's end), writing
    hparams.METRICS only, each under its own name, at the epoch's step."""

    def __init__(self, max_epochs: int):
        super().__init__()
        self.max_epochs = max_epochs

    def log_trial_result(self, iteration: int, trial, result: dict):
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        writer = self._trial_writer[trial]
        kept = {k: result[k] for k in METRICS if isinstance(result.get(k), (int, float)) and math.isfinite(result[k])}
        for tag, value in kept.items():
            writer.add_scalar(tag, value, global_step=result[TRAINING_ITERATION])
        self._trial_result[trial] = kept  # the HParams session's metrics, at the trial's end
        writer.flush()

    def _try_log_hparams(self, trial, result: dict):
        """The trial's HParams session (its values and last metrics), without an experiment of its own."""
        from tensorboardX.summary import hparams

        values = {k: v for k, v in flatten_dict(trial.evaluated_params).items()
                  if isinstance(v, (bool, int, float, str))}
        epochs = (trial.last_result or {}).get(TRAINING_ITERATION, 0)
        values.update({EPOCHS_TRAINED: epochs, RAN_FULL_BUDGET: epochs >= self.max_epochs})
        _, session_start, session_end = hparams(hparam_dict=values, metric_dict=result)
        self._trial_writer[trial].file_writer.add_summary(session_start)
        self._trial_writer[trial].file_writer.add_summary(session_end)
