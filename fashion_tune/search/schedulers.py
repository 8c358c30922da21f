"""How a study stops weak trials early: the schedulers `--scheduler` offers, as Ray Tune schedulers.

  asha       Ray's ASHAScheduler: asynchronous; at each rung a trial goes on if it is in the best
             1/R of the trials that reached that rung *before it*. Never waits, so no core idles;
             but early arrivals set the cutoff, and with TPE's improving proposals most later
             trials clear it (results/reference/benchmarks.md, "Search efficiency").
  halving    synchronous successive halving, in brackets of R**k trials: every trial of a bracket
             trains grace_period epochs and waits (paused, its checkpoint kept) until all its
             peers have; the best 1/R go on to the next rung, and so on up to the budget, where
             one trial of the bracket arrives. Decided among peers, at the cost of waiting.
  hyperband  Ray's HyperBandScheduler: brackets of successive halving from the most careful
             (every trial runs its budget) to the most aggressive (the halving bracket above);
             hedges against a grace period too short to tell good models from slow starters.
  none       every trial trains its full budget.

A trial any of them stops reaches Optuna as pruned (searcher.py). The paused trials of halving and
hyperband resume from their last checkpoint in a new process (trainable.py), epoch count intact.

Kept in its own module: Tune pickles the scheduler with the study, and --resume unpickles it by
this module path.
"""

from __future__ import annotations

from typing import Optional

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, TrialScheduler
from ray.tune.schedulers.hyperband import _Bracket

TIME_ATTR = "training_iteration"  # epochs: one result a trial reports per epoch


def rungs(grace_period: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The epochs at which trials are compared (grace_period * reduction_factor**k), then the budget."""
    found, rung = [], grace_period
    while rung < max_epochs:
        found.append(rung)
        rung *= reduction_factor
    return found + [max_epochs]


class HyperBand(HyperBandScheduler):
    """Ray's HyperBandScheduler, made to leave no trial paused for ever, in one run or across
    --resume (tests/test_schedulers.py). Tune does not save a scheduler with the study: on --resume
    it hands a new one every trial, finished ones too, and Ray's would put a finished trial in a
    bracket that then waits for ever for its result. Finished trials are left out; an unfinished one
    starts again from its checkpoint, at whatever epoch that holds, in a new bracket."""

    def on_trial_add(self, tune_controller, trial: Trial):
        if trial.status not in (Trial.TERMINATED, Trial.ERROR):
            super().on_trial_add(tune_controller, trial)

    def _process_bracket(self, tune_controller, bracket: _Bracket) -> str:
        """Ray's halving, repeated while every trial left in the bracket has already reached its next
        rung. Ray's assumes a bracket's trials move in step, true in one run but not after --resume:
        a trial restored after epoch 2 into a new bracket comparing at epoch 1 is at rung 2 as soon as
        it reports, and Ray's would leave it paused for a comparison that never comes. Re-armed after
        each pass (Ray's never clears is_being_processed, so after the first halving a trial that
        ends or fails no longer lets its bracket's paused trials go on)."""
        action = super()._process_bracket(tune_controller, bracket)
        while action == TrialScheduler.PAUSE and bracket.current_trials() and bracket.cur_iter_done():
            action = super()._process_bracket(tune_controller, bracket)
        bracket.is_being_processed = False
        return action

    def on_trial_remove(self, tune_controller, trial: Trial):
        """Ray's, and: a trial that ends or fails by itself (not one its bracket stops: those are
        paused) and leaves its bracket finished stops the trials paused at the budget in it. Ray's
        does that only when a trial reports the last result; after --resume a trial restored at its
        budget ends without one."""
        super().on_trial_remove(tune_controller, trial)
        bracket, _ = self._trial_info[trial]
        if trial.status != Trial.PAUSED and bracket.finished():
            bracket.cleanup_full(tune_controller)


class SuccessiveHalving(HyperBand):
    """Synchronous successive halving: Ray's HyperBand with only its most aggressive bracket, made to
    start at grace_period epochs. Each bracket holds reduction_factor ** (rungs - 1) trials, so one
    of them reaches the budget; the next bracket fills while the last one waits."""

    def __init__(self, grace_period: int, reduction_factor: int, max_epochs: int):
        super().__init__(time_attr=TIME_ATTR, max_t=max_epochs, reduction_factor=reduction_factor)
        self.grace_period = grace_period
        self.halvings = len(rungs(grace_period, reduction_factor, max_epochs)) - 1
        self.bracket_size = reduction_factor ** self.halvings
        self._s_max_1 = 1  # one bracket per band: a filled bracket starts the next

    def _create_bracket(self, s):
        return _Bracket(time_attr=TIME_ATTR, max_trials=self.bracket_size, init_t_attr=self.grace_period,
                        max_t_attr=self._max_t_attr, eta=self._eta, s=self.halvings)


def make(scheduler: str, grace_period: int, reduction_factor: int, max_epochs: int) -> Optional[TrialScheduler]:
    """The Tune scheduler `--scheduler` names (config.SCHEDULERS; None: Tune's FIFO, every trial to
    its budget)."""
    if scheduler == "asha":
        return ASHAScheduler(time_attr=TIME_ATTR, max_t=max_epochs, grace_period=grace_period,
                             reduction_factor=reduction_factor)
    if scheduler == "halving":
        return SuccessiveHalving(grace_period, reduction_factor, max_epochs)
    if scheduler == "hyperband":
        return HyperBand(time_attr=TIME_ATTR, max_t=max_epochs, reduction_factor=reduction_factor)
    return None
