"""What each trial's TensorBoard events hold: our metrics, not Tune's bookkeeping.

Tune's TensorBoard logger writes every number a result carries (done, time_since_restore,
iterations_since_restore, time_this_iter_s, ...) as a scalar beside the four curves a user
opens TensorBoard for, and offers them all as HParams metrics too. This logger keeps only what
the trainable reports about the model: Tune pickles it with the study, and --resume unpickles it
by this module path.
"""

from __future__ import annotations

from ray.tune.logger import TBXLoggerCallback
from ray.tune.result import TIMESTEPS_TOTAL, TRAINING_ITERATION

# What trainable.py reports each epoch, as scalars and HParams metrics.
METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss", "epoch_time_s")


class TrialScalars(TBXLoggerCallback):
    """Tune's TensorBoard logger (same tags, ray/tune/<metric>; HParams at a trial's end), for METRICS only."""

    def log_trial_result(self, iteration: int, trial, result: dict):
        kept = {k: v for k, v in result.items() if k in METRICS or k in (TRAINING_ITERATION, TIMESTEPS_TOTAL)}
        super().log_trial_result(iteration, trial, kept)
