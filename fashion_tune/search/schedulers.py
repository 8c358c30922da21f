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
  i-epoch    the baseline every scheduler must beat (Egele et al., arXiv 2307.15422): every trial
             trains grace_period epochs (i); it goes on to its budget only if it is in the best 1/R
             of the trials that reached epoch i before it, as at one ASHA rung. One cut, no waiting.
  none       every trial trains its full budget.

A trial any of them stops reaches Optuna as pruned (searcher.py). The paused trials of halving and
hyperband resume from their last checkpoint in a new process (trainable.py), epoch count intact.

Kept in its own module: Tune pickles the scheduler with the study, and --resume unpickles it by
this module path.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, TrialScheduler
from ray.tune.schedulers.hyperband import _Bracket

log = logging.getLogger(__name__)

TIME_ATTR = "training_iteration"  # epochs: one result a trial reports per epoch


def rungs(grace_period: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The epochs at which trials are compared (grace_period * reduction_factor**k), then the budget."""
    found, rung = [], grace_period
    while rung < max_epochs:
        found.append(rung)
        rung *= reduction_factor
    return found + [max_epochs]


class NamesTrialFolders:
    """Names each trial's folder as Tune adds the trial. Ray 2.60's TuneController can start a trial
    still waiting for its first start on a cached actor (reuse_actors; its step "start any trial that
    can be started with a cached actor") without naming its folder first, and the actor's reset then
    fails: "Cannot access `trial_working_directory` without setting `trial_dir_name`" (a replayed
    HyperBand study of 128 trials, no concurrency limit, benchmarks/replay_schedulers.py)."""

    def on_trial_add(self, tune_controller, trial: Trial):
        trial.init_local_path()
        super().on_trial_add(tune_controller, trial)


class ChoosesAmongLiveTrials:
    """FIFOScheduler's choice of the trial to start next: the first added of the pending trials, else
    of the paused ones; looked for among the live trials (pending, running, paused) instead of every
    trial the study has had. Tune asks at every step of its loop, one step an event (a result, a
    save, an actor started), and Ray's pass over every trial made that O(trials) a step: 4% of the
    driver's busy time at 500 trials of a 10,000-trial study, 30% at 6,000 (py-spy,
    benchmarks/driver_scale.py). Tune adds a trial again when it recovers from a failure, moving it
    last in its list: so here too."""

    _adds = 0  # trials added so far

    def on_trial_add(self, tune_controller, trial: Trial):
        self._adds += 1
        self.__dict__.setdefault("_added", {})[trial.trial_id] = self._adds  # trial id -> when (last) added
        super().on_trial_add(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller) -> Optional[Trial]:
        live, added = tune_controller.get_live_trials(), self.__dict__.get("_added", {})
        for status in (Trial.PENDING, Trial.PAUSED):
            waiting = [trial for trial in live if trial.status == status]
            if waiting:
                return min(waiting, key=lambda trial: added.get(trial.trial_id, 0))
        return None


class Asha(NamesTrialFolders, ChoosesAmongLiveTrials, ASHAScheduler):
    """Ray's ASHAScheduler."""


class EveryTrialToItsBudget(NamesTrialFolders, ChoosesAmongLiveTrials, FIFOScheduler):
    """Tune's FIFOScheduler: no trial stopped early."""


class HyperBand(NamesTrialFolders, HyperBandScheduler):
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

    def choose_trial_to_run(self, tune_controller) -> Optional[Trial]:
        """Ray's choice; failing that, a paused trial that nothing else would ever start."""
        return super().choose_trial_to_run(tune_controller) or self._left_paused(tune_controller)

    def _left_paused(self, tune_controller) -> Optional[Trial]:
        """When no trial of any bracket is running, starting or being saved, a paused trial can only
        wait for ever: Ray's unpauses trials only while it halves a bracket, and can miss one (seen
        2026-12-06: a replayed 128-trial HyperBand study with 7 trials left paused at epochs 3 to
        27 and nothing running; results/reference/benchmarks.md). A bracket whose trials have all
        reached its rung is halved now; else a paused trial below the rung goes on to it."""
        brackets = [b for band in self._hyperbands for b in band if b is not None]
        if any(t.status in (Trial.RUNNING, Trial.PENDING) or t.is_saving
               for b in brackets for t in b.current_trials()):
            return None
        for bracket in brackets:
            paused = [t for t in bracket.current_trials() if t.status == Trial.PAUSED]
            if paused and bracket.cur_iter_done():
                self._process_bracket(tune_controller, bracket)
                chosen = super().choose_trial_to_run(tune_controller)
            else:
                chosen = next((t for t in paused if bracket.continue_trial(t)), None)
                if chosen:
                    bracket.trials_to_unpause.add(chosen)
            if chosen:
                log.warning("trial %s was left paused by %s with no trial running: it goes on",
                            chosen.trial_id, type(self).__name__)
                return chosen
        return None

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


class EpochCut(NamesTrialFolders, ChoosesAmongLiveTrials, FIFOScheduler):
    """The i-epoch cut: at epoch `epoch` a trial stops unless it is in the best 1/reduction_factor of
    the trials that reached that epoch before it (the first one always goes on: ASHA's rule at a
    single rung). On --resume Tune hands a new scheduler every trial: the epoch-i values of the
    trials that had reached it are read back from their records, so the cut goes on as before."""

    def __init__(self, epoch: int, reduction_factor: int):
        super().__init__()
        self.epoch, self.reduction_factor = epoch, reduction_factor
        self._mode: Optional[str] = None
        self.at_cut: dict[str, float] = {}  # trial id -> its metric at the cut, larger is better

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True

    def on_trial_add(self, tune_controller, trial: Trial):
        value = _value_at(trial, self.epoch, self._metric)
        if value is not None:
            self.at_cut[trial.trial_id] = self._larger_is_better(value)
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if result.get(TIME_ATTR) != self.epoch or trial.trial_id in self.at_cut:
            return TrialScheduler.CONTINUE
        value = self._larger_is_better(result[self._metric])
        cutoff = self.cutoff()
        self.at_cut[trial.trial_id] = value
        return TrialScheduler.STOP if cutoff is not None and value < cutoff else TrialScheduler.CONTINUE

    def cutoff(self) -> Optional[float]:
        """The value a trial must reach at the cut to go on: the (1 - 1/R) quantile of those before it."""
        if not self.at_cut:
            return None
        return float(np.nanpercentile(list(self.at_cut.values()), (1 - 1 / self.reduction_factor) * 100))

    def _larger_is_better(self, value: float) -> float:
        return -value if self._mode == "min" else value

    def debug_string(self) -> str:
        return f"i-epoch cut at epoch {self.epoch}: {len(self.at_cut)} trials reached it, cutoff {self.cutoff()}"


def _value_at(trial: Trial, epoch: int, metric: str) -> Optional[float]:
    """A restored trial's metric at `epoch`, from its record in the study (None: it has not reached it)."""
    last = trial.last_result or {}
    if last.get(TIME_ATTR, 0) < epoch:
        return None
    if last.get(TIME_ATTR) == epoch:
        return last.get(metric)
    try:
        for line in Path(trial.path, "result.json").read_text().splitlines():
            row = json.loads(line)
            if row.get(TIME_ATTR) == epoch:
                return row.get(metric)
    except (OSError, ValueError, TypeError) as e:
        log.warning("trial %s: its epoch %d could not be read back (%s); the i-epoch cut goes on without it",
                    trial.trial_id, epoch, e)
    return None


def make(scheduler: str, grace_period: int, reduction_factor: int, max_epochs: int) -> TrialScheduler:
    """The Tune scheduler `--scheduler` names (config.SCHEDULERS)."""
    if scheduler == "asha":
        return Asha(time_attr=TIME_ATTR, max_t=max_epochs, grace_period=grace_period, reduction_factor=reduction_factor)
    if scheduler == "halving":
        return SuccessiveHalving(grace_period, reduction_factor, max_epochs)
    if scheduler == "hyperband":
        return HyperBand(time_attr=TIME_ATTR, max_t=max_epochs, reduction_factor=reduction_factor)
    if scheduler == "i-epoch":
        return EpochCut(grace_period, reduction_factor)
    return EveryTrialToItsBudget()
