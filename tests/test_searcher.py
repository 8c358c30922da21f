"""The searcher on a real OptunaSearch and a real Optuna study, driven with the calls Tune makes.

Tune (tune_controller) hands every result to the searcher's on_trial_result, except the one on
which the scheduler stops the trial: that one comes only with on_trial_complete. ASHA stops a
trial that reaches its budget too, so a completed trial's last value also comes that way.
"""

import optuna
import optuna.distributions as od
import pytest

BUDGET = 3


def make_searcher(cls, storage):
    kwargs = {"max_epochs": BUDGET} if cls.__name__ == "StoppedTrialsArePruned" else {}
    return cls(space={"learning_rate": od.FloatDistribution(1e-4, 1e-2, log=True)}, metric="val_accuracy",
               mode="max", sampler=optuna.samplers.RandomSampler(seed=0), storage=storage, study_name="unit", **kwargs)


def run_trial(searcher, trial_id: str, values: list[float]) -> None:
    """A trial that reports `values`, one an epoch, and is stopped by the scheduler on the last."""
    searcher.suggest(trial_id)
    results = [{"val_accuracy": v, "training_iteration": epoch} for epoch, v in enumerate(values, 1)]
    for result in results[:-1]:
        searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result=results[-1])


def optuna_trials(searcher_class) -> dict:
    """Three trials through the searcher: one runs its budget, one is stopped at epoch 2, one fails."""
    from ray.tune.search.optuna import OptunaSearch

    storage = optuna.storages.InMemoryStorage()
    searcher = make_searcher(searcher_class or OptunaSearch, storage)
    run_trial(searcher, "full", [0.50, 0.60, 0.70])
    run_trial(searcher, "stopped", [0.30, 0.40])
    searcher.suggest("failed")
    searcher.on_trial_result("failed", {"val_accuracy": 0.2, "training_iteration": 1})
    searcher.on_trial_complete("failed", error=True)
    trials = optuna.load_study(study_name="unit", storage=storage).trials  # Optuna's public view
    return dict(zip(["full", "stopped", "failed"], trials))


def test_a_trial_asha_stopped_reaches_optuna_as_pruned_with_its_last_value():
    from fashion_tune.search.searcher import StoppedTrialsArePruned

    trials = optuna_trials(StoppedTrialsArePruned)
    assert {name: t.state.name for name, t in trials.items()} == {"full": "COMPLETE", "stopped": "PRUNED",
                                                                  "failed": "FAIL"}
    assert trials["full"].value == pytest.approx(0.70)
    assert trials["stopped"].value == pytest.approx(0.40) and trials["stopped"].last_step == 2
    assert trials["stopped"].intermediate_values == {1: 0.30, 2: 0.40}


def test_plain_optuna_search_would_call_the_stopped_trial_complete():
    """Why the subclass exists: Ray's own OptunaSearch tells Optuna a 2-epoch trial is complete."""
    trials = optuna_trials(None)
    assert trials["stopped"].state.name == "COMPLETE" and trials["stopped"].value == pytest.approx(0.40)


def test_an_epoch_trained_again_after_a_restart_holds_its_newest_value():
    """Tune's recovery is at-least-once: a trial restarted from its epoch-1 checkpoint trains epochs 2
    and 3 again. Optuna then holds the values the model went on from, once each (it kept the first)."""
    from fashion_tune.search.searcher import StoppedTrialsArePruned

    storage = optuna.storages.InMemoryStorage()
    searcher = make_searcher(StoppedTrialsArePruned, storage)
    searcher.suggest("again")
    for epoch, value in [(1, 0.30), (2, 0.40), (3, 0.45), (2, 0.41), (3, 0.46)]:
        searcher.on_trial_result("again", {"val_accuracy": value, "training_iteration": epoch})
    searcher.on_trial_complete("again", result={"val_accuracy": 0.46, "training_iteration": 3})
    [trial] = optuna.load_study(study_name="unit", storage=storage).trials
    assert trial.intermediate_values == {1: 0.30, 2: 0.41, 3: 0.46} and trial.value == pytest.approx(0.46)


def test_the_driver_holds_what_optuna_db_holds(tmp_path):
    """SoleWriter keeps every trial in memory, running ones too, updated as it writes: what TPE
    reads from it is what Optuna's own tools read from the file."""
    from fashion_tune.search.searcher import SoleWriter

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=SoleWriter(url), study_name="held", direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    space = {"learning_rate": od.FloatDistribution(1e-4, 1e-2, log=True),
             "filters": od.CategoricalDistribution([8, 16])}
    for number in range(12):
        trial = study.ask(fixed_distributions=space)
        trial.set_user_attr("trial_id", f"t{number}")
        for epoch in range(1, 1 + number % 3 + 1):
            trial.report(0.5 + 0.01 * number + 0.001 * epoch, epoch)
        if number % 4 == 3:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif number % 4 != 2:  # every fourth stays running
            study.tell(trial, 0.6 + 0.01 * number)
    study.ask(fixed_distributions=space).report(0.4, 1)  # running, one epoch
    study._storage.write_held()  # as the searcher does after a proposal and at each snapshot

    from_file = optuna.load_study(study_name="held", storage=url).trials
    assert seen(study.trials) == seen(from_file) and len(from_file) == 13
    assert {t.state.name for t in from_file} == {"COMPLETE", "PRUNED", "RUNNING"}
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert seen(study.get_trials(states=ended)) == seen(optuna.load_study(study_name="held", storage=url).get_trials(
        states=ended)) and len(study.get_trials(deepcopy=False, states=ended)) == 9


