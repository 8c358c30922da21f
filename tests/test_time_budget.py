"""The study's time budget counts the time the study ran, over all its runs (search/time_budget.py); the
end-to-end behaviour, through Ray, is in test_resume.py."""

import json
import pickle

import pytest

from fashion_tune.search import time_budget
from fashion_tune.layout import StudyDir
from fashion_tune.results import running_seconds

T0 = 1_800_000_000.0


def write_record(tmp_path, runs, **more) -> StudyDir:
    study = StudyDir(tmp_path)
    study.record.write_text(json.dumps({"started_at": runs[0][0], "runs": runs, **more}))
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
    study.record.write_text(json.dumps({"started_at": T0, "runs": [[T0, T0 + 9 * 60], [T0 + 3600, None]]}))
    clock["t"] = T0 + 3600 + 59
    assert not restored.stop_all()
    clock["t"] = T0 + 3600 + 61
    assert restored.stop_all()


def test_spent_needs_a_budget():
    record = {"started_at": T0, "runs": [[T0, T0 + 10**6]]}
    assert not time_budget.spent(None, record, T0 + 10**6)
    assert time_budget.spent(1, record, T0 + 60)
    assert not time_budget.spent(1, record, T0 + 59)


def test_a_killed_run_ends_at_its_last_reported_epoch_not_at_the_resume():
    record = {"started_at": T0, "runs": [[T0, None]], "wall_s": 0.0}
    time_budget.close_killed_run(record, last_report=T0 + 300)
    assert record["runs"] == [[T0, T0 + 300]] and record["wall_s"] == 300
    # Resumed an hour later, the study has run 5 min, not 65.
    record["runs"].append([T0 + 3900, None])
    assert running_seconds(record, T0 + 3900) == 300
    time_budget.close_killed_run(record, last_report=None)  # killed before any epoch: it ran no time
    assert record["runs"][-1] == [T0 + 3900, T0 + 3900]


def test_a_closed_run_is_left_as_it_is():
    record = {"started_at": T0, "runs": [[T0, T0 + 50]], "wall_s": 50.0}
    time_budget.close_killed_run(record, last_report=T0 + 999)
    assert record == {"started_at": T0, "runs": [[T0, T0 + 50]], "wall_s": 50.0}
