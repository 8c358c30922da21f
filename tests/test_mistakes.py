"""Nothing a user does loses or corrupts a study (issue 34): every command pointed at the wrong place
(a file, a read-only folder, the study itself, the results folder) refuses in one line, exits
non-zero, and leaves every file of the study as it was; the other mistakes found by trying the
commands as a new user would, each on real files."""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fashion_tune import layout
from fashion_tune.cli import main
from fashion_tune.records import SpaceRef, StudyRecord
from tests.conftest import constant_model
from tests.test_cli import one_error_line
from tests.test_records import record_of
from tests.test_results import SPACE, write_trial


def fingerprint(folder: Path) -> dict:
    """Every file under `folder`, by its path, with its bytes' sha256."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def results(tmp_path) -> Path:
    """A results folder with a finished study `unit` (trials, reports, a retrained model with its
    record, an evaluation) and an earlier export, as the commands leave them."""
    from fashion_tune import results as reports
    from fashion_tune.space import load_space

    results = tmp_path / "results"
    study = layout.StudyDir(results / "unit")
    study.path.mkdir(parents=True)
    study.space_copy.write_text(SPACE.format(metric="val_accuracy", mode="max"))
    space = SpaceRef("space.yaml", load_space(study.space_copy).sha256, "val_accuracy", "max")
    record_of([[1.8e9, 1.8e9 + 60]], finished_at=1.8e9 + 60, space=space).sealed_now().write(study.record)
    write_trial(study, "full", {"learning_rate": 1e-3, "filters": 32}, [(0.70, 0.9), (0.80, 0.6), (0.85, 0.5)])
    reports.write_reports(study)
    retrained = study.retrained
    retrained.path.mkdir()
    constant_model(np.full(10, 0.1)).save(retrained.model)
    export = results / "shipped"
    export.mkdir()
    (export / "model.keras").write_bytes(retrained.model.read_bytes())
    (export / "model_card.json").write_text("{}")
    return results


@pytest.fixture
def read_only(tmp_path):
    """read_only(folder) -> the same folder, seen read-only: a real read-only bind mount (root: file
    permissions do not stop root), else a copy without write permission."""
    mounted = []

    def make(folder: Path) -> Path:
        view = tmp_path / f"read-only-{folder.name}"
        if os.geteuid() != 0:
            shutil.copytree(folder, view)
            for path in [view, *view.rglob("*")]:
                path.chmod(path.stat().st_mode & ~0o222)
            return view
        view.mkdir()
        done = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True, text=True)
        if done.returncode == 0:
            mounted.append(view)
            done = subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"a read-only folder needs a bind mount here: {done.stderr.strip()}")
        return view

    yield make
    for view in mounted:
        subprocess.run(["umount", str(view)], check=False)


# Each command with a folder it writes to (OUT) or reads a study from (RESULTS).
WITH_OUT = {
    "retrain": ["retrain", "--study", "unit", "--results-dir", "RESULTS", "--out", "OUT"],
    "evaluate": ["evaluate", "--study", "unit", "--results-dir", "RESULTS", "--out", "OUT"],
    "export": ["export", "--study", "unit", "--results-dir", "RESULTS", "--out", "OUT"],
    "export --force": ["export", "--study", "unit", "--results-dir", "RESULTS", "--out", "OUT", "--force"],
    "lr-find": ["lr-find", "--study", "unit", "--results-dir", "RESULTS", "--out", "OUT"],
    "baselines": ["baselines", "--only", "mlp", "--results-dir", "RESULTS", "--out", "OUT"],
    "predict --show": ["predict", "PHOTO", "--model", "RESULTS/shipped", "--show", "OUT"],
}
WITH_RESULTS = {
    "report": ["report", "--study", "unit", "--results-dir", "RESULTS"],
    "retrain": ["retrain", "--study", "unit", "--results-dir", "RESULTS"],
    "evaluate": ["evaluate", "--study", "unit", "--results-dir", "RESULTS"],
    "export": ["export", "--study", "unit", "--results-dir", "RESULTS", "--out", "SPARE"],
    "lr-find": ["lr-find", "--study", "unit", "--results-dir", "RESULTS"],
    "baselines": ["baselines", "--only", "mlp", "--results-dir", "RESULTS"],
    "search": ["search", "--space", "smoke", "--name", "new", "--results-dir", "RESULTS"],
    "search --resume": ["search", "--resume", "unit", "--results-dir", "RESULTS"],
}


def unfinish(results: Path) -> None:
    """The study at results/unit as if interrupted: what --resume would continue."""
    study = layout.StudyDir(results / "unit")
    dataclasses.replace(StudyRecord.read(study.record), finished_at=None).write(study.record)


def run(args: list[str], capsys, **where) -> tuple[int, str]:
    code = main([str(where[a]) if isinstance(a, str) and a in where else str(a) for a in args])
    return code, one_error_line(capsys)


@pytest.mark.parametrize("command", sorted(WITH_OUT))
@pytest.mark.parametrize("target", ["a file", "under a file", "a read-only folder", "the study", "the results folder",
                                    "empty"])
def test_no_command_writes_into_the_wrong_place(results, read_only, tmp_path, capsys, command, target):
    before = fingerprint(results)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    out = {"a file": a_file, "under a file": a_file / "sub", "a read-only folder": read_only(results) / "unit",
           "the study": results / "unit", "the results folder": results, "empty": ""}[target]
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"")
    code, line = run(WITH_OUT[command], capsys, RESULTS=results, OUT=out, PHOTO=photo)
    assert code == 2, line
    assert a_file.read_text() == "mine\n" and fingerprint(results) == before


@pytest.mark.parametrize("command", sorted(WITH_RESULTS))
@pytest.mark.parametrize("target", ["a file", "a read-only folder", "the study"])
def test_no_command_writes_into_a_results_folder_it_cannot_use(results, read_only, tmp_path, capsys, command,
                                                               target):
    if command == "search --resume":
        unfinish(results)  # a finished study is left as it is, wherever it is: nothing to refuse
    before = fingerprint(results)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    where = {"a file": a_file, "a read-only folder": read_only(results), "the study": results / "unit"}[target]
    code, line = run(WITH_RESULTS[command], capsys, RESULTS=where, SPARE=tmp_path / "spare")
    assert code == 2, line
    assert a_file.read_text() == "mine\n" and fingerprint(results) == before


def test_export_force_replaces_an_earlier_export_and_only_that(results, capsys, monkeypatch):
    """--force once deleted whatever --out named: a study, the results folder, the folder the user
    stood in (issue 34, 1)."""
    monkeypatch.chdir(results / "unit")
    before = fingerprint(results)
    code, line = run(["export", "--study", "unit", "--results-dir", results, "--out", "..", "--force"], capsys)
    assert code == 2 and "holds studies" in line and fingerprint(results) == before
    code, line = run(["export", "--study", "unit", "--results-dir", results, "--out", "retrain", "--force"], capsys)
    assert code == 2 and "holds" in line and fingerprint(results) == before
    monkeypatch.chdir(results.parent)
    assert main(["-q", "export", "--study", "unit", "--results-dir", str(results), "--out", str(results / "shipped"),
                 "--force"]) == 0
    card = json.loads((results / "shipped" / "model_card.json").read_text())  # the earlier export, replaced
    assert card["source_model"] == str(results / "unit" / "retrain" / "model.keras")


def test_export_refuses_an_evaluation_of_an_earlier_model(results, capsys):
    """Retrained after its evaluation, a model once shipped with the old model's accuracy and review
    threshold (issue 34, 3)."""
    study = layout.StudyDir(results / "unit")
    metrics = study.retrained.evaluation.metrics
    metrics.parent.mkdir()
    metrics.write_text(json.dumps({"accuracy": 0.65, "model_sha256": "0" * 64}))
    before = fingerprint(results)
    code, line = run(["export", "--study", "unit", "--results-dir", results, "--out", results / "new"], capsys)
    assert code == 2 and "scores an earlier model" in line and "evaluate it again" in line
    assert fingerprint(results) == before and not (results / "new").exists()


def test_a_hand_edited_space_copy_or_record_is_refused_by_report_and_resume(results, capsys):
    """An edited space.yaml was used by --resume and re-ranked by report; an edited num_samples made
    every --resume stop at once (issue 34, 6 and 12)."""
    study = layout.StudyDir(results / "unit")
    unfinish(results)
    original = study.space_copy.read_text()
    study.space_copy.write_text(original.replace("high: 1.0e-2", "high: 1.0e-1"))
    for command in (["report", "--study", "unit"], ["search", "--resume", "unit"]):
        code, line = run([*command, "--results-dir", results], capsys)
        assert code == 2 and "space.yaml: changed since the study started" in line
    study.space_copy.write_text(original)
    record = json.loads(study.record.read_text())
    record["settings"]["num_samples"] = 40
    study.record.write_text(json.dumps(record))
    code, line = run(["report", "--study", "unit", "--results-dir", results], capsys)
    assert code == 2 and "study.json: its settings, data or space were edited" in line


@pytest.mark.parametrize("args, message", [
    (["--scheduler", "hyperband", "--grace-period", "2"], "--grace-period does nothing with --scheduler hyperband"),
    (["--scheduler", "none", "--reduction-factor", "2"], "--reduction-factor does nothing with --scheduler none"),
    (["--scheduler", "halving"], "search.max_concurrent is 2, but --scheduler halving pauses trials"),
])
def test_scheduler_options_that_would_do_nothing_are_refused(tmp_path, capsys, args, message):
    code, line = run(["search", "--space", "smoke", "--results-dir", tmp_path / "r", *args], capsys)
    assert code == 2 and message in line and not (tmp_path / "r").exists()


def test_no_limit_on_trials_at_once_can_be_asked_for_over_a_space_file(tmp_path, capsys):
    """smoke.yaml sets max_concurrent, and nothing could unset it for a pausing scheduler (issue 34, 13)."""
    from fashion_tune.config import SearchSettings
    from fashion_tune.search.checks import check_settings
    from fashion_tune.space import load_space

    space = load_space("smoke")
    settings = SearchSettings.layered(space.search_defaults, {"max_concurrent": 0, "scheduler": "halving"})
    check_settings(settings, space, {"max_concurrent": 0, "scheduler": "halving"})  # no error


def test_a_retrain_rule_the_study_cannot_meet_is_refused_before_it_runs(tmp_path, write_space, capsys):
    space = write_space((Path(__file__).parents[1] / "search_spaces" / "smoke.yaml").read_text()
                        + "retrain:\n  top: 50\n")
    code, line = run(["search", "--space", space, "--num-samples", "2", "--results-dir", tmp_path / "r"], capsys)
    assert code == 2 and "retrain.top is 50, more than the 2 trials the study runs (--num-samples)" in line


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--study", "unit", "--robustness-images", "20000"], "--robustness-images: 20000 must be 0 to 10000"),
    (["baselines", "--only", "mlp", "mlp"], "--only: mlp is given twice"),
])
def test_numbers_are_not_silently_cut_nor_work_repeated(results, capsys, args, message):
    code, line = run([*args, "--results-dir", results], capsys)
    assert code == 2 and message in line


def test_resume_needs_what_it_resumes_from(results, capsys):
    """A study whose optuna.db or Tune state is gone: one line, before Ray starts, not a traceback and
    a hang (issue 34, 4), and nothing written."""
    study = layout.StudyDir(results / "unit")
    unfinish(results)
    study.tuner_state.write_bytes(b"pickled")
    (study.path / "experiment_state-2026.json").write_text("{}")
    (study.path / "searcher-state-2026.pkl").write_bytes(b"pickled")
    before = fingerprint(results)
    code, line = run(["search", "--resume", "unit", "--results-dir", results], capsys)
    assert code == 2 and "optuna.db is missing" in line and fingerprint(results) == before
    import optuna

    optuna.storages.RDBStorage(f"sqlite:///{study.optuna_db}")  # Optuna's tables, but not this study
    before = fingerprint(results)
    code, line = run(["search", "--resume", "unit", "--results-dir", results], capsys)
    assert code == 2 and "optuna.db does not hold the Optuna study 'unit'" in line and fingerprint(results) == before
    study.optuna_db.unlink()
    (study.path / "experiment_state-2026.json").unlink()
    before = fingerprint(results)
    code, line = run(["search", "--resume", "unit", "--results-dir", results], capsys)
    assert code == 2 and "has lost Tune's state (experiment_state-*.json)" in line
    assert fingerprint(results) == before


def test_a_truncated_study_record_or_model_card_is_one_line(results, tmp_path, capsys):
    """A study.json cut short (report, resume) and a damaged model_card.json (predict) once gave
    tracebacks (issue 34)."""
    study = layout.StudyDir(results / "unit")
    study.record.write_text(study.record.read_text()[:40])
    for command in (["report", "--study", "unit"], ["search", "--resume", "unit"]):
        code, line = run([*command, "--results-dir", results], capsys)
        assert code == 2 and "study.json: not valid JSON" in line
    (results / "shipped" / "model_card.json").write_text('{"name": "half')
    photo = tmp_path / "photo.png"
    from PIL import Image

    image = Image.new("RGB", (160, 120), (245, 245, 240))
    image.paste((40, 30, 20), (50, 20, 110, 100))
    image.save(photo)
    code, line = run(["predict", photo, "--model", results / "shipped"], capsys)
    assert code == 2 and "model_card.json: not valid JSON" in line


def test_lr_find_suggests_a_rate_inside_what_it_swept():
    """The default sweep once suggested its own first step, and a range below what it swept (issue 34):
    the first tenth of a sweep, where the loss falls at any rate, is left out."""
    from fashion_tune.lr_find import steepest_fall

    rates = np.geomspace(1e-4, 1e-1, 100)
    losses = np.concatenate([np.linspace(2.3, 2.0, 10), 2.0 - 1.5 / (1 + np.exp(-(np.arange(90) - 50) / 5))])
    losses[80:] += np.linspace(0, 3, 20)  # diverges at the end
    steepest, lowest = steepest_fall(rates, losses)
    assert 10 <= steepest < lowest and abs(steepest - 60) <= 3  # where the sigmoid falls fastest, not step 0
