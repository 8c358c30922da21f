"""The command line: fast help, and a user's mistake gives one line, exit 2, and writes nothing."""

import dataclasses
import json
import shlex
import subprocess
import sys

import pytest

from fashion_tune import layout
from fashion_tune.cli import main
from fashion_tune.config import DataSettings, SearchSettings, flag_of
from tests.conftest import ROOT, SPACES, free_port


def test_help_imports_neither_tensorflow_nor_ray():
    code = (
        "import sys\n"
        "from fashion_tune.cli import main\n"
        "try:\n    main(['search', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'ray', 'optuna') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--cpus-per-trial" in done.stdout and "--data-dir" in done.stdout


def test_module_and_console_script_entry_points():
    done = subprocess.run([sys.executable, "-m", "fashion_tune", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "search" in done.stdout


def one_error_line(capsys) -> str:
    """Our error is one line, the last thing printed (Ray may log its own lines before it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    ours = [line for line in lines if line.startswith("fashion-tune:")]
    assert len(ours) == 1 and lines[-1] == ours[0], lines
    assert ours[0].startswith("fashion-tune: error: ")
    return ours[0]


def test_bad_space_file(tmp_path, write_space, capsys):
    space = write_space("metric: val_accuracy\nparams:\n  learning_rate: {type: float, low: 1e-4, high: 1.0e-2}\n")
    code = main(["search", "--space", str(space), "--results-dir", str(tmp_path / "r"), "--name", "x"])
    assert code == 2
    assert f"{space}: params.learning_rate.low: '1e-4' is a string" in one_error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_bad_data_dir_writes_no_study(tmp_path, capsys):
    code = main(["search", "--space", str(SPACES / "smoke.yaml"), "--data-dir", str(tmp_path / "nothing"),
                 "--results-dir", str(tmp_path / "r"), "--name", "x"])
    assert code == 2
    assert "--data-dir" in one_error_line(capsys)
    assert not (tmp_path / "r" / "x").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        # Named as typed: the flag, and the value as the user wrote it.
        (["--grace-period", "9"], "--grace-period is 9, must be <= the trial budget of 3 epochs"),
        (["--reduction-factor", "1"], "argument --reduction-factor: 1 must be >= 2"),
        (["--subset", "5"], "argument --subset: 5 must be 100 to 60000"),
        (["--name", "../escape"], "argument --name: '../escape' must use only letters"),
        (["--connect-timeout", "0"], "argument --connect-timeout: 0 must be > 0"),
        (["--cpus-per-trial", "64"], "--cpus-per-trial is 64, but this machine offers Ray"),
        (["--scheduler", "sha"],
         "argument --scheduler: invalid choice: 'sha' (choose from 'asha', 'halving', 'hyperband', 'i-epoch', 'none')"),
        # smoke.yaml sets max_concurrent: a paused trial would hold its slot for ever.
        (["--scheduler", "halving"], f"{SPACES / 'smoke.yaml'}: search.max_concurrent is 2, but --scheduler halving "
                                     "pauses trials"),
        (["--scheduler", "hyperband", "--max-concurrent", "3"], "--max-concurrent is 3, but --scheduler hyperband"),
        (["--space", str(SPACES / "reference.yaml"), "--jit-compile"],
         "--jit-compile: jit_compile is true, but crop_padding is 2: Keras's random crops"),
        (["--time-budget-min", "0"], "argument --time-budget-min: 0 must be > 0"),
    ],
)
def test_bad_settings(tmp_path, capsys, fashion_dir, args, message):
    argv = ["search", "--space", str(SPACES / "smoke.yaml"), "--data-dir", str(fashion_dir),
            "--results-dir", str(tmp_path / "r"), "--name", "x", *args]
    if "--subset" not in args:
        argv += ["--subset", "500"]
    assert main(argv) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "r" / "x").exists()


def test_results_dir_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    assert main(["search", "--space", str(SPACES / "smoke.yaml"), "--results-dir", str(blocker / "studies")]) == 2
    assert f"--results-dir {blocker / 'studies'}: {blocker} is a file, not a folder" in one_error_line(capsys)


def _unreachable_search(tmp_path, data_dir, address, *flags):
    """`search --address ADDRESS` in its own process (a cluster that never answers ends it)."""
    import subprocess
    import sys
    import time

    began = time.time()
    done = subprocess.run([sys.executable, "-m", "fashion_tune", "search", "--space", str(SPACES / "smoke.yaml"),
                           "--address", address, "--data-dir", str(data_dir), "--results-dir", str(tmp_path / "r"),
                           "--name", "x", *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    ours = [line for line in done.stderr.splitlines() if line.startswith("fashion-tune:")]
    assert done.returncode == 2 and len(ours) == 1, done.stderr[-2000:]
    assert not (tmp_path / "r").exists()
    return ours[0], time.time() - began, len(done.stderr.splitlines())


def test_a_cluster_address_where_nothing_listens_fails_at_once(tmp_path, fashion_dir):
    port = free_port()  # nothing listens there now
    line, seconds, _ = _unreachable_search(tmp_path, fashion_dir, f"127.0.0.1:{port}")
    assert f"cannot reach a Ray cluster at --address 127.0.0.1:{port} within 30 s (Connection refused)" in line
    assert "ray up cluster/config.yaml" in line and seconds < 30


def test_a_cluster_address_that_never_answers_gives_up_after_the_connect_timeout(tmp_path, fashion_dir):
    """Something listens but is no Ray head (a port that accepts and stays silent): Ray itself
    would retry without end; the search gives up after --connect-timeout."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        line, seconds, stderr_lines = _unreachable_search(tmp_path, fashion_dir, f"127.0.0.1:{port}",
                                                          "--connect-timeout", "3")
    assert f"the Ray cluster at --address 127.0.0.1:{port} did not let Ray join within 3 s" in line
    assert stderr_lines == 1  # and no warning from Ray's C++ client every second meanwhile
    assert seconds < 25, seconds


def test_serve_start_up_mistakes_are_one_line_before_ray_starts(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
        assert f"--port {port}: already in use on 127.0.0.1" in one_error_line(capsys)
    assert main(["serve", "--host", "10.255.255.254"]) == 2
    assert "--host 10.255.255.254: not an address of this machine" in one_error_line(capsys)
    for flags, message in ((["--port", "99999"], "argument --port: 99999 must be 1 to 65535"),
                           (["--replicas", "0"], "argument --replicas: 0 must be >= 1"),
                           (["--max-mb", "0"], "argument --max-mb: 0 must be > 0")):
        assert main(["serve", *flags]) == 2
        assert message in one_error_line(capsys)


def test_resume_of_unknown_study(tmp_path, capsys):
    assert main(["search", "--resume", "ghost", "--results-dir", str(tmp_path)]) == 2
    assert "--resume ghost: no study at" in one_error_line(capsys)


def test_predict_without_any_export_says_how_to_make_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(layout, "REFERENCE_EXPORT", tmp_path / "no-reference")  # as in an installed wheel
    (tmp_path / "x.png").write_bytes(b"")
    assert main(["predict", str(tmp_path / "x.png"), "--results-dir", str(tmp_path / "none")]) == 2
    assert "no exported model found" in capsys.readouterr().err


def test_bad_config_and_missing_model_are_one_line(tmp_path, capsys):
    bad = tmp_path / "best_config.json"
    bad.write_text("{not json")
    assert main(["retrain", "--config", str(bad)]) == 2
    assert "best_config.json: not valid JSON" in capsys.readouterr().err
    bad.write_text(json.dumps({"params": {"filters": -3}}))
    assert main(["retrain", "--config", str(bad)]) == 2
    assert "params: filters is -3, must be >= 1" in capsys.readouterr().err
    assert main(["evaluate", "--study", "ghost", "--results-dir", str(tmp_path)]) == 2
    assert "run `fashion-tune retrain --study ghost` first" in capsys.readouterr().err


def test_retrain_settings_that_cannot_work_are_refused_before_any_data(tmp_path, capsys):
    config = tmp_path / "best_config.json"
    config.write_text(json.dumps({"params": {"filters": 8}, "retrain": {"top": 3}}))
    # The space file's rule (carried in best_config.json) asks for an ensemble; a lone file has no ranking.
    assert main(["retrain", "--config", str(config), "--data-dir", str(tmp_path / "no-data")]) == 2
    assert "top 3 (--top, or the space file's retrain: section) needs --study" in one_error_line(capsys)
    config.write_text(json.dumps({"params": {"filters": 8}, "retrain": {"flip_tta": "yes"}}))
    assert main(["retrain", "--config", str(config)]) == 2
    assert f"{config}: retrain: flip_tta is 'yes', must be true or false" in one_error_line(capsys)
    assert main(["retrain", "--config", str(config), "--top", "0"]) == 2
    assert "argument --top: 0 must be >= 1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- settings from one source

# A value other than the default for every search and data setting.
CHANGED = {
    "space": "quick", "name": "round-trip", "results_dir": "/tmp/studies", "num_samples": 7, "max_concurrent": 2,
    "cpus_per_trial": 0.5, "gpus_per_trial": 0.25, "grace_period": 2, "reduction_factor": 4, "searcher": "random",
    "scheduler": "none", "tpe_startup_trials": 3, "max_failures": 1, "time_budget_min": 34.5, "seed": 9,
    "mixed_precision": True,
    "jit_compile": True, "address": "ray://head:10001", "connect_timeout": 5.0,
    "replay": "/tmp/curves.jsonl", "replay_time_scale": 0.5,
}
CHANGED_DATA = {"data_dir": "/data/fashion mnist", "subset": 500, "val_fraction": 0.2}


def parsed_back(command: str):
    from fashion_tune.cli import build_parser, given

    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "fashion_tune", "search"]
    args = build_parser().parse_args(argv[3:])
    return SearchSettings.layered(given(args, SearchSettings)), DataSettings.layered(given(args, DataSettings))


@pytest.mark.parametrize("changed", [True, False], ids=["every-setting-changed", "defaults"])
def test_the_reproduce_command_parses_back_to_the_same_settings(changed):
    from fashion_tune.search.study import reproduce_command

    assert set(CHANGED) == set(SearchSettings.field_names()), "a new setting: give it a changed value here"
    assert set(CHANGED_DATA) == {f.name for f in DataSettings.command_line_fields()}
    trained = {k: v for k, v in CHANGED.items() if not k.startswith("replay")}
    settings = SearchSettings(**trained) if changed else SearchSettings(name="defaults")
    data = DataSettings(**CHANGED_DATA) if changed else DataSettings()
    search_back, data_back = parsed_back(reproduce_command(settings, data))
    # The cluster address says where a study ran, not what it is: the command leaves it out.
    assert search_back == dataclasses.replace(settings, address=None, connect_timeout=SearchSettings.connect_timeout)
    assert data_back == data
    if changed:  # a replayed study reads no data: its command gives no data flag (search refuses them with --replay)
        replayed = SearchSettings(**CHANGED)
        search_back, data_back = parsed_back(reproduce_command(replayed, data))
        assert search_back == dataclasses.replace(replayed, address=None,
                                                  connect_timeout=SearchSettings.connect_timeout)
        assert data_back == DataSettings()


def test_every_setting_has_a_flag_and_the_space_file_keys_come_from_the_same_fields(capsys, write_space):
    from fashion_tune.space import SpaceError, load_space

    assert main(["search", "--help"]) == 0
    text = capsys.readouterr().out
    for cls in (SearchSettings, DataSettings):
        for field in cls.command_line_fields():
            assert flag_of(field.name) in text and field.metadata["help"].split()[0] in text
    keys = SearchSettings.space_file_keys()
    assert "num_samples" in keys and "seed" not in keys and "address" not in keys
    with pytest.raises(SpaceError, match="search.seed: unknown key; allowed here: " + ", ".join(keys)):
        load_space(write_space("metric: val_accuracy\nparams: {filters: {type: int, low: 8, high: 9}}\n"
                               "search: {seed: 3}\n"))


def test_resume_refuses_settings_it_would_ignore(tmp_path, capsys):
    args = ["search", "--resume", "x", "--results-dir", str(tmp_path), "--num-samples", "9", "--subset", "500"]
    assert main(args) == 2
    message = one_error_line(capsys)
    assert "--resume x: --num-samples, --subset cannot change a study that has begun" in message
    assert "only --results-dir, --address and --connect-timeout go with --resume" in message
