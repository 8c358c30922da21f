"""Ray's autoscaler, exercised with cluster/config.yaml's node types: Ray's fake multi-node provider
(what Ray's own autoscaler tests use) starts and removes "nodes" (raylets on this machine) as a
real provider would start and end instances. A CPU study makes it start cpu_workers, and a
gpu_worker only once the cpu_workers are at their max_workers (Ray's rule: GPU nodes are avoided for
CPU-only demand, not forbidden); a --gpus-per-trial study starts gpu_workers (declared GPUs) alone;
idle workers go away; the studies' results are whole. Replayed trials (recorded curves): the driver's
resource requests are what is tested, not training."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, free_port
from tests.test_distributed import kill_session, wait_for
from tests.test_search import read_leaderboard, run_cli

pytestmark = pytest.mark.slow

CLUSTER_CONFIG = ROOT / "cluster" / "config.yaml"
# config.yaml's worker types with resources scaled down to this machine: a cpu_worker (c6i.4xlarge,
# 16 vCPUs) holds 2 one-CPU trials here; a gpu_worker (g5.xlarge: 1 GPU, 4 vCPUs) 1 GPU, 2 CPUs.
SCALED_RESOURCES = {"cpu_worker": {"CPU": 2}, "gpu_worker": {"CPU": 2, "GPU": 1}}
MAX_WORKERS = {"cpu_worker": 2, "gpu_worker": 1}


def fake_cluster_config(gcs_address: str) -> dict:
    """An autoscaling config for Ray's fake multi-node provider, its node types config.yaml's."""
    cloud = yaml.safe_load(CLUSTER_CONFIG.read_text())
    types = {name: {"resources": {**SCALED_RESOURCES[name], "object_store_memory": 200 * 1024 ** 2},
                    "node_config": {}, "min_workers": node["min_workers"], "max_workers": MAX_WORKERS[name]}
             for name, node in cloud["available_node_types"].items() if name != cloud["head_node_type"]}
    head = cloud["available_node_types"][cloud["head_node_type"]]
    types["ray.head.default"] = {"resources": head["resources"], "node_config": {}, "max_workers": 0}
    return {"cluster_name": "fake-fashion-tune", "max_workers": sum(MAX_WORKERS.values()),
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True, "gcs_address": gcs_address},
            "available_node_types": types, "head_node_type": "ray.head.default", "auth": {},
            "upscaling_speed": 1.0, "idle_timeout_minutes": 0.1, "docker": {}, "initialization_commands": [],
            "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
            "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts": {},
            "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [],
            "rsync_filter": []}


def test_the_test_node_types_are_config_yamls():
    cloud = yaml.safe_load(CLUSTER_CONFIG.read_text())
    workers = {name for name in cloud["available_node_types"] if name != cloud["head_node_type"]}
    assert workers == set(SCALED_RESOURCES) == set(MAX_WORKERS)
    assert cloud["available_node_types"][cloud["head_node_type"]]["resources"] == {"CPU": 0}  # no trials there
    assert all(cloud["available_node_types"][name]["min_workers"] == 0 for name in workers)  # none when idle


@pytest.fixture
def autoscaling_cluster(tmp_path):
    """A head with no CPUs and the autoscaler running config.yaml's node types on the fake provider;
    -> (address, environment for commands that join it)."""
    from ray._private.services import get_node_ip_address

    address = f"{get_node_ip_address()}:{free_port()}"  # where the fake provider's nodes look for the head
    config = tmp_path / "autoscaling.json"
    config.write_text(json.dumps(fake_cluster_config(address)))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    temp_dir = tempfile.mkdtemp(prefix="rayauto", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={address.split(':')[1]}",
         "--num-cpus=0", f"--autoscaling-config={config}", "--include-dashboard=false",
         f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={temp_dir}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: alive_nodes(address, env) is not None, timeout=120, what="the head")
        yield address, env
    finally:
        # At once, the fake provider's nodes too (they run in the head's session): a graceful
        # `ray start --block` shutdown took 30 s here, and nothing of the cluster is kept.
        kill_session(head.pid)
        head.wait(timeout=60)


def alive_nodes(address: str, env: dict) -> list[dict] | None:
    """The cluster's nodes (Ray's view: alive or not, resources), or None if it cannot be joined."""
    script = ("import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
              "print(json.dumps([{'id': n['NodeID'], 'alive': n['Alive'], 'resources': n['Resources']} "
              "for n in ray.nodes()]))" % address)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def worker_kind(node: dict) -> str | None:
    resources = node["resources"]
    if not resources.get("CPU"):
        return None  # the head
    return "gpu_worker" if resources.get("GPU") else "cpu_worker"


def test_the_autoscaler_starts_the_node_type_a_study_asks_for_and_removes_idle_ones(autoscaling_cluster,
                                                                                     recorded_table, tmp_path):
    address, env = autoscaling_cluster
    space, path = recorded_table
    studies = {"cpu": ["--cpus-per-trial", "1"], "gpu": ["--cpus-per-trial", "1", "--gpus-per-trial", "0.5"]}
    started: dict[str, set[str]] = {}
    for name, resources in studies.items():
        before = {n["id"] for n in alive_nodes(address, env)}
        search = subprocess.Popen(
            [sys.executable, "-m", "fashion_tune", "search", "--address", address, "--space", str(space),
             "--replay", str(path), "--replay-time-scale", "100", "--max-concurrent", "4", "--num-samples", "6",
             "--results-dir", str(tmp_path), "--name", name, *resources],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / f"{name}.log").open("w"))
        seen: dict[str, str] = {}  # worker node -> its kind, while alive (a removed node's resources read empty)
        while search.poll() is None:
            nodes = alive_nodes(address, env) or []
            seen.update({n["id"]: worker_kind(n) for n in nodes if n["alive"] and worker_kind(n)})
            time.sleep(1)
        assert search.wait(timeout=600) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        rows = read_leaderboard(tmp_path / name)
        assert len(rows) == 6 and {r["status"] for r in rows} <= {"completed", "stopped early"}, rows
        # every trial ran on a worker node seen while the study ran, none on the head (no CPUs there)
        ran_on = {node for r in rows for node in r["nodes"].split()}
        assert ran_on and ran_on <= set(seen), (ran_on, seen)
        new = {node: kind for node, kind in seen.items() if node not in before}
        started[name] = set(new.values())
        assert {seen[node] for node in ran_on} <= started[name], (ran_on, seen, before)
        # A gpu_worker for CPU-only demand only after every cpu_worker allowed (Tune can ask for a new
        # trial's resources before a stopped trial's are given back, so demand can pass the cpu_workers'
        # CPUs). The fake provider numbers nodes in launch order.
        for gpu_worker in (node for node, kind in new.items() if kind == "gpu_worker" and name == "cpu"):
            launched_before = sum(kind == "cpu_worker" and node < gpu_worker for node, kind in new.items())
            assert launched_before >= MAX_WORKERS["cpu_worker"], new
        # idle workers go (idle_timeout_minutes 0.1 in the test's config)
        wait_for(lambda: not [n for n in alive_nodes(address, env) if n["alive"] and worker_kind(n)],
                 timeout=180, what="the idle workers to be removed")
    # A CPU study starts cpu_workers (a gpu_worker too only past their max, as above, seen twice in CI);
    # a GPU study gpu_workers alone.
    assert "cpu_worker" in started["cpu"], started
    assert started["gpu"] == {"gpu_worker"}, started
    for name in studies:
        assert json.loads((tmp_path / name / "study.json").read_text())["finished_at"]
    assert run_cli("report", "--study", "gpu", "--results-dir", tmp_path).returncode == 0
