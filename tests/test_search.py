"""Integration: real Ray, real Optuna, real TensorFlow on a real Fashion-MNIST subset, through the CLI."""

import csv
import json
import subprocess
import sys
import time
import urllib.request
from itertools import pairwise
from pathlib import Path

import pytest

from fashion_tune.config import TrainParams
from fashion_tune.hparams import METRICS
from tests.conftest import ROOT, SPACES, free_port

pytestmark = pytest.mark.slow


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "fashion_tune", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, fashion_dir):
    """The smoke study, run once for the module: 6 trials, 3 epochs, 3,000 images."""
    results_dir = tmp_path_factory.mktemp("results")
    done = run_cli("search", "--space", SPACES / "smoke.yaml", "--subset", 3000, "--data-dir", fashion_dir,
                   "--results-dir", results_dir, "--name", "smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (results_dir / "terminal.txt").write_text(done.stdout + done.stderr)  # everything the user saw
    return results_dir, results_dir / "smoke"


def wait_for_json(url, ready, timeout=90):
    """The JSON a local server answers at `url`, once ready(answer) (it may still be starting)."""
    deadline = time.time() + timeout
    while True:
        try:
            found = json.load(urllib.request.urlopen(url, timeout=10))
            if ready(found) or time.time() > deadline:
                return found
        except OSError:
            if time.time() > deadline:
                raise
        time.sleep(0.5)


def read_leaderboard(study):
    with open(study / "leaderboard.csv") as f:
        return list(csv.DictReader(f))


# The Optuna state of each leaderboard status (search/searcher.py).
OPTUNA_STATE = {"completed": "COMPLETE", "stopped early": "PRUNED", "cut by the time budget": "PRUNED",
                "failed": "FAIL", "unfinished": "RUNNING"}


def assert_optuna_study_matches_leaderboard(study):
    """optuna.db, opened as Optuna's own tools open it, tells the trials as the leaderboard does."""
    import optuna

    from fashion_tune.records import StudyRecord

    name = StudyRecord.read(study / "study.json").optuna_name  # a renamed copy keeps its Optuna study's name
    stored = optuna.load_study(study_name=name, storage=f"sqlite:///{study / 'optuna.db'}")
    # A driver killed outright between Optuna's ask and naming the trial leaves one nameless: failed.
    assert all(t.state.name == "FAIL" and not t.intermediate_values for t in stored.trials
               if "trial_id" not in t.user_attrs)
    by_id = {t.user_attrs["trial_id"]: t for t in stored.trials if "trial_id" in t.user_attrs}
    rows = read_leaderboard(study)
    # A trial with no row: proposed but never started before a time budget ended the study (pruned,
    # so marked, no values), or begun after the last snapshot of a driver killed outright (failed, by
    # the resumed searcher; its folder set aside in lost_trials/).
    never_started = set(by_id) - {r["trial_id"] for r in rows}
    assert all(by_id[t].user_attrs.get("cut_by_time_budget") and not by_id[t].intermediate_values
               or by_id[t].state.name == "FAIL" and not (study / f"trial_{t}").exists()
               for t in never_started), never_started
    assert sorted(set(by_id) - never_started) == sorted(r["trial_id"] for r in rows)
    for row in rows:
        trial = by_id[row["trial_id"]]
        assert trial.state.name == OPTUNA_STATE[row["status"]], (row, trial)
        epochs = [json.loads(line) for line in (study / f"trial_{row['trial_id']}" / "result.json").open()]
        assert trial.intermediate_values == {r["training_iteration"]: r["val_accuracy"] for r in epochs}
        if trial.state.name in ("COMPLETE", "PRUNED"):
            # Optuna's value: the last epoch's (none for a trial cut before its first)
            assert trial.value == (epochs[-1]["val_accuracy"] if epochs else None)
            assert int(row["epochs_trained"]) == max(trial.intermediate_values, default=0)


def test_study_writes_every_report(smoke):
    _, study = smoke
    for name in ("study.json", "space.yaml", "leaderboard.csv", "best_config.json", "summary.md"):
        assert (study / name).is_file(), name
    assert json.loads((study / "study.json").read_text())["finished_at"]


def test_the_optuna_study_is_kept_in_sqlite_as_the_leaderboard_tells_it(smoke):
    _, study = smoke
    assert_optuna_study_matches_leaderboard(study)


def test_optuna_dashboard_shows_the_study(smoke):
    """The command summary.md gives, run for real, answering over HTTP on loopback."""
    _, study = smoke
    port = free_port()
    command = (study / "summary.md").read_text().split("`optuna-dashboard ")[1].split("`")[0]
    installed = Path(sys.executable).with_name("optuna-dashboard")  # the script pip installs beside python
    dashboard = subprocess.Popen([installed, command, "--host", "127.0.0.1",
                                  "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.time() + 60, None
        while studies is None and time.time() < deadline:
            try:
                studies = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies"))
            except OSError:
                time.sleep(0.3)
        [summary] = studies["study_summaries"]
        assert summary["study_name"] == "smoke"
        detail = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}?after=0"))
        states = sorted(t["state"] for t in detail["trials"])
        rows = read_leaderboard(study)
        expected = {"completed": "Complete", "stopped early": "Pruned"}
        assert states == sorted(expected[r["status"]] for r in rows)
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def test_the_terminal_tells_the_study_in_our_words(smoke):
    """With default options: no TensorFlow/CUDA/absl start-up lines, none of Ray's notices, no Tune
    boxes or tables pointing into /tmp/ray; our lines for each trial's start, epochs and end."""
    results_dir, study = smoke
    lines = (results_dir / "terminal.txt").read_text().splitlines()
    foreign = [line for line in lines if not line.startswith(("fashion_tune: ", "study written to ", "summary: "))]
    assert foreign == [], foreign
    text = "\n".join(lines)
    for chatter in ("cuInit", "cuda", "absl", "oneDNN", "cpu_feature_guard", "Token authentication", "/tmp/ray",
                    "SearchGenerator", "Tuner.restore"):
        assert chatter not in text, chatter
    assert f"watch it live: tensorboard --logdir {study}" in text
    rows = read_leaderboard(study)
    for r in rows:
        trial = r["trial_id"]
        assert f"trial {trial} started: learning_rate " in text
        epochs = int(r["epochs_trained"])
        assert f"trial {trial} epoch {epochs}/3: val_accuracy " in text
        ending = (f"trial {trial} completed 3 epochs" if r["status"] == "completed"
                  else f"trial {trial} stopped early by ASHA after epoch {epochs} of 3")
        assert ending in text, (ending, text)
    best = max(float(r["best_value"]) for r in rows)
    assert f"best val_accuracy: {best:.4f}\n" in text + "\n"  # "so far" only for a study cut short
    assert "6 of 6 trials ended (0 failed)" in text


def test_leaderboard_has_every_trial_and_asha_stopped_some(smoke):
    _, study = smoke
    rows = read_leaderboard(study)
    trial_dirs = sorted(p.name.removeprefix("trial_") for p in study.glob("trial_*"))
    assert len(rows) == 6 and sorted(r["trial_id"] for r in rows) == trial_dirs
    statuses = [r["status"] for r in rows]
    assert "stopped early" in statuses and "failed" not in statuses
    for r in rows:
        expected = 3 if r["status"] == "completed" else None
        assert expected is None or int(r["epochs_trained"]) == expected
    assert any(int(r["epochs_trained"]) < 3 for r in rows)


def test_training_learned(smoke):
    _, study = smoke
    best = json.loads((study / "best_config.json").read_text())
    rows = read_leaderboard(study)
    assert best["value"] == max(float(r["best_value"]) for r in rows)
    assert best["value"] > 0.6, "ten classes: chance is 0.1; the best trial must clearly learn"
    TrainParams.from_config(best["params"])  # complete and valid: retraining can use it as it is
    assert best["data"]["subset"] == 3000 and best["space"]["sha256"]


def test_the_top_trials_retrain_into_one_flip_averaged_ensemble_that_ships(smoke, tmp_path, fashion_dir):
    """retrain --top 2 --flip-tta: the study's two best trials, trained and averaged as one model that
    evaluate uses as it uses any other."""
    import numpy as np

    from fashion_tune import data
    from fashion_tune.model import load_model

    results_dir, study = smoke
    out = tmp_path / "ensemble"
    done = run_cli("retrain", "--study", "smoke", "--results-dir", results_dir, "--top", 2, "--flip-tta",
                   "--epochs", 2, "--subset", 2000, "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "retrain.json").read_text())
    ranked = [r["trial_id"] for r in read_leaderboard(study)]
    assert [m["trial_id"] for m in record["members"]] == ranked[:2]
    assert record["averaging"] == {"flip_tta": True, "members": 2,
                                   "what": "averages an ensemble of 2 models over each image and its mirror image"}
    assert all((out / f"member{i}" / "history.csv").is_file() for i in (1, 2))
    model = load_model(out / "model.keras")
    assert [layer.name for layer in model.layers] == ["image", "mirror", "member1", "member2", "probabilities"]
    x = data.to_model_input(data.load(str(fashion_dir)).test_images[:50])
    assert np.allclose(model.predict(x, verbose=0), model.predict(x[:, :, ::-1], verbose=0), atol=1e-6)
    # evaluate (as export, predict and serve) loads it as any model; its SavedModel: test_averaging.py
    done = run_cli("evaluate", "--model", out / "model.keras", "--data-dir", fashion_dir, "--robustness-images", 0)
    # learnt (chance: 0.1)
    assert done.returncode == 0 and json.loads((out / "evaluation" / "metrics.json").read_text())["accuracy"] > 0.4


def test_tensorboard_events_hold_each_trials_curves_and_hparams(smoke):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, study = smoke
    rows = {r["trial_id"]: r for r in read_leaderboard(study)}
    for trial_dir in study.glob("trial_*"):
        events = EventAccumulator(str(trial_dir), size_guidance={"scalars": 0})
        events.Reload()
        tags = events.Tags()["scalars"]
        # Our curves only, under our own names, none of Tune's bookkeeping (done, time_since_restore, ...).
        assert set(tags) == set(METRICS), tags
        epochs = int(rows[trial_dir.name.removeprefix("trial_")]["epochs_trained"])
        assert [e.step for e in events.Scalars("val_accuracy")] == list(range(1, epochs + 1))
        # The HParams tab: each trial's session names its hyperparameters, and only the study has an experiment.
        hparams_tags = events.PluginTagToContent("hparams")
        session = hparams_tags["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(session).session_start_info.hparams
        assert {"learning_rate", "conv_blocks", "filters", "batch_norm", "optimizer"} <= set(hparams)
        assert "_hparams_/experiment" not in hparams_tags
        # ... and how far it got, so stopped trials are not read as equals of completed ones.
        assert hparams["epochs_trained"].number_value == epochs
        assert hparams["ran_full_budget"].bool_value == (epochs == 3)
    # The one experiment, in the study folder (TensorBoard's logdir): every searched hyperparameter
    # with its range, the five to show first marked as differing (TensorBoard ticks those), and our metrics.
    root = EventAccumulator(str(study))
    root.Reload()
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        root.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    infos = {info.name: info for info in experiment.hparam_infos}
    assert set(infos) == {"learning_rate", "conv_blocks", "filters", "batch_norm", "optimizer", "epochs_trained",
                          "ran_full_budget"}
    assert {n for n, info in infos.items() if info.differs} == {"learning_rate", "conv_blocks", "filters", "batch_norm",
                                                                 "optimizer"}
    assert (infos["epochs_trained"].domain_interval.min_value,
            infos["epochs_trained"].domain_interval.max_value) == (1, 3)
    assert (infos["learning_rate"].domain_interval.min_value,
            infos["learning_rate"].domain_interval.max_value) == (1e-4, 1e-2)
    assert [v.number_value for v in infos["filters"].domain_discrete.values] == [8, 16]
    assert {m.name.tag for m in experiment.metric_infos} == set(METRICS)


def test_tensorboard_shows_our_metrics_under_our_names(smoke):
    """The command the study prints, run for real: TensorBoard's own HTTP API lists each trial's
    scalars by our names, with no card group of Tune's, and the HParams metrics by the same names."""
    _, study = smoke
    port = free_port()
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(study), "--port", str(port),
                              "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/data/plugin"
        tags = wait_for_json(f"{base}/scalars/tags", lambda found: len(found) == len(list(study.glob("trial_*"))))
        assert all(set(run_tags) == set(METRICS) for run_tags in tags.values()), tags
        request = urllib.request.Request(f"{base}/hparams/experiment", data=json.dumps({"experimentName": ""}).encode(),
                                         headers={"Content-Type": "application/json"})
        experiment = json.load(urllib.request.urlopen(request, timeout=30))
        assert {m["name"]["tag"] for m in experiment["metricInfos"]} == set(METRICS)
    finally:
        board.terminate()
        board.wait(timeout=30)


def test_summary_tells_the_study(smoke):
    _, study = smoke
    summary = (study / "summary.md").read_text()
    assert "# Study `smoke`" in summary and "search_spaces/smoke.yaml" in summary
    assert "Trials: 6 — " in summary and "stopped early by ASHA" in summary
    assert "python -m fashion_tune search --space" in summary and "--subset 3000" in summary
    assert "Trial-epochs trained:" in summary and "Wall time:" in summary
    best = json.loads((study / "best_config.json").read_text())["value"]
    progress_table = summary.split("## Best val_accuracy as the search went on")[1].split("##")[0]
    assert progress_table.strip().splitlines()[-1].split(" | ")[2] == f"{best:.4f}"
    # What mattered: too few full-budget trials for importances, said; Optuna's plots, linked.
    completed = sum(r["status"] == "completed" for r in read_leaderboard(study))
    assert (f"No importances: only {completed} of 6 trials ran their full budget; importances need at least 10."
            in summary)
    for png in ("optimization_history", "intermediate_values", "parallel_coordinate", "slice"):
        assert f"(insights/{png}.png)" in summary and (study / "insights" / f"{png}.png").is_file()


def test_search_progress_follows_every_reported_epoch(smoke):
    from fashion_tune.layout import StudyDir
    from fashion_tune.records import StudyRecord
    from fashion_tune.results import search_progress

    _, study = smoke
    record = StudyRecord.read(study / "study.json")
    assert len(record.runs) == 1 and record.runs[0][1] - record.runs[0][0] == pytest.approx(record.wall_s)
    progress = search_progress(StudyDir(study), "val_accuracy", "max", record)
    rows = read_leaderboard(study)
    assert [p.trial_epochs for p in progress] == list(range(1, sum(int(r["epochs_trained"]) for r in rows) + 1))
    bests = [p.best for p in progress]
    assert bests == sorted(bests) and bests[-1] == max(float(r["best_value"]) for r in rows)
    assert all(0 <= a.minutes <= b.minutes for a, b in pairwise(progress))


def test_existing_study_is_not_overwritten(smoke):
    results_dir, study = smoke
    before = (study / "leaderboard.csv").stat().st_mtime_ns
    done = run_cli("search", "--space", SPACES / "smoke.yaml", "--results-dir", results_dir, "--name", "smoke")
    assert done.returncode == 2
    assert "study 'smoke' already exists" in done.stderr and "--resume smoke" in done.stderr
    assert (study / "leaderboard.csv").stat().st_mtime_ns == before


def test_resuming_a_finished_study_changes_nothing(smoke):
    results_dir, study = smoke
    before = {p: p.stat().st_mtime_ns for p in study.rglob("*")}
    done = run_cli("search", "--resume", "smoke", "--results-dir", results_dir)
    assert done.returncode == 0
    assert "already finished" in done.stderr
    assert {p: p.stat().st_mtime_ns for p in study.rglob("*")} == before


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, fashion_dir, write_space):
    # SGD at a learning rate of 1e20 drives the loss to NaN in the first epoch.
    space = write_space(
        "metric: val_accuracy\n"
        "fixed: {epochs: 2, optimizer: sgd, batch_norm: false, conv_blocks: 1, filters: 8, dense_units: 16}\n"
        "params:\n"
        "  learning_rate: {type: categorical, choices: [1.0e+20, 1.0e-2]}\n"
        "search: {num_samples: 4, max_concurrent: 2, tpe_startup_trials: 4}\n"
    )
    done = run_cli("search", "--space", space, "--subset", 1000, "--data-dir", fashion_dir,
                   "--results-dir", tmp_path / "r", "--name", "nan")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_leaderboard(tmp_path / "r" / "nan")
    assert len(rows) == 4
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and len(failed) < 4, rows
    assert all(float(r["learning_rate"]) == 1e20 for r in failed)
    assert all("training loss is nan after epoch 1" in r["error"] for r in failed)
    summary = (tmp_path / "r" / "nan" / "summary.md").read_text()
    assert f"{len(failed)} failed" in summary and "## Failed trials" in summary
    assert_optuna_study_matches_leaderboard(tmp_path / "r" / "nan")


def without_concurrency_limit(write_space):
    """smoke.yaml without its max_concurrent, which a pausing scheduler refuses (a paused trial holds its slot)."""
    return write_space((SPACES / "smoke.yaml").read_text().replace("  max_concurrent: 2\n", ""))


def assert_epochs_intact(study):
    """Every trial's epochs as Tune counted them and as Keras did (from its checkpoint) agree: none
    repeated, none restarted from scratch, whatever pausing and resuming happened."""
    for row in read_leaderboard(study):
        epochs = [json.loads(line) for line in (study / f"trial_{row['trial_id']}" / "result.json").open()]
        assert [r["training_iteration"] for r in epochs] == list(range(1, int(row["epochs_trained"]) + 1))
        assert all(r["epoch"] == r["training_iteration"] for r in epochs), epochs


# HyperBand's pausing and promotion, the same driver logic, is run on recorded curves in test_replay.py.
@pytest.mark.parametrize("scheduler, name", [("halving", "successive halving")])
def test_pausing_schedulers_run_the_smoke_space_end_to_end(tmp_path, fashion_dir, write_space, scheduler, name):
    """Successive halving pauses a trial at a rung until its bracket's peers arrive; a promoted
    trial goes on from its Keras checkpoint, in a new or reused process, its epoch count intact."""
    done = run_cli("search", "--space", without_concurrency_limit(write_space), "--subset", 1000, "--data-dir",
                   fashion_dir, "--results-dir", tmp_path, "--name", "hb", "--scheduler", scheduler)
    assert done.returncode == 0, done.stderr[-3000:]
    study = tmp_path / "hb"
    rows = read_leaderboard(study)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"completed", "stopped early"}, rows
    # Whether a promoted trial was paused first depends on arrival order (the last to reach a rung goes on).
    assert f"stopped early by {name} after epoch" in done.stderr, done.stderr[-3000:]
    assert "6 of 6 trials ended (0 failed)" in done.stderr
    assert_epochs_intact(study)
    assert_optuna_study_matches_leaderboard(study)


def test_without_early_stopping_a_reused_trial_process_trains_exactly_as_a_new_one(tmp_path, fashion_dir,
                                                                                     write_space):
    """Random search with no scheduler (the baseline a search-efficiency comparison needs) trains every
    trial its full budget; Tune hands a finished trial's process to the next (reuse_actors), and the
    same configuration and seed give the same curve in a reused process as in the new one before it."""
    space = write_space(
        "metric: val_accuracy\n"
        "fixed: {epochs: 2, conv_blocks: 1, filters: 8, dense_units: 16}\n"
        "params:\n"
        "  learning_rate: {type: categorical, choices: [0.003]}\n"
        "search: {num_samples: 3, max_concurrent: 1}\n"
    )
    done = run_cli("search", "--space", space, "--subset", 1000, "--data-dir", fashion_dir, "--results-dir", tmp_path,
                   "--name", "same", "--searcher", "random", "--scheduler", "none")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_leaderboard(tmp_path / "same")
    assert len(rows) == 3 and all(r["status"] == "completed" and r["epochs_trained"] == "2" for r in rows), rows
    command = json.loads((tmp_path / "same" / "study.json").read_text())["command"]
    assert "--searcher random --scheduler none" in command
    trials = [[json.loads(line) for line in f.open()] for f in sorted((tmp_path / "same").glob("trial_*/result.json"))]
    trials.sort(key=lambda rows: rows[0]["timestamp"])
    pids = [rows[0]["pid"] for rows in trials]
    assert len(set(pids)) < len(pids), f"no process was reused: {pids}"
    first = [r["val_accuracy"] for r in trials[0]]
    for rows in trials[1:]:
        assert [r["val_accuracy"] for r in rows] == pytest.approx(first, abs=1e-6)
        assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in trials[0]], rel=1e-5)
