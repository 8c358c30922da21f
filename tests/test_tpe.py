"""The search's TPE (fashion_tune/search/tpe.py): Optuna's TPE exactly up to its window of ended
trials; past it, shown the trials Optuna would call best and the latest, and proposing what Optuna's
TPE proposes from those trials alone."""

import random

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers._tpe.sampler import _split_trials, default_gamma
from optuna.trial import TrialState

from fashion_tune.search import tpe

SPACE = {"learning_rate": FloatDistribution(1e-4, 1e-2, log=True), "conv_blocks": IntDistribution(1, 3),
         "optimizer": CategoricalDistribution(["adam", "sgd"]), "dropout": FloatDistribution(0.0, 0.5)}


def ended_trials(count: int, seed: int = 0, max_epochs: int = 9) -> list:
    """`count` ended trials: about a third completed at `max_epochs` with a value, the rest pruned
    after 1 or 3 epochs with a value per epoch (ties included, as a coarse metric gives)."""
    draw = random.Random(seed)
    trials = []
    for _ in range(count):
        params = {"learning_rate": 10 ** draw.uniform(-4, -2), "conv_blocks": draw.randint(1, 3),
                  "optimizer": draw.choice(["adam", "sgd"]), "dropout": draw.uniform(0, 0.5)}
        epochs = draw.choice([1, 3, max_epochs])
        values = {epoch: round(draw.uniform(0.7, 0.9), 2) for epoch in range(1, epochs + 1)}
        completed = epochs == max_epochs
        trials.append(optuna.trial.create_trial(
            params=params, distributions=SPACE, intermediate_values=values,
            state=TrialState.COMPLETE if completed else TrialState.PRUNED,
            value=values[epochs] if completed else None))
    return trials


def study_of(trials: list, sampler) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.add_trials(trials)
    return study


def proposals(study: optuna.Study, count: int) -> list[dict]:
    out = []
    for _ in range(count):
        trial = study.ask(fixed_distributions=SPACE)
        out.append(trial.params)
        study.tell(trial, state=TrialState.PRUNED)
    return out


def test_up_to_its_window_the_search_proposes_what_optunas_tpe_proposes():
    trials = ended_trials(300)
    ours = proposals(study_of(trials, tpe.sampler(seed=3, startup_trials=10)), 15)
    optunas = proposals(study_of(trials, optuna.samplers.TPESampler(seed=3, n_startup_trials=10)), 15)
    assert ours == optunas


def test_past_its_window_it_is_shown_optunas_best_trials_and_the_latest(monkeypatch):
    monkeypatch.setattr(tpe, "WINDOW", 300)
    study = study_of(ended_trials(900, seed=1), optuna.samplers.RandomSampler(seed=0))
    everything = study.get_trials(deepcopy=False)

    shown = tpe.windowed(study, everything)

    assert len(shown) == 300
    assert [t.number for t in shown] == sorted(t.number for t in shown)
    good, _ = _split_trials(study, everything, default_gamma(len(everything)))
    good_of_shown, _ = _split_trials(study, shown, default_gamma(len(shown)))
    assert [t.number for t in good_of_shown] == [t.number for t in good]  # the good density: Optuna's own
    best_pruned, _ = _split_trials(study, [t for t in everything if t.state == TrialState.PRUNED], 25)
    best = {t.number for t in good + best_pruned}
    assert best <= {t.number for t in shown}
    latest = [t.number for t in shown if t.number not in best]  # the rest: the latest of the others
    assert latest == [t.number for t in everything if t.number not in best][-len(latest):]


@pytest.mark.parametrize("seed", [0, 1])
def test_past_its_window_it_proposes_what_optunas_tpe_proposes_from_the_shown_trials(monkeypatch, seed):
    monkeypatch.setattr(tpe, "WINDOW", 300)
    trials = ended_trials(900, seed=seed)
    study = study_of(trials, tpe.sampler(seed=seed, startup_trials=10))
    shown = tpe.windowed(study, study.get_trials(deepcopy=False))
    ours = study.ask(fixed_distributions=SPACE).params
    optunas = study_of(shown, optuna.samplers.TPESampler(seed=seed, n_startup_trials=10)).ask(
        fixed_distributions=SPACE).params
    assert ours == optunas


def test_the_best_kept_as_trials_end_are_the_best_of_every_trial_and_are_not_pickled(monkeypatch):
    import pickle

    monkeypatch.setattr(tpe, "WINDOW", 300)
    sampler = tpe.sampler(seed=0, startup_trials=10)
    study = study_of(ended_trials(400, seed=2), sampler)
    for trial in ended_trials(200, seed=3):  # trials end one by one, proposals between them
        study.ask(fixed_distributions=SPACE)
        study.add_trial(trial)
    kept = sampler._best
    fresh = tpe.Best()
    fresh.update(study, study.get_trials(deepcopy=False, states=tpe.ENDED))
    assert [t.number for t in kept.completed] == [t.number for t in fresh.completed]
    assert [t.number for t in kept.pruned] == [t.number for t in fresh.pruned]
    assert "_best" not in pickle.loads(pickle.dumps(sampler)).__dict__  # Tune's snapshots stay small
    assert "_best" in sampler.__dict__  # pickling leaves the live sampler as it was
