"""The package's own Keras objects (keras_objects.py): any model the tool writes loads with plain
`keras.models.load_model` once `fashion_tune` is imported, in a process that never imported
anything else of ours, whichever of the two was imported first."""

import subprocess
import sys

import numpy as np
import pytest

from fashion_tune.config import TrainParams
from tests.conftest import ROOT

SMALL = dict(conv_blocks=1, filters=4, dense_units=8, label_smoothing=0.1)
LOAD_AND_ANSWER = """
import sys
import numpy as np
{imports}
model = keras.models.load_model(sys.argv[1])
print(repr(model.predict(np.load(sys.argv[2]), verbose=0).round(6).tolist()))
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """What the tool writes: a retrained member as retrain saves it (compiled, label smoothing), and an
    export of an ensemble of two with flip averaging and temperature scaling; with images to ask."""
    from fashion_tune.averaging import averaged
    from fashion_tune.calibration import with_temperature
    from fashion_tune.export import export
    from fashion_tune.layout import ExportDir, ModelDir
    from fashion_tune.model import compiled_model

    folder = tmp_path_factory.mktemp("written")
    members = [compiled_model(TrainParams(**SMALL, seed=seed)) for seed in (1, 2)]
    retrained = ModelDir(folder / "retrain")
    retrained.path.mkdir()
    members[0].save(folder / "member.keras")
    with_temperature(averaged(members, flip=True), 0.7).save(retrained.model)
    exported = export(retrained, ExportDir(folder / "export"), results_dir=str(folder / "results"))
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    np.save(folder / "x.npy", x)
    return {"member": folder / "member.keras", "export": exported.model, "x": folder / "x.npy"}


@pytest.mark.parametrize("what,imports", [("export", "import fashion_tune\nimport keras"),
                                          ("member", "import keras\nimport fashion_tune")])
def test_a_new_process_loads_what_the_tool_wrote_with_plain_keras(written, what, imports):
    from fashion_tune.model import load_model

    done = subprocess.run([sys.executable, "-c", LOAD_AND_ANSWER.format(imports=imports), str(written[what]),
                           str(written["x"])], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = load_model(written[what]).predict(np.load(written["x"]), verbose=0).round(6).tolist()
    assert done.stdout.strip().splitlines()[-1] == repr(expected)


def test_without_the_package_keras_cannot_find_our_layers(written):
    """What the model card's words rest on: the registration comes from `import fashion_tune`."""
    done = subprocess.run([sys.executable, "-c", "import sys, keras; keras.models.load_model(sys.argv[1])",
                           str(written["export"])], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "fashion_tune>" in done.stderr


def test_each_object_is_registered_under_the_package_name():
    import keras

    from fashion_tune import keras_objects

    for cls in (keras_objects.SmoothedSparseCrossentropy, keras_objects.HorizontalFlip, keras_objects.Temperature):
        assert keras.saving.get_registered_name(cls) == f"fashion_tune>{cls.__name__}"
        assert keras.saving.get_registered_object(f"fashion_tune>{cls.__name__}") is cls
