"""How our processes start TensorFlow: with oneDNN's CPU kernels on unless the user said otherwise.

TF_ENABLE_ONEDNN_OPTS is read once, when TensorFlow is imported, so each case runs in a fresh process."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = """
import json, os
import fashion_tune  # what a Ray worker imports first when it unpickles a trial
from fashion_tune.quiet_tensorflow import import_tensorflow
import_tensorflow()
from tensorflow.python.util import _pywrap_util_port
print(json.dumps({"env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "onednn": _pywrap_util_port.IsMklEnabled()}))
"""


@pytest.mark.parametrize("given, expected", [(None, {"env": "1", "onednn": True}),
                                             ("0", {"env": "0", "onednn": False})])
def test_onednn_is_on_unless_the_user_turned_it_off(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected
    assert done.stderr == ""  # oneDNN's notice is start-up chatter too
