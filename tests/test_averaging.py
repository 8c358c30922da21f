"""Flip averaging and ensembles as one Keras model (averaging.py): the same answers as averaging
by hand, through a safe-mode reload and TF Serving's SavedModel alike."""

import numpy as np
import pytest

from fashion_tune.config import TrainParams

SMALL = dict(conv_blocks=1, filters=4, dense_units=8)


def images(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).random((n, 28, 28, 1), dtype=np.float32)


def mirrored(x: np.ndarray) -> np.ndarray:
    return x[:, :, ::-1, :]


@pytest.fixture(scope="module")
def members():
    """Two different trained-looking models, with augmentation layers that must stay off."""
    from fashion_tune.model import compiled_model

    return [compiled_model(TrainParams(**SMALL, augment=True, seed=1)),
            compiled_model(TrainParams(**SMALL, flip=True, crop_padding=2, seed=2))]


def by_hand(members, x, flip):
    answers = [m.predict(v, verbose=0) for m in members for v in ([x, mirrored(x)] if flip else [x])]
    return np.mean(answers, axis=0)


def saved_optimizer_variables(path) -> list[str]:
    """The optimizer entries of a .keras file's weights (inference needs none; each doubles the size)."""
    import zipfile

    import h5py

    names: list[str] = []
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as weights:
        h5py.File(weights).visit(names.append)
    return [name for name in names if "optimizer" in name]


@pytest.mark.parametrize("count,flip", [(1, True), (2, False), (2, True)])
def test_the_averaged_model_answers_the_mean_of_its_members_and_mirror_images(members, count, flip, tmp_path):
    import tensorflow as tf

    from fashion_tune.averaging import averaged
    from fashion_tune.export import write_saved_model
    from fashion_tune.model import load_model

    x = images()
    expected = by_hand(members[:count], x, flip)
    model = averaged(members[:count], flip)
    assert np.allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    assert [layer.name for layer in model.layers] == ["image", *(["mirror"] if flip else []),
                                                      *(f"member{i}" for i in range(1, count + 1)), "probabilities"]
    if flip:  # an image and its mirror image get the same answer
        assert np.allclose(model.predict(mirrored(x), verbose=0), expected, atol=1e-6)
    model.save(tmp_path / "averaged.keras")
    assert not saved_optimizer_variables(tmp_path / "averaged.keras")  # members are compiled; the copies are not
    assert np.allclose(load_model(tmp_path / "averaged.keras").predict(x, verbose=0), expected, atol=1e-6)
    write_saved_model(model, tmp_path / "saved_model")
    served = tf.saved_model.load(str(tmp_path / "saved_model"))
    assert np.allclose(served.serve(tf.constant(x)).numpy(), expected, atol=1e-5)


def test_one_model_without_flips_is_shipped_as_it_is(members):
    from fashion_tune.averaging import averaged, describe

    assert averaged(members[:1], flip=False) is members[0]
    assert describe(False, 1) == "one model, no averaging"
    assert describe(True, 3) == "averages an ensemble of 3 models over each image and its mirror image"


def test_the_saved_model_of_an_augmented_model_serves_without_augmenting(members, tmp_path):
    """Keras's own model.export calls the model without `training`: its random layers then shift
    and flip every served image (the reference export did until 2026-11-23)."""
    import tensorflow as tf

    from fashion_tune.export import write_saved_model

    x = images()
    write_saved_model(members[0], tmp_path / "saved_model")
    served = tf.saved_model.load(str(tmp_path / "saved_model"))
    for _ in range(3):
        assert np.allclose(served.serve(tf.constant(x)).numpy(), members[0].predict(x, verbose=0), atol=1e-5)
    # Each weight stored once (ExportArchive.track stored Keras's variables beside the endpoint's: twice the size).
    variables = tf.train.list_variables(str(tmp_path / "saved_model" / "variables" / "variables"))
    stored = sum(int(np.prod(shape)) for _, shape in variables)
    assert members[0].count_params() <= stored < 1.01 * members[0].count_params() + 10


def test_an_export_carries_no_optimizer_even_when_a_member_was_saved_compiled(members, tmp_path):
    """Retrains before 2026-11-23 nested their compiled member as it was: its optimizer survived
    load_model(compile=False) and made the reference export 11.4 MB instead of 3.9. export drops it."""
    import keras

    from fashion_tune.export import export
    from fashion_tune.layout import ExportDir, ModelDir
    from fashion_tune.model import load_model

    x = images()
    inputs = keras.Input(shape=(28, 28, 1))
    nested = keras.Model(inputs, members[0](inputs))  # the compiled member itself, not a copy
    model_dir = ModelDir(tmp_path / "retrain")
    model_dir.path.mkdir()
    nested.save(model_dir.model)
    assert saved_optimizer_variables(model_dir.model)
    out = export(model_dir, ExportDir(tmp_path / "export"), results_dir=str(tmp_path / "results"))
    assert not saved_optimizer_variables(out.model)
    assert np.allclose(load_model(out.model).predict(x, verbose=0), members[0].predict(x, verbose=0), atol=1e-6)
