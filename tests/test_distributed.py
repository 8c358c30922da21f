"""Distributed and fault tolerant, for real on one machine: a Ray cluster of a head and two
worker nodes (separate raylets, as `ray start` makes them), a study joining it by address, a
worker node killed mid-study, a trial's process killed, the driver killed with SIGKILL."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, tensorboard_steps
from tests.test_search import assert_epochs_intact, assert_optuna_study_matches_leaderboard, read_leaderboard, run_cli

pytestmark = pytest.mark.slow

SPACE = (
    "metric: val_accuracy\n"
    "fixed: {{epochs: {epochs}, conv_blocks: 1, filters: 8, dense_units: 16, batch_size: 32}}\n"
    "params:\n"
    "  learning_rate: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}\n"
    "search: {{num_samples: {samples}, tpe_startup_trials: 2, grace_period: {epochs}}}\n"
)


@pytest.fixture
def cluster():
    """A head with no CPUs (so trials must go to workers) and two one-CPU worker nodes."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    cluster.shutdown()


def trial_rows(study):
    return {d.name: [json.loads(line) for line in (d / "result.json").read_text().splitlines() if line.strip()]
            for d in study.glob("trial_*") if (d / "result.json").is_file()}


def start_search(space, study_args, *extra):
    """`search` in a session of its own: the local Ray it starts (GCS, raylet, trial workers) shares
    that session id, so the test can end exactly those processes, and no other Ray on the machine."""
    return subprocess.Popen([sys.executable, "-m", "fashion_tune", "search", "--space", str(space), *map(str,
                                                                                                         study_args),
                             *map(str, extra)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def kill_session(leader_pid: int) -> None:
    """SIGKILL every process of the session `leader_pid` began (`ray stop --force` would end every
    Ray on the machine: a developer's, or a benchmark's running beside the tests)."""
    listing = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True, check=True).stdout
    for pid, sid in (line.split() for line in listing.splitlines()):
        if int(sid) == leader_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def wait_for(predicate, timeout=300, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_study_spreads_over_the_worker_nodes(cluster, tmp_path, fashion_dir, write_space):
    cluster, workers = cluster
    space = write_space(SPACE.format(epochs=2, samples=4))
    done = run_cli("search", "--space", space, "--address", cluster.address, "--subset", 1000, "--data-dir",
                   fashion_dir, "--results-dir", tmp_path, "--name", "multi", "--max-concurrent", 2)
    assert done.returncode == 0, done.stderr[-3000:]
    nodes = {row["node_id"] for rows in trial_rows(tmp_path / "multi").values() for row in rows}
    assert nodes == {w.node_id for w in workers}, "trials ran on both workers and never on the CPU-less head"
    rows = read_leaderboard(tmp_path / "multi")
    assert len(rows) == 4 and all(r["nodes"] for r in rows)
    assert "Ray nodes that ran trials: 2" in (tmp_path / "multi" / "summary.md").read_text()


def test_a_killed_worker_node_loses_no_trial(cluster, tmp_path, fashion_dir, write_space):
    cluster, workers = cluster
    space = write_space(SPACE.format(epochs=8, samples=3))  # long enough to be killed mid-way
    study = tmp_path / "killed"
    process = start_search(space, ["--address", cluster.address, "--subset", 6000, "--data-dir", fashion_dir,
                                   "--results-dir", tmp_path, "--name", "killed", "--max-concurrent", 2,
                                   "--max-failures", 3])
    # Once some trial has checkpointed its first epoch, kill the node it runs on, without warning.
    victim = wait_for(lambda: next((rows for rows in trial_rows(study).values() if rows), None), what="a first epoch")
    node = next(w for w in workers if w.node_id == victim[-1]["node_id"])
    cluster.remove_node(node, allow_graceful=False)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    rows = read_leaderboard(study)
    assert len(rows) == 3 and all(r["status"] in ("completed", "stopped early") for r in rows), rows
    history = trial_rows(study)[f"trial_{victim[-1]['trial_id']}"]
    assert [row["node_id"] for row in history][0] == node.node_id
    elsewhere = [row for row in history if row["node_id"] != node.node_id]
    assert elsewhere, "the killed node's trial went on on the other node"
    assert elsewhere[0]["training_iteration"] > 1, "restarted from its checkpoint, not from scratch"
    assert history[-1]["training_iteration"] == 8
    victim_row = next(r for r in rows if r["trial_id"] == victim[-1]["trial_id"])
    assert int(victim_row["failures"]) >= 1 and len(victim_row["nodes"].split()) == 2


def test_a_killed_trial_process_is_retried_from_its_checkpoint(tmp_path, fashion_dir, write_space):
    space = write_space(SPACE.format(epochs=4, samples=2))
    study = tmp_path / "retry"
    process = start_search(space, ["--subset", 3000, "--data-dir", fashion_dir, "--results-dir", tmp_path,
                                   "--name", "retry", "--max-concurrent", 1, "--max-failures", 2])
    victim = wait_for(lambda: next((rows for rows in trial_rows(study).values() if rows), None), what="a first epoch")
    os.kill(victim[-1]["pid"], signal.SIGKILL)  # the trial's worker process dies mid-training
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    rows = read_leaderboard(study)
    assert len(rows) == 2 and all(r["status"] == "completed" for r in rows), rows
    history = trial_rows(study)[f"trial_{victim[-1]['trial_id']}"]
    pids = list(dict.fromkeys(row["pid"] for row in history))
    assert len(pids) == 2, "the trial ran again in a new process"
    resumed = next(row for row in history if row["pid"] == pids[1])
    assert resumed["training_iteration"] > 1 and history[-1]["training_iteration"] == 4


def test_driver_killed_with_sigkill_resumes_without_losing_or_repeating_trials(tmp_path, fashion_dir, write_space):
    space = write_space(SPACE.format(epochs=2, samples=3))
    study = tmp_path / "dead"
    process = start_search(space, ["--subset", 1000, "--data-dir", fashion_dir, "--results-dir", tmp_path,
                                   "--name", "dead", "--max-concurrent", 1])
    wait_for(lambda: sum(len(r) >= 2 for r in trial_rows(study).values()) >= 1, what="a finished trial")
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    kill_session(process.pid)  # what the dead driver's local Ray left behind
    assert json.loads((study / "study.json").read_text())["finished_at"] is None
    done = run_cli("search", "--resume", "dead", "--results-dir", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_leaderboard(study)
    assert len(rows) == 3 and len({r["trial_id"] for r in rows}) == 3, rows
    assert all(r["status"] in ("completed", "stopped early") for r in rows), rows
    # A finished study resumed again says so and changes nothing.
    again = run_cli("search", "--resume", "dead", "--results-dir", tmp_path)
    assert again.returncode == 0 and "already finished" in again.stderr


def test_fractional_gpus_are_requested_and_packed(tmp_path, fashion_dir, write_space):
    """A node that declares one GPU (Ray is told so; this machine has none): four trials at 0.25
    GPU each share it, and TensorFlow's GPU set-up does not break without a real GPU."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 1})
    try:
        space = write_space(SPACE.format(epochs=1, samples=4))
        done = run_cli("search", "--space", space, "--address", cluster.address, "--gpus-per-trial", 0.25,
                       "--cpus-per-trial", 1, "--subset", 500, "--data-dir", fashion_dir, "--results-dir", tmp_path,
                       "--name", "gpu")
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        cluster.shutdown()
    histories = trial_rows(tmp_path / "gpu")
    assert len(histories) == 4
    assert {rows[-1]["gpu_ids"] for rows in histories.values()} == {"0"}, "each trial was given GPU 0"
    # Packed: trials ran on that one GPU at the same time.
    spans = [(rows[-1]["timestamp"] - rows[-1]["time_total_s"], rows[-1]["timestamp"]) for rows in histories.values()]
    most_at_once = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert most_at_once >= 2, spans


def test_a_study_submitted_as_a_ray_job_to_a_token_protected_head(tmp_path, fashion_dir, write_space):
    """cluster/README.md's flow with the pinned Ray: a head started by `ray start --head` (token
    authentication on, as Ray 2.60 starts one; the dashboard on loopback), a smoke study submitted
    with `ray job submit` in token mode with the cluster's token, its results where it was told.
    Without the token the same submission is refused."""
    import secrets
    import shutil
    import tempfile

    ray_cli = str(Path(sys.executable).with_name("ray"))
    token_env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    temp_dir = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    dashboard, gcs_port = f"http://127.0.0.1:{free_port()}", free_port()
    # The job agent's own port too: any other Ray on the machine (a study, another test's) holds the
    # default 52365, and the head's agent then never comes up ("No available agent" until timeout).
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", f"--port={gcs_port}", "--num-cpus=2", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard.rsplit(':', 1)[1]}",
         f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={temp_dir}"],
        cwd=ROOT, env=token_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    space = write_space(SPACE.format(epochs=1, samples=2))
    results = tmp_path / "results"
    entrypoint = ["--", sys.executable, "-m", "fashion_tune", "-q", "search", "--address", "auto", "--space",
                  str(space), "--subset", "1000", "--data-dir", str(fashion_dir), "--results-dir", str(results),
                  "--name", "job"]

    def submit(env):
        # The head's job agent can start after its dashboard answers; Ray's answer then is "try again later".
        deadline = time.time() + 120
        while True:
            done = subprocess.run([ray_cli, "job", "submit", "--address", dashboard, *entrypoint], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=600)
            if "No available agent to submit job" not in done.stdout + done.stderr or time.time() > deadline:
                return done
            time.sleep(2)

    try:
        wait_for(lambda: subprocess.run([ray_cli, "job", "list", "--address", dashboard], env=token_env,
                                        capture_output=True).returncode == 0, timeout=120, what="the head's dashboard")
        no_token = {k: v for k, v in token_env.items() if not k.startswith("RAY_AUTH")}
        refused = submit(no_token)
        assert refused.returncode != 0 and "authentication token" in refused.stdout + refused.stderr
        joined = subprocess.run([sys.executable, "-m", "fashion_tune", "search", "--address", f"127.0.0.1:{gcs_port}",
                                 "--connect-timeout", "5", "--space", str(space), "--data-dir", str(fashion_dir),
                                 "--results-dir", str(results)],
                                cwd=ROOT, env=no_token, capture_output=True, text=True, timeout=120)
        last = joined.stderr.strip().splitlines()[-1]
        assert joined.returncode == 2 and last.startswith(
            f"fashion-tune: error: the Ray cluster at --address 127.0.0.1:{gcs_port} did not let Ray join within 5 s"
        ), last
        assert "export RAY_AUTH_MODE=token" in last
        assert not results.exists()
        done = submit(token_env)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
    study = results / "job"
    assert json.loads((study / "study.json").read_text())["finished_at"]
    assert len(read_leaderboard(study)) == 2


def test_workers_killed_at_random_leave_every_record_exact(cluster, tmp_path, recorded_table):
    """Chaos, as Ray's own Tune fault-tolerance test does it: while a replayed study runs on the
    cluster, a random worker node is killed every few seconds and a fresh one joins. Tune's recovery
    is at-least-once (a trial restarted from its checkpoint reports some epochs again): every
    trial must still end with each epoch once in its records, one Optuna trial per Tune trial with
    each epoch's value once, and no TensorBoard step written twice."""
    import random
    import threading

    cluster, workers = cluster
    space, path = recorded_table
    study = tmp_path / "chaos"
    process = start_search(space, ["--address", cluster.address, "--replay", path, "--replay-time-scale", 100,
                                   "--results-dir", tmp_path, "--name", "chaos", "--max-concurrent", 2,
                                   "--max-failures", 20, "--scheduler", "none"])
    ended = {}
    # The output is read aside; the chaos runs here (Ray adds a node only from the main thread).
    reader = threading.Thread(target=lambda: ended.update(zip(("out", "err"), process.communicate(timeout=600))),
                              daemon=True)
    reader.start()
    rng, killed = random.Random(0), []
    time.sleep(8)  # the first trials started
    while process.poll() is None and len(killed) < 6:
        victim = rng.choice(workers)
        cluster.remove_node(victim, allow_graceful=False)
        workers.remove(victim)
        killed.append(victim.node_id)
        workers.append(cluster.add_node(num_cpus=1))
        time.sleep(rng.uniform(3, 6))
    reader.join(timeout=600)
    err = ended["err"]
    assert process.returncode == 0, err[-3000:]
    assert len(killed) >= 3, killed
    rows = read_leaderboard(study)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"completed"}, rows
    assert sum(int(r["failures"]) for r in rows) >= 1, "some trial was running on a killed node"
    assert_epochs_intact(study)
    assert_optuna_study_matches_leaderboard(study)
    for trial in study.glob("trial_*"):
        steps = tensorboard_steps(trial)
        assert steps["val_accuracy"] == list(range(1, 10)), (trial.name, steps)
        assert all(len(set(s)) == len(s) for s in steps.values()), (trial.name, steps)

