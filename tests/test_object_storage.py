"""Studies kept in object storage (--results-dir s3://bucket/prefix), against a local S3-compatible
server on loopback (tests/s3_server.py: moto's server mode, real HTTP, pyarrow's S3 client as Tune
uses it): a study run, interrupted and resumed from the bucket alone, retrained, evaluated and
exported from it, and a store that goes away mid-study."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from tests.conftest import interrupted_search, reported_epochs
from tests.s3_server import S3Server, files_under
from tests.test_search import (
    assert_epochs_intact,
    assert_optuna_study_matches_leaderboard,
    read_leaderboard,
    run_cli,
)

BUCKET = "studies"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The S3 server, a bucket, and this process's (and its commands') environment pointed at them;
    working copies of the bucket's studies in a folder of the test's own."""
    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log")
    server.make_bucket(BUCKET)
    cache = tmp_path_factory.mktemp("cache")
    env = {**server.env, "FASHION_TUNE_CACHE": str(cache)}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield server, cache
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def forget_working_copies(cache) -> None:
    """As on a fresh machine: no working copy of any study here, only the bucket."""
    shutil.rmtree(cache)
    cache.mkdir()


def working_copy(cache, prefix: str, name: str):
    return cache / "s3" / BUCKET / prefix / name


def assert_one_checkpoint_each_in(uri: str) -> None:
    files = files_under(uri)
    trials = {f.split("/")[0] for f in files if f.startswith("trial_")}
    for trial in trials:
        kept = {f.split("/")[1] for f in files if f.startswith(f"{trial}/checkpoint_")}
        assert len(kept) == 1, (trial, kept)


def test_a_study_in_a_bucket_is_interrupted_and_resumed_from_the_bucket_alone(s3, recorded_table):
    server, cache = s3
    space, path = recorded_table
    uri = f"s3://{BUCKET}/resumed"
    study = working_copy(cache, "resumed", "tiny")
    interrupted_search(["--space", space, "--replay", path, "--replay-time-scale", "10", "--results-dir", uri,
                        "--name", "tiny"], until=lambda: reported_epochs(study) >= 20)
    stored = files_under(f"{uri}/tiny")
    for name in ("study.json", "space.yaml", "optuna.db", "leaderboard.csv", "tuner.pkl"):
        assert name in stored, stored
    assert any(f.endswith("/result.json") for f in stored) and any("/checkpoint_" in f for f in stored)

    forget_working_copies(cache)
    done = run_cli("search", "--resume", "tiny", "--results-dir", uri)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"study written to {uri}/tiny" in done.stdout

    forget_working_copies(cache)  # report reads the bucket alone, as on another machine
    done = run_cli("report", "--study", "tiny", "--results-dir", uri)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_leaderboard(study)
    assert len(rows) == 12 and {r["status"] for r in rows} <= {"completed", "stopped early"}, rows
    assert json.loads((study / "study.json").read_text())["finished_at"]
    assert_epochs_intact(study)
    assert_optuna_study_matches_leaderboard(study)
    assert_one_checkpoint_each_in(f"{uri}/tiny")


def test_a_store_that_goes_away_mid_study_stops_it_in_one_line_and_it_resumes(s3, recorded_table):
    """The S3 endpoint refuses connections mid-study: the search ends in seconds with one line that
    says how to go on; once the endpoint is back, --resume finishes the study with every epoch once."""
    server, cache = s3
    space, path = recorded_table
    uri = f"s3://{BUCKET}/outage"
    study = working_copy(cache, "outage", "cut")
    import sys

    from tests.conftest import popen_hearing_ctrl_c

    process = popen_hearing_ctrl_c([sys.executable, "-m", "fashion_tune", "search", "--space", str(space),
                                    "--replay", str(path), "--replay-time-scale", "10", "--results-dir", uri,
                                    "--name", "cut"])
    deadline = time.time() + 120
    while reported_epochs(study) < 20 and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    server.relay.stop()
    began = time.time()
    try:
        _, err = process.communicate(timeout=120)
        took = time.time() - began
    finally:
        server.relay.start()
    assert process.returncode == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"fashion-tune: error: the study's bucket {uri} could not be reached"), err[-3000:]
    assert "--resume cut --results-dir s3://studies/outage" in last
    assert "Traceback" not in err and "Stack" not in err, err[-3000:]
    assert took < 60, took

    done = run_cli("search", "--resume", "cut", "--results-dir", uri)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_leaderboard(study)
    assert len(rows) == 12, rows
    assert_epochs_intact(study)
    assert_optuna_study_matches_leaderboard(study)


def test_a_bucket_that_cannot_be_used_is_said_at_once(s3, recorded_table, tmp_path):
    space, path = recorded_table
    began = time.time()
    done = run_cli("search", "--space", space, "--replay", path, "--results-dir", "s3://no-such-bucket/x")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().startswith("fashion-tune: error: --results-dir s3://no-such-bucket/x"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = run_cli("search", "--resume", "nothing", "--results-dir", f"s3://{BUCKET}/empty")
    assert done.returncode == 2 and f"no study at s3://{BUCKET}/empty/nothing" in done.stderr, done.stderr
    assert time.time() - began < 60


@pytest.mark.slow
def test_retrain_evaluate_and_export_a_study_from_the_bucket_alone(s3, recorded_table, fashion_dir, tmp_path):
    """Each step on another machine, as it were: the working copies forgotten before each; what a step
    writes in the study (retrain/, evaluation/) is in the bucket after it."""
    server, cache = s3
    space, path = recorded_table
    uri = f"s3://{BUCKET}/steps"
    done = run_cli("search", "--space", space, "--replay", path, "--results-dir", uri, "--name", "tiny")
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [("retrain", "--epochs", 1, "--subset", 2000, "--data-dir", fashion_dir),
             ("evaluate", "--robustness-images", 0, "--data-dir", fashion_dir),
             ("export", "--out", tmp_path / "export")]
    for command, *flags in steps:
        forget_working_copies(cache)
        done = run_cli(command, "--study", "tiny", "--results-dir", uri, *flags)
        assert done.returncode == 0, (command, done.stderr[-3000:])
    stored = files_under(f"{uri}/tiny")
    assert "retrain/model.keras" in stored and "retrain/retrain.json" in stored, stored
    assert "evaluation/metrics.json" in stored and "evaluation/report.md" in stored, stored
    assert (tmp_path / "export" / "model.keras").is_file()
    card = json.loads((tmp_path / "export" / "model_card.json").read_text())
    assert card["test_metrics"]["accuracy"] > 0.1, card
