"""What a study prints while it runs: one line per trial event, in our words.

Tune's own display (configuration boxes, a status table wider than a terminal, a TensorBoard hint
pointing into /tmp/ray, "completed" for a trial its scheduler stopped) is turned off
(RunConfig(verbose=0), study.py); this callback, run by Tune in the driver, says instead:

    trial 85e84c80 started: learning_rate 0.00125, conv_blocks 2, filters 8
    trial 85e84c80 epoch 1/3: val_accuracy 0.2200, val_loss 2.259 (1.4 s)
    trial 85e84c80 stopped early by ASHA after epoch 1 of 3: val_accuracy 0.2200
    trial 35d378dd completed 3 epochs: val_accuracy 0.6550, the best so far

All through logging at INFO (`-q` hides it); a failed trial at WARNING. Tune pickles the
callback with the study, and --resume unpickles it by this module path.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

from ray import tune

from fashion_tune.results import error_summary, short

log = logging.getLogger("fashion_tune.search")
_NOT_LOOKED = object()


class StudyProgress(tune.Callback):
    """Logs trial starts, epochs, early stops, completions and failures."""

    def __init__(self, metric: str, mode: str, max_epochs: int, searched: Sequence[str], scheduler: Optional[str]):
        self.metric, self.mode, self.max_epochs = metric, mode, max_epochs
        self.searched = tuple(searched)
        self.scheduler = scheduler

    def _scores(self, result: dict) -> str:
        other = "val_loss" if self.metric != "val_loss" else "val_accuracy"
        shown = [f"{self.metric} {result[self.metric]:.4f}"] if self.metric in result else []
        if other in result:
            shown.append(f"{other} {result[other]:.3f}")
        return ", ".join(shown) or "no scores reported"

    def on_trial_start(self, iteration, trials, trial, **info):
        done = (trial.last_result or {}).get("training_iteration")
        if done:  # promoted after waiting at a rung, or restarted after a crash or an interrupt
            log.info("trial %s resumed from its checkpoint after epoch %d", trial.trial_id, done)
            return
        chosen = ", ".join(f"{name} {short(trial.config[name])}" for name in self.searched if name in trial.config)
        log.info("trial %s started: %s", trial.trial_id, chosen or "the fixed configuration")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        seconds = result.get("epoch_time_s")
        log.info("trial %s epoch %s/%d: %s%s", trial.trial_id, result.get("training_iteration", "?"),
                 self.max_epochs, self._scores(result), f" ({seconds:.1f} s)" if seconds is not None else "")

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        epochs = result.get("training_iteration", 0)
        value = result.get(self.metric)
        best = value is not None and self._best_so_far(value, trials, trial)
        if epochs < self.max_epochs:
            by = f" by {self.scheduler}" if self.scheduler else ""
            log.info("trial %s stopped early%s after epoch %d of %d: %s", trial.trial_id, by, epochs,
                     self.max_epochs, self._scores(result))
        else:
            log.info("trial %s completed %d epochs: %s%s", trial.trial_id, epochs, self._scores(result),
                     ", the best so far" if best else "")

    def _best_so_far(self, value: float, trials, trial) -> bool:
        """Whether `value` beats every trial that has ended, those of an earlier run of a resumed study
        too. Their best is kept as trials end: looking at every trial at each end cost O(trials) a
        trial, 3% of the driver at 3,000 trials (py-spy, benchmarks/driver_scale.py)."""
        def better(a, b):
            return a > b if self.mode == "max" else a < b

        ended = self.__dict__.get("_best_ended", _NOT_LOOKED)
        if ended is _NOT_LOOKED:  # this driver's first trial end: the trials that ended before it
            ended = None
            for t in trials:
                other = (t.last_result or {}).get(self.metric) if t is not trial and t.status == "TERMINATED" else None
                if other is not None and (ended is None or better(other, ended)):
                    ended = other
        best = ended is None or better(value, ended)
        self._best_ended = value if best else ended
        return best

    def __getstate__(self):
        """Tune pickles the callback with the study: a resumed driver looks at its trials afresh."""
        state = dict(self.__dict__)
        state.pop("_best_ended", None)
        return state

    def on_trial_recover(self, iteration, trials, trial, **info):
        log.warning("trial %s failed (%s); retrying it from its last checkpoint", trial.trial_id, _first_line(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        epochs = (trial.last_result or {}).get("training_iteration", 0)
        log.warning("trial %s failed in epoch %d: %s (details: %s)", trial.trial_id, epochs + 1,
                    _first_line(trial), trial.error_file or "no error file")


def _first_line(trial) -> str:
    """The error's most telling line, as the leaderboard gives it, from Tune's error file."""
    try:
        with open(trial.error_file) as f:
            return error_summary(f.read())
    except (OSError, TypeError):
        return "no message"


class InterruptInOurWords(logging.Filter):
    """Tune's two lines on Ctrl-C, said our way: its resume hint names Tuner.restore, ours is
    `--resume NAME` (study.py says it once the state is saved). Put on Tune's logger while a
    study runs."""

    LOGGER = "ray.tune.tune"

    def __init__(self, study: str):
        super().__init__()
        self.study = study

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "Stop signal received" in text:
            log.warning("interrupted: saving the study's state for --resume %s (Ctrl-C again skips this)", self.study)
            return False
        return "Tuner.restore" not in text


class SnapshotFailureInOurWords(logging.Filter):
    """Tune's error, with a stack, when the study's last snapshot could not be stored (its storage
    unreachable), said in one line; what comes of it is said by study.py."""

    LOGGER = "ray.tune.tune"

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Experiment state snapshotting failed"):
            return True
        cause = record.exc_info[1] if record.exc_info else None
        log.warning("the study's last state could not be stored%s", f": {str(cause).splitlines()[0]}" if cause else "")
        return False


class UnreportedTrialsInOurWords(logging.Filter):
    """Tune's warning, at a study's end, for trials without a result file: those a Ctrl-C caught
    before their first epoch. Nothing is lost (they start again on --resume) and the leaderboard
    says which trials are unfinished, so the warning, which points into the study's folder with a
    FileNotFoundError, is dropped."""

    LOGGER = "ray.tune.analysis.experiment_analysis"

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to fetch metrics for")