def seen(trials):
    return [(t.number, t.state, t.params, t.distributions, t.intermediate_values, t.user_attrs, t.value,
             t.datetime_complete) for t in trials]


def test_parameters_and_epoch_values_are_written_together_and_before_a_trials_end(tmp_path):
    """SoleWriter holds a proposal's parameters and each epoch's value, TPE reading them at once, and
    writes them in one statement: when told to, once a second, and before any trial's state changes."""
    from fashion_tune.search.searcher import SoleWriter

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    writer = SoleWriter(url)
    writer.WRITE_EVERY_S = 3600  # the second's rule, tested last
    study = optuna.create_study(storage=writer, study_name="held", direction="maximize")
    space = {"learning_rate": od.FloatDistribution(1e-4, 1e-2, log=True),
             "filters": od.CategoricalDistribution([8, 16])}

    def from_file():
        return optuna.load_study(study_name="held", storage=url).trials

    first, second = study.ask(fixed_distributions=space), study.ask(fixed_distributions=space)
    assert set(study.trials[0].params) == set(space) and from_file()[0].params == {}  # held, not written
    writer.write_held()
    assert seen(from_file()) == seen(study.trials)
    first.report(0.5, 1)
    first.report(0.6, 2)
    writer.set_trial_intermediate_value(first._trial_id, 2, 0.61)  # an epoch trained again
    second.report(0.3, 1)
    assert study.trials[0].intermediate_values == {1: 0.5, 2: 0.61} and from_file()[0].intermediate_values == {}
    study.tell(first, 0.61)  # written before the trial's end: every trial's values so far
    assert seen(from_file()) == seen(study.trials)
    assert from_file()[0].intermediate_values == {1: 0.5, 2: 0.61} and from_file()[1].intermediate_values == {1: 0.3}
    writer.WRITE_EVERY_S = 0
    second.report(0.4, 2)  # the second passed
    assert from_file()[1].intermediate_values == {1: 0.3, 2: 0.4}
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        study.ask(fixed_distributions={"filters": od.FloatDistribution(8, 16)})  # Optuna's check, kept


def test_a_proposal_a_killed_driver_never_wrote_is_marked_failed_on_resume(tmp_path):
    """The driver killed between a proposal and its write: optuna.db holds a running trial without
    parameters that the saved searcher does not know; --resume marks it failed (searcher.restore), as
    it does any proposal made after the last snapshot, and TPE never reads it."""
    from fashion_tune.search.searcher import SoleWriter, StoppedTrialsArePruned

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = make_searcher(StoppedTrialsArePruned, SoleWriter(url))
    run_trial(searcher, "done", [0.5, 0.6, 0.7])
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's snapshot
    killed = SoleWriter(url)  # the driver after it: a proposal made, its parameters held, then killed
    optuna.load_study(study_name="unit", storage=killed).ask(
        fixed_distributions={"learning_rate": od.FloatDistribution(1e-4, 1e-2, log=True)})
    assert [bool(t.params) for t in optuna.load_study(study_name="unit", storage=url).trials] == [True, False]

    resumed = make_searcher(StoppedTrialsArePruned, optuna.storages.InMemoryStorage())
    resumed.storage_now = url
    resumed.restore(str(tmp_path / "searcher.pkl"))
    trials = optuna.load_study(study_name="unit", storage=url).trials
    assert [(t.state.name, bool(t.params)) for t in trials] == [("COMPLETE", True), ("FAIL", False)]


def test_a_spent_time_budget_completes_a_trial_that_logged_its_last_epoch_and_prunes_the_rest(tmp_path):
    """The budget can run out between a trial logging its last epoch and Tune telling its searcher
    (which Tune does only once the trial is stopped): that trial ran its budget and is complete, with
    the withheld epoch's value; a trial stopped mid-way is pruned and marked cut (seen in CI once:
    the leaderboard said completed, study.json said cut)."""
    import json

    from fashion_tune import layout
    from fashion_tune.layout import StudyDir
    from fashion_tune.results import TRIAL_RESULTS
    from fashion_tune.search.searcher import StoppedTrialsArePruned, end_cut_short

    study = StudyDir(tmp_path)
    searcher = make_searcher(StoppedTrialsArePruned, optuna.storages.RDBStorage(study.optuna_storage))
    for trial_id, values in {"ran": [0.50, 0.60, 0.70], "cut": [0.30]}.items():
        searcher.suggest(trial_id)
        results = [{"trial_id": trial_id, "val_accuracy": v, "training_iteration": epoch}
                   for epoch, v in enumerate(values, 1)]
        for result in results[:BUDGET - 1]:  # the last epoch of the budget is withheld from the searcher
            searcher.on_trial_result(trial_id, result)
        folder = tmp_path / layout.trial_folder_name(trial_id)
        folder.mkdir()
        (folder / TRIAL_RESULTS).write_text("".join(json.dumps(r) + "\n" for r in results))
    searcher.suggest("never started")

    assert end_cut_short(study, "unit", "val_accuracy", BUDGET) == ["cut", "never started"]
    ran, cut, never = optuna.load_study(study_name="unit", storage=study.optuna_storage).trials
    assert ran.state.name == "COMPLETE" and ran.value == pytest.approx(0.70)
    assert ran.intermediate_values == {1: 0.50, 2: 0.60, 3: 0.70} and "cut_by_time_budget" not in ran.user_attrs
    assert cut.state.name == "PRUNED" and cut.value == pytest.approx(0.30) and cut.user_attrs["cut_by_time_budget"]
    assert never.state.name == "PRUNED" and never.intermediate_values == {}
