"""What mattered: importances and Optuna's plots from a real Optuna study kept in SQLite, as a search leaves it."""

import math

import optuna
import pytest

from fashion_tune import insights
from fashion_tune.layout import StudyDir


def optuna_db(study: StudyDir, completed: int, pruned: int = 3) -> None:
    """A study in study.optuna_db: accuracy driven by the learning rate, barely by the dropout."""
    study.path.mkdir(parents=True, exist_ok=True)
    stored = optuna.create_study(study_name="s", storage=study.optuna_storage, direction="maximize",
                                 sampler=optuna.samplers.RandomSampler(seed=0))
    for number in range(completed + pruned):
        trial = stored.ask()
        lr = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        value = 0.9 - 0.05 * abs(math.log10(lr) + 2.5) - 0.001 * dropout
        trial.report(value - 0.1, 1)
        if number < completed:
            trial.report(value, 2)
            stored.tell(trial, value)
        else:
            stored.tell(trial, state=optuna.trial.TrialState.PRUNED)


def test_importances_of_full_budget_trials_and_optunas_plots(tmp_path):
    study = StudyDir(tmp_path / "s")
    optuna_db(study, completed=24)
    found = insights.analyse(study, "s", seed=0)
    assert (found.completed, found.total) == (24, 27)
    for evaluator in insights.EVALUATORS:  # both of Optuna's evaluators see what drives the value
        shares = found.importances[evaluator]
        assert list(shares)[0] == "learning_rate" and shares["learning_rate"] > 0.8, (evaluator, shares)
        assert sum(shares.values()) == pytest.approx(1.0)
    assert found.ranked() == ["learning_rate", "dropout"]
    assert set(found.figures) == set(insights.FIGURES)
    for png in found.figures.values():
        assert png.parent == study.insights and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = "\n".join(insights.markdown(found, study, tmp_path / "s"))
    assert "from the 24 trials that ran their full budget (of 27" in text
    assert "| learning_rate | " in text and "(insights/optimization_history.png)" in text
    assert f"optuna-dashboard sqlite:///{tmp_path / 's' / 'optuna.db'}" in text


def test_too_few_full_budget_trials_give_no_importances_only_plots(tmp_path):
    study = StudyDir(tmp_path / "s")
    optuna_db(study, completed=4)
    found = insights.analyse(study, "s", seed=0)
    assert found.importances == {} and found.ranked() == []
    text = "\n".join(insights.markdown(found, study, tmp_path / "s"))
    assert "No importances: only 4 of 7 trials ran their full budget; importances need at least 10." in text
    assert "param_importances" not in text and "(insights/intermediate_values.png)" in text


@pytest.mark.parametrize("settled_on", ["one configuration", "one value"])
def test_trials_that_do_not_vary_give_no_importances_and_the_report_is_written(tmp_path, settled_on):
    """TPE on a small space can propose one configuration again and again (a replayed study of 32
    trials on 6 configurations did): fANOVA then fails ("zero total variance"), which ended the
    study's reports with an error."""
    study = StudyDir(tmp_path / "s")
    study.path.mkdir(parents=True)
    stored = optuna.create_study(study_name="s", storage=study.optuna_storage, direction="maximize")
    for number in range(12):
        trial = stored.ask()
        if settled_on == "one configuration":  # every trial the same, scoring a little differently
            trial.suggest_float("learning_rate", 1e-3, 1e-3)
            trial.suggest_float("dropout", 0.2, 0.2)
            stored.tell(trial, 0.9 + 0.001 * number)
        else:  # every trial different, all scoring alike
            trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
            trial.suggest_float("dropout", 0.0, 0.5)
            stored.tell(trial, 0.9)
    found = insights.analyse(study, "s", seed=0)
    assert found.importances == {}
    text = "\n".join(insights.markdown(found, study, tmp_path / "s"))
    assert ("No importances: the 12 trials that ran their full budget all had the same configuration or the same "
            "value: nothing varies to rank") in text


def test_a_study_without_optuna_db_says_so(tmp_path):
    study = StudyDir(tmp_path / "old")
    assert insights.analyse(study, "old", seed=0) is None
    assert "No optuna.db in this study" in "\n".join(insights.markdown(None, study, tmp_path / "old"))
