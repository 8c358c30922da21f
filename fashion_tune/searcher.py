"""The searcher: Ray Tune's OptunaSearch, telling Optuna which trials ASHA stopped early.

Ray's OptunaSearch tells Optuna that a trial ASHA stopped after 1 epoch is *complete*, with its
1-epoch accuracy as its final value. TPE then compares that value with the 9-epoch values of the
trials that ran their budget, and learns to prefer models that score well after one epoch
(small, fast starters) over models that end best. Measured on quick.yaml, 24 trials, budget 9:
TPE + ASHA settled on 1-block, 16-filter models and its best trial scored 1.6 points below TPE
without early stopping (results/reference/benchmarks.md, "Search efficiency").

Here a trial that ended before its budget without an error is told to Optuna as *pruned*, which
is how Optuna's own pruners report it: TPE ranks pruned trials below every completed one, by how
far they got and then by their last value (optuna.samplers.TPESampler, `_split_trials`).

Kept in its own module, imported only where a study runs: Tune pickles the searcher with the
study's state, and `--resume` unpickles it by this module path.
"""

from __future__ import annotations

from typing import Optional

from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch


class StoppedTrialsArePruned(OptunaSearch):
    """OptunaSearch that tells Optuna a trial stopped before `max_epochs` was pruned."""

    def __init__(self, *args, max_epochs: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False):
        stopped_early = bool(result) and not error and result.get(TRAINING_ITERATION, 0) < self.max_epochs
        if stopped_early:
            # Tune withholds from the searcher the result its scheduler stopped the trial on
            # (tune_controller: "Only updating search alg if the trial is not to be stopped"), so
            # it is reported here: a pruned trial's value is its last reported one.
            self.on_trial_result(trial_id, result)
        # Without a result, OptunaSearch tells the trial to Optuna as PRUNED.
        super().on_trial_complete(trial_id, result=None if stopped_early else result, error=error)
