"""The search's TPE: Optuna's TPESampler, shown at most WINDOW ended trials: the best and the latest.

Optuna's TPE reads every ended trial at each proposal (ranks them, converts their parameters, sums
a kernel for each): a proposal took 2 ms at 100 trials, 17 ms at 1,000 and 117 ms at 10,000
(benchmarks/tpe_scale.py), so a study's proposals together grow with the square of its trials.
Past WINDOW ended trials, this TPE is shown the trials Optuna would rank best (enough for its "good"
density, which holds 25 trials at most: optuna's default_gamma) and the latest ones up to WINDOW.
The good density is then exactly Optuna's; the other one is built from recent trials, the ones
Optuna's default weights count most already (an older trial's weight falls towards 0). Up to
WINDOW ended trials it is Optuna's TPE, proposal for proposal (tests/test_tpe.py).
"""

from __future__ import annotations

import heapq

import optuna
from optuna.samplers._tpe.sampler import _get_pruned_trial_score, default_gamma
from optuna.study import StudyDirection
from optuna.trial import TrialState

WINDOW = 1000  # ended trials TPE is shown; the good density's 25 need 250 for Optuna's default gamma
GOOD = default_gamma(WINDOW)  # 25: trials kept for the good density, however many ended


def sampler(seed: int | None, startup_trials: int) -> optuna.samplers.TPESampler:
    """The search's TPE sampler."""
    return WindowedTPE(seed=seed, n_startup_trials=startup_trials)


class WindowedTPE(optuna.samplers.TPESampler):
    """TPESampler whose proposals look at the best and the latest WINDOW ended trials."""

    def _sample(self, study, trial, search_space):
        if "_best" not in self.__dict__:  # kept across proposals, not pickled with Tune's snapshots
            self._best = Best()
        return super()._sample(_Window(study, self._best), trial, search_space)

    def __getstate__(self):
        # rebuilt from the study's trials after --resume (a copy: object.__getstate__ is the live __dict__)
        return {key: value for key, value in self.__dict__.items() if key != "_best"}


class _Window:
    """A study as the sampler sees it: every attribute the study's own, its ended trials windowed."""

    def __init__(self, study: optuna.Study, best: Best):
        self._study, self._best = study, best

    def __getattr__(self, name):
        return getattr(self._study, name)

    def _get_trials(self, deepcopy=False, states=None, use_cache=False):
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return windowed(self._study, trials, self._best)


ENDED = (TrialState.COMPLETE, TrialState.PRUNED)


class Best:
    """The GOOD best completed and GOOD best pruned trials of a study, by Optuna's ranking (completed by
    value; pruned by how far they got, then by their last value), kept up to date as trials end: a
    trial is ranked once, not at every proposal."""

    def __init__(self):
        self.seen: set[int] = set()  # numbers of the ended trials ranked
        self.completed: list = []
        self.pruned: list = []

    def update(self, study: optuna.Study, trials: list) -> None:
        new = [t for t in trials if t.number not in self.seen and t.state in ENDED]
        if not new:
            return
        self.seen.update(t.number for t in new)
        sign = -1 if study.direction == StudyDirection.MAXIMIZE else 1
        completed = self.completed + [t for t in new if t.state == TrialState.COMPLETE]
        pruned = self.pruned + [t for t in new if t.state == TrialState.PRUNED]
        # in number order first: heapq.nsmallest keeps the earlier of a tie, as Optuna's stable sort does
        self.completed = heapq.nsmallest(GOOD, _by_number(completed), key=lambda t: sign * t.value)
        self.pruned = heapq.nsmallest(GOOD, _by_number(pruned), key=lambda t: _get_pruned_trial_score(t, study))

    def numbers(self) -> set[int]:
        return {t.number for t in self.completed + self.pruned}


def windowed(study: optuna.Study, trials: list, best: Best | None = None) -> list:
    """`trials` (ended ones, in number order: what TPE asks for without its constant liar) if WINDOW
    or fewer; else the best (`best`, brought up to date) and the latest, WINDOW in all, in number
    order. Our studies set no constraints (Optuna ranks infeasible trials last)."""
    best = best or Best()
    best.update(study, trials)
    if len(best.seen) <= WINDOW:
        return trials
    kept = best.numbers()
    latest = []
    for t in reversed(trials):  # trials come in number order: only the window's end is read
        if len(latest) == WINDOW - len(kept):
            break
        if t.state in ENDED and t.number not in kept:
            latest.append(t)
    return _by_number(best.completed + best.pruned + latest)


def _by_number(trials: list) -> list:
    return sorted(trials, key=lambda t: t.number)
