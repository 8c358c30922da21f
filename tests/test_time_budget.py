"""The study's time budget counts the time the study ran, over all its runs (search/time_budget.py); the
end-to-end behaviour, through Ray, is in test_resume.py."""

import pickle

import pytest

from fashion_tune.layout import StudyDir
from fashion_tune.search import time_budget
from tests.test_records import T0, record_of


def write_record(tmp_path, runs, **more) -> StudyDir:
    study = StudyDir(tmp_path)
    record_of(runs, **more).write(study.record)
    return study


@pytest.fixture
def clock(monkeypatch):
    """time.time() as the test sets it."""
    now = {"t": T0}
    monkeypatch.setattr(time_budget.time, "time", lambda: now["t"])
    return now


def test_a_resumed_study_spends_only_what_its_earlier_runs_left(tmp_path, clock):
    # 20 min run, 2 hours' pause, then this run began: 15 min of a 35-min budget are left.
    study = write_record(tmp_path, [[T0, T0 + 1200], [T0 + 8400, None]])
    budget = time_budget.TimeBudget(35, study)
    clock["t"] = T0 + 8400 + 14 * 60
    assert not budget.stop_all()
    clock["t"] = T0 + 8400 + 15 * 60
    assert budget.stop_all()
    assert budget(trial_id="a", result={}) is False  # it never stops one trial alone


def test_the_stopper_reads_the_record_afresh_after_pickling(tmp_path, clock):
    """Tune pickles the stopper with the Tuner when the study starts; --resume unpickles that copy,
    which must count the runs the record has by then, not those it had when it was pickled."""
    study = write_record(tmp_path, [[T0, None]])
    budget = time_budget.TimeBudget(10, study)
    clock["t"] = T0 + 60
    assert not budget.stop_all()
    restored = pickle.loads(pickle.dumps(budget))
    record_of([[T0, T0 + 9 * 60], [T0 + 3600, None]]).write(study.record)
    clock["t"] = T0 + 3600 + 59
    assert not restored.stop_all()
    clock["t"] = T0 + 3600 + 61
    assert restored.stop_all()
