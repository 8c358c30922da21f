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
        return super()._sample(_Window(study), trial, search_space)


class _Window:
    """A study as the sampler sees it: every attribute the study's own, its ended trials windowed."""

    def __init__(self, study: optuna.Study):
        self._study = study

    def __getattr__(self, name):
        return getattr(self._study, name)

    def _get_trials(self, deepcopy=False, states=None, use_cache=False):
        return windowed(self._study, self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache))


def windowed(study: optuna.Study, trials: list) -> list:
    """`trials` (by number) if WINDOW or fewer ended; else the GOOD best completed and the GOOD best
    pruned (by Optuna's ranking: completed by value, pruned by how far they got, then by their last
    value) and the latest ended, WINDOW in all, by number. Our studies set no constraints (Optuna
    ranks infeasible trials last)."""
    ended = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if len(ended) <= WINDOW:
        return trials
    sign = -1 if study.direction == StudyDirection.MAXIMIZE else 1
    completed = [t for t in ended if t.state == TrialState.COMPLETE]
    pruned = [t for t in ended if t.state == TrialState.PRUNED]
    best = heapq.nsmallest(GOOD, completed, key=lambda t: sign * t.value)
    best += heapq.nsmallest(GOOD, pruned, key=lambda t: _get_pruned_trial_score(t, study))
    kept = {t.number for t in best}
    latest = [t for t in reversed(ended) if t.number not in kept][:WINDOW - len(kept)]
    running = [t for t in trials if t.state not in (TrialState.COMPLETE, TrialState.PRUNED)]
    return sorted(best + latest + running, key=lambda t: t.number)
