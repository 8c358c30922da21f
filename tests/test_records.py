"""The JSON records (records.py): each reads back what it wrote, the files of the code before them
read unchanged, a damaged file is one line naming it and the key, and a study's clock counts the
time it ran, not its pauses."""

import json

import pytest

from fashion_tune.config import DataSettings, SearchSettings
from fashion_tune.errors import UserError
from fashion_tune.records import CHOSEN_ON_TEST, Calibration, ModelCard, RetrainRecord, Review, SpaceRef, StudyRecord
from tests.conftest import ROOT

T0 = 1_800_000_000.0
REFERENCE = ROOT / "results" / "reference"


def record_of(runs=(), started_at=None, **more) -> StudyRecord:
    """A study record with these runs ([start, end] lists, as study.json has them)."""
    settings = more.pop("settings", SearchSettings(name="unit"))
    space = more.pop("space", SpaceRef("space.yaml", "0" * 64, "val_accuracy", "max"))
    return StudyRecord(name="unit", settings=settings, data=DataSettings(), space=space,
                       command="python -m fashion_tune", started_at=runs[0][0] if runs else (started_at or T0),
                       runs=tuple(map(tuple, runs)), **more)


def test_minutes_leave_out_the_pauses_between_runs_of_a_study():
    """A study interrupted at 10 s and resumed at 20 s has run 23 s at 33 s; a killed run (no end)
    is taken to have lasted until the next began."""
    record = record_of([[T0, T0 + 10], [T0 + 20, None], [T0 + 40, None]])
    assert record.running_seconds(T0 + 5) == 5
    assert record.running_seconds(T0 + 33) == 23
    assert record.running_seconds(T0 + 50) == 40
    assert record_of(started_at=T0).running_seconds(T0 + 33) == 33  # studies from before runs were kept


def test_spent_needs_a_budget():
    record = record_of([[T0, T0 + 10**6]])
    assert not record.budget_spent(T0 + 10**6)
    timed = record_of([[T0, T0 + 10**6]], settings=SearchSettings(name="unit", time_budget_min=1))
    assert timed.budget_spent(T0 + 60)
    assert not timed.budget_spent(T0 + 59)


def test_a_killed_run_ends_at_its_last_reported_epoch_not_at_the_resume():
    record = record_of([[T0, None]]).with_killed_run_closed(last_report=T0 + 300)
    assert record.runs == ((T0, T0 + 300),) and record.wall_s == 300
    # Resumed an hour later, the study has run 5 min, not 65.
    record = record.with_run_started(T0 + 3900)
    assert record.running_seconds(T0 + 3900) == 300
    record = record.with_killed_run_closed(last_report=None)  # killed before any epoch: it ran no time
    assert record.runs[-1] == (T0 + 3900, T0 + 3900)


def test_a_closed_run_is_left_as_it_is():
    record = record_of([[T0, T0 + 50]], wall_s=50.0)
    assert record.with_killed_run_closed(last_report=T0 + 999) == record


def test_a_study_record_reads_back_what_it_wrote(tmp_path):
    record = record_of([[T0, T0 + 50]], wall_s=50.0).with_end(T0 + 60, ("a1b2",))
    record.write(tmp_path / "study.json")
    assert StudyRecord.read(tmp_path / "study.json") == record
    assert json.loads((tmp_path / "study.json").read_text())["runs"] == [[T0, T0 + 50]]  # the file's shape as before


def without_nones(value):
    """A JSON value without its null entries: keys added since a file was written come back as null."""
    if isinstance(value, dict):
        return {k: without_nones(v) for k, v in value.items() if v is not None}
    return [without_nones(v) for v in value] if isinstance(value, list) else value


@pytest.mark.parametrize("cls,path", [(StudyRecord, "study.json"), (RetrainRecord, "retrain/retrain.json"),
                                      (ModelCard, "model/model_card.json")])
def test_the_committed_records_of_the_code_before_them_read_unchanged(cls, path):
    written = json.loads((REFERENCE / path).read_text())
    assert without_nones(cls.read(REFERENCE / path).to_json()) == without_nones(written)


def test_the_committed_records_read_as_typed_fields():
    study = StudyRecord.read(REFERENCE / "study.json")
    assert study.settings.scheduler == "asha" and study.runs[0][1] > study.runs[0][0]
    retrain = RetrainRecord.read(REFERENCE / "retrain" / "retrain.json")
    assert retrain.calibration.review.threshold == pytest.approx(0.82) and not retrain.calibration.review.chosen_on_test
    card = ModelCard.read(REFERENCE / "model" / "model_card.json")
    assert card.review.threshold == pytest.approx(0.82) and card.classes[0] == "T-shirt/top"


def test_a_review_written_before_chosen_on_existed_was_chosen_on_the_test_images():
    review = Review.from_json({"threshold": 0.9, "coverage": 0.8, "accuracy": 0.98, "target_accuracy": 0.98})
    assert review.chosen_on == CHOSEN_ON_TEST and review.chosen_on_test


@pytest.mark.parametrize("text,message", [
    ('{"name": "unit"', "study.json: not valid JSON"),
    ('{"name": "unit"}', "study.json: missing key 'settings'"),
    ("[1]", "study.json: expected a JSON object, found list"),
])
def test_a_damaged_study_record_is_one_line_naming_the_file(tmp_path, text, message):
    (tmp_path / "study.json").write_text(text)
    with pytest.raises(UserError, match=message):
        StudyRecord.read(tmp_path / "study.json")


def test_an_unknown_key_or_a_bad_setting_names_the_key(tmp_path):
    good = record_of([[T0, None]]).to_json()
    (tmp_path / "study.json").write_text(json.dumps({**good, "num_samples": 3}))
    with pytest.raises(UserError, match="study.json: unknown key 'num_samples'"):
        StudyRecord.read(tmp_path / "study.json")
    (tmp_path / "study.json").write_text(json.dumps({**good, "settings": {**good["settings"], "num_samples": 0}}))
    with pytest.raises(UserError, match="study.json: settings: num_samples is 0, must be >= 1"):
        StudyRecord.read(tmp_path / "study.json")
    with pytest.raises(UserError, match="calibration: missing key 'temperature'"):
        Calibration.from_json({"held_out_images": 1}, "calibration")
