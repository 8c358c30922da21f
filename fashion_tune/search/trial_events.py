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
import time

from ray.tune.logger import TBXLoggerCallback
from ray.tune.result import TRAINING_ITERATION
from ray.tune.utils import flatten_dict
from tensorboardX.proto.event_pb2 import Event, SessionLog

from fashion_tune.hparams import EPOCHS_TRAINED, METRICS, RAN_FULL_BUDGET
from fashion_tune.search.trial_records import InStudyFolder

# How soon a trial's events reach its file, written by the writer's own thread: TensorBoard shows
# a running study within this many seconds. Not flushed by the driver every epoch: tensorboardX
# fsyncs each flush, 15% of the driver's loop at 3,000 trials (py-spy). A driver killed outright
# loses at most these seconds of events; result.json and progress.csv hold every epoch regardless.
FLUSH_SECONDS = 2


class TrialScalars(InStudyFolder, TBXLoggerCallback):
    """Tune's TensorBoard logger (a writer per trial, the HParams session at a trial's end), writing
    hparams.METRICS only, each under its own name, at the epoch's step."""

    def __init__(self, max_epochs: int):
        super().__init__()
        self.max_epochs = max_epochs
        self._summary_writer_cls = _writer_of_its_own_file

    def log_trial_start(self, trial):
        """Tune's, and TensorBoard told to drop what this trial logged after the epoch it goes on from:
        a trial restarted from its checkpoint (after a failure, a lost node, a killed driver) reports
        those epochs again, Tune's recovery being at-least-once, and an event file cannot be cut back
        as result.json is. TensorBoard's own rule: a SessionLog.START event at step s hides the steps
        >= s written before it (tensorboardX's purge_step; tests/test_distributed.py's chaos found a
        step written twice)."""
        super().log_trial_start(trial)
        saved = trial.latest_checkpoint_result
        goes_on_after = saved.metrics.get(TRAINING_ITERATION, 0) if saved else 0
        self._trial_writer[trial].file_writer.add_event(
            Event(step=goes_on_after + 1, session_log=SessionLog(status=SessionLog.START)))

    def log_trial_result(self, iteration: int, trial, result: dict):
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        writer = self._trial_writer[trial]
        kept = {k: result[k] for k in METRICS if isinstance(result.get(k), (int, float)) and math.isfinite(result[k])}
        for tag, value in kept.items():
            writer.add_scalar(tag, value, global_step=result[TRAINING_ITERATION])
        self._trial_result[trial] = kept  # the HParams session's metrics, at the trial's end

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


def _writer_of_its_own_file(logdir: str, **kwargs):
    """tensorboardX's SummaryWriter, its event file named to the nanosecond: tensorboardX names a
    file by the second, and a trial's writer made again within the same second (a trial paused and
    promoted, or restarted, quickly) opened the earlier file anew ('wb'), erasing its epochs. Its
    thread writes the events out every FLUSH_SECONDS (Tune asks for 30)."""
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir, filename_suffix=f".{time.time_ns()}", **{**kwargs, "flush_secs": FLUSH_SECONDS})

