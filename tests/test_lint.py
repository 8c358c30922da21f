"""The tree passes ruff (pyflakes, pycodestyle, import order; the rules and line length in
pyproject.toml's [tool.ruff]), so CI fails on a violation."""

import subprocess
import sys

from tests.conftest import ROOT


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
