"""Every cluster YAML validates the way Ray's own tests validate them: prepare_config, then
validate_config against the schema shipped in the ray package. Offline: nothing is launched."""

import copy
import re

import pytest
import yaml

from tests.conftest import ROOT

CONFIGS = sorted((ROOT / "cluster").glob("*.yaml"))


def prepared(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load(path.read_text()))
    validate_config(config)
    return config


def test_there_is_a_cloud_and_an_on_premises_config():
    providers = {yaml.safe_load(p.read_text())["provider"]["type"] for p in CONFIGS}
    assert {"aws", "local"} <= providers


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid_for_ray_up(path):
    config = prepared(path)
    assert config["available_node_types"] and config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_installs_this_project_pinned_and_keeps_the_dashboard_local(path):
    raw = yaml.safe_load(path.read_text())
    setup = " ".join(raw["setup_commands"])
    assert "requirements.lock" in setup and "fashion_tune" in setup
    head = " ".join(raw["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_node_uses_the_cluster_token(path):
    """Ray 2.60 starts a head with token authentication: every node gets the laptop's token file
    and runs Ray in token mode, or workers and `ray job submit` are refused."""
    raw = yaml.safe_load(path.read_text())
    assert any(remote.endswith(".ray/auth_token") and local == "~/.ray/auth_token"
               for remote, local in raw["file_mounts"].items())
    container_env = " ".join(raw.get("docker", {}).get("run_options", []))
    for commands in (raw["head_start_ray_commands"], raw["worker_start_ray_commands"]):
        start = next(c for c in commands if "ray start" in c)
        assert "RAY_AUTH_MODE=token" in container_env or "export RAY_AUTH_MODE=token" in start, start


def test_cloud_config_has_cpu_and_gpu_workers_and_the_pinned_ray():
    import ray

    raw = yaml.safe_load((ROOT / "cluster" / "config.yaml").read_text())
    types = raw["available_node_types"]
    assert {"cpu_worker", "gpu_worker"} <= set(types)
    assert types[raw["head_node_type"]]["resources"] == {"CPU": 0}  # trials run on workers
    image_version = re.search(r"rayproject/ray:([\d.]+)-py311", raw["docker"]["image"]).group(1)
    assert image_version == ray.__version__


def test_a_broken_config_is_rejected():
    from ray.autoscaler._private.util import validate_config

    raw = yaml.safe_load((ROOT / "cluster" / "config.yaml").read_text())
    broken = copy.deepcopy(raw)
    broken["max_workers"] = "eight"
    with pytest.raises(Exception, match="eight"):
        validate_config(broken)
