"""`predict` as a user runs it: a real saved model with a model card, real image files, the CLI.
No garment is an error line for that file, unsure answers are marked, and what the model saw can
be written out or carried in the JSON."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from fashion_tune.cli import main


@pytest.fixture
def export(unsure_bag_export):
    return unsure_bag_export


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    image = Image.new("RGB", (160, 120), (245, 245, 240))
    image.paste((40, 30, 20), (50, 20, 110, 100))  # a dark product, taller than wide, on an off-white background
    image.save(folder / "bag.jpg", quality=90)
    Image.new("RGB", (160, 120), (250, 250, 250)).save(folder / "blank.png")
    return folder


def test_no_garment_is_an_error_line_and_unsure_answers_are_marked(export, photos, capsys):
    assert main(["predict", str(photos), "--model", str(export.path)]) == 1  # one file could not be classified
    out, err = capsys.readouterr()
    assert out.startswith(f"{photos / 'bag.jpg'}: Bag 70.0%")
    assert "[unsure: below the model's review threshold of 80%" in out
    assert err.strip().endswith(f"fashion-tune: error: {photos / 'blank.png'}: no garment found (the image is blank, "
                                "uniform or noise)")


def test_json_carries_the_answer_the_service_gives_and_the_model_input_on_request(export, photos, capsys):
    main(["predict", str(photos / "bag.jpg"), "--model", str(export.path), "--json", "--include-input", "--top", "2"])
    answer = json.loads(capsys.readouterr().out)["predictions"][0]
    assert (answer["category"], answer["unsure"], answer["unsure_below"]) == ("Bag", True, 0.8)
    assert [t["class"] for t in answer["top"]][0] == "Bag" and len(answer["top"]) == 2
    header, encoded = answer["model_input"].split(",", 1)
    assert header == "data:image/png;base64"
    seen = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert seen.size == (28, 28) and seen.mode == "L" and np.asarray(seen).max() == 255


def test_show_writes_what_the_model_saw(export, photos, tmp_path, capsys):
    shown = tmp_path / "seen"
    main(["predict", str(photos), "--model", str(export.path), "--show", str(shown)])
    assert sorted(p.name for p in shown.iterdir()) == ["bag.png"]  # the blank photo has no model input
    seen = np.asarray(Image.open(shown / "bag.png"))
    assert seen.shape == (28, 28) and seen[14, 0] == 0 and seen[14, 14] > 200 and seen.max() == 255  # light on black


def test_show_says_which_photo_a_renamed_model_input_is(export, photos, tmp_path, caplog):
    """Two photos named alike once became shoe.png and shoe-2.png without a word (issue 34)."""
    other = tmp_path / "more"
    other.mkdir()
    (other / "bag.jpg").write_bytes((photos / "bag.jpg").read_bytes())
    shown = tmp_path / "seen"
    with caplog.at_level("INFO", logger="fashion_tune"):
        assert main(["predict", str(photos / "bag.jpg"), str(other / "bag.jpg"), "--model", str(export.path),
                     "--show", str(shown)]) == 0
    assert sorted(p.name for p in shown.iterdir()) == ["bag-2.png", "bag.png"]
    assert f"{other / 'bag.jpg'}: its model input is {shown / 'bag-2.png'}" in caplog.text


@pytest.mark.parametrize("flags, message", [
    (["--include-input"], "--include-input adds the model inputs to --json output"),
    (["--top", "0"], "argument --top: 0 must be >= 1"),
])
def test_contradictory_flags_are_refused_before_any_work(export, photos, capsys, flags, message):
    assert main(["predict", str(photos), "--model", str(export.path), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_new_process_prints_our_lines_only(export, photos):
    """TensorFlow's start-up chatter (no CUDA drivers, cuInit, absl, CPU instructions, oneDNN) is not
    the user's business on a CPU machine: a fresh `predict` prints its answers and nothing else."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-m", "fashion_tune", "predict", str(photos / "bag.jpg"), "--model",
                           str(export.path)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.startswith(f"{photos / 'bag.jpg'}: Bag"), (done.stdout, done.stderr)
