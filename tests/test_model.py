"""The builder at the corners of the default space: every corner builds, has 10 outputs, and trains."""

import dataclasses

import numpy as np
import pytest

from fashion_tune.config import TrainParams
from fashion_tune.space import load_space
from tests.conftest import SPACES

DEFAULT = load_space(SPACES / "default.yaml")


def extremes(spec):
    """The two ends of a searched range: low/high, or first/last choice."""
    if spec.type == "categorical":
        return [spec.choices[0], spec.choices[-1]]
    return [spec.low, spec.high]


def corner(pick_high: dict) -> TrainParams:
    values = {spec.name: extremes(spec)[pick_high.get(spec.name, True)] for spec in DEFAULT.params}
    return TrainParams.from_config({**DEFAULT.fixed, **values, "epochs": 1})


def corners():
    """All-low, all-high, and all-high with each parameter flipped to its low end in turn."""
    names = [spec.name for spec in DEFAULT.params]
    yield "all-low", corner({n: False for n in names})
    yield "all-high", corner({})
    for name in names:
        yield f"high-but-{name}-low", corner({name: False})


CORNERS = dict(corners())


def test_parameter_count_of_a_small_model_is_exact():
    from fashion_tune.model import build_model

    plain = dict(conv_blocks=1, filters=8, kernel_size=3, convs_per_block=1, dense_units=16, dense_dropout=0.0)
    # conv 3*3*1*8+8, dense 14*14*8*16+16, out 16*10+10
    assert build_model(TrainParams(**plain, batch_norm=False)).count_params() == 80 + 25104 + 170
    # without biases before batch norm; BN has 4 weights a channel
    assert build_model(TrainParams(**plain, batch_norm=True)).count_params() == 72 + 32 + 25088 + 64 + 170


def test_layers_follow_the_parameters():
    from fashion_tune.model import build_model

    model = build_model(TrainParams(conv_blocks=3, filters=16, filter_growth=2.0, convs_per_block=2, pooling="avg", augment=True))
    convs = [layer for layer in model.layers if layer.name.startswith("block") and "_conv" in layer.name]
    assert [c.filters for c in convs] == [16, 16, 32, 32, 64, 64]
    assert any(layer.name == "block3_pool" and type(layer).__name__ == "AveragePooling2D" for layer in model.layers)
    assert {"shift", "flip"} <= {layer.name for layer in model.layers}


@pytest.mark.parametrize("name", sorted(CORNERS))
def test_every_corner_of_the_default_space_builds_and_trains(name):
    from fashion_tune.model import build_model, compile_model

    params = CORNERS[name]
    model = compile_model(build_model(params), params, train_images=16)
    assert model.output_shape == (None, 10)
    rng = np.random.default_rng(0)
    x = rng.random((16, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    probabilities = model.predict(x[:2], verbose=0)
    assert probabilities.shape == (2, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)


def test_optimizers():
    from fashion_tune.model import make_optimizer

    for name, cls in [("adam", "Adam"), ("adamw", "AdamW"), ("sgd", "SGD")]:
        optimizer = make_optimizer(TrainParams(optimizer=name, learning_rate=0.02, weight_decay=1e-4))
        assert type(optimizer).__name__ == cls
        assert np.isclose(float(optimizer.learning_rate), 0.02)
    sgd = make_optimizer(TrainParams(optimizer="sgd"))
    assert sgd.momentum == 0.9 and sgd.nesterov


def test_cosine_schedule_decays_over_the_whole_run_and_survives_a_checkpoint(tmp_path):
    import keras

    from fashion_tune.model import build_model, compile_model, learning_rate

    params = TrainParams(conv_blocks=1, filters=4, dense_units=8, learning_rate=0.01, lr_schedule="cosine",
                         epochs=4, batch_size=10)
    with pytest.raises(ValueError, match="needs the number of training images"):
        compile_model(build_model(params), params)
    schedule = learning_rate(params, steps_per_epoch=10)  # 40 steps in all
    assert np.isclose(float(schedule(0)), 0.01)
    assert np.isclose(float(schedule(20)), 0.005)  # halfway: half the peak
    assert float(schedule(40)) < 1e-9
    assert learning_rate(dataclasses.replace(params, lr_schedule="constant")) == 0.01
    model = compile_model(build_model(params), params, train_images=95)  # 10 steps an epoch
    rng = np.random.default_rng(0)
    x, y = rng.random((95, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 95)
    model.fit(x, y, batch_size=10, epochs=2, verbose=0)
    assert np.isclose(float(model.optimizer.learning_rate), 0.005, rtol=1e-3)
    # A trial's checkpoint: the schedule and its step count come back, so a resumed run goes on along the curve.
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert int(restored.optimizer.iterations) == 20
    assert np.isclose(float(restored.optimizer.learning_rate), 0.005, rtol=1e-3)


def test_mixed_precision_and_xla_options_train():
    import keras

    from fashion_tune.model import build_model, compile_model

    params = TrainParams(conv_blocks=1, filters=8, dense_units=16, mixed_precision=True, jit_compile=True)
    model = compile_model(build_model(params), params)
    conv = model.get_layer("block1_conv1")
    assert conv.compute_dtype == "float16" and conv.variable_dtype == "float32"
    assert model.get_layer("probabilities").compute_dtype == "float32"  # probabilities stay float32
    assert keras.mixed_precision.dtype_policy().name == "float32"  # the global policy is restored
    rng = np.random.default_rng(0)
    history = model.fit(rng.random((32, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 32), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
