"""The command line: fast help, and a user's mistake gives one line, exit 2, and writes nothing."""

import subprocess
import sys

import pytest

from fashion_tune.cli import main
from tests.conftest import ROOT, SPACES


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
        (["--grace-period", "9"], "grace_period is 9, must be <= the trial budget of 3 epochs"),
        (["--reduction-factor", "1"], "reduction_factor is 1, must be >= 2"),
        (["--subset", "5"], "subset is 5, must be 100 to 60000"),
        (["--name", "../escape"], "name is '../escape', must use only letters"),
        (["--cpus-per-trial", "64"], "--cpus-per-trial is 64.0, but this machine offers Ray"),
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


def test_resume_of_unknown_study(tmp_path, capsys):
    assert main(["search", "--resume", "ghost", "--results-dir", str(tmp_path)]) == 2
    assert "--resume ghost: no study at" in one_error_line(capsys)
