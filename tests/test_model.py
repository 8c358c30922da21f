"""The builder at the corners of the default space: every corner builds, has 10 outputs, and trains;
and each augmentation option: the layer it builds, training-only, seeded, saved and loaded."""

import dataclasses
import json

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

    model = build_model(TrainParams(conv_blocks=3, filters=16, filter_growth=2.0, convs_per_block=2, pooling="avg",
                                    augment=True))
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


def test_residual_blocks_add_their_input_through_a_projection_only_where_the_maps_change():
    from fashion_tune.model import build_model

    plain = TrainParams(conv_blocks=3, convs_per_block=2, filters=16, filter_growth=1.0)
    residual = dataclasses.replace(plain, residual=True)
    model = build_model(residual)
    names = {layer.name for layer in model.layers}
    assert {"block1_add", "block2_add", "block3_add"} <= names
    # The image has 1 map and block 1 makes 16: a 1x1 projection; blocks 2 and 3 keep 16: identity.
    assert "block1_shortcut" in names and not {"block2_shortcut", "block3_shortcut"} & names
    projection = 1 * 16 + 2 * 16  # 1x1 conv without bias (batch norm follows), and that batch norm's scale and shift
    projection_bn_moving = 2 * 16
    assert model.count_params() == build_model(plain).count_params() + projection + projection_bn_moving
    grown = build_model(dataclasses.replace(residual, filter_growth=2.0))
    assert {"block2_shortcut", "block3_shortcut"} <= {layer.name for layer in grown.layers}


def test_a_global_average_head_with_no_hidden_layer_is_a_small_resnet_style_classifier():
    from fashion_tune.model import build_model, compile_model

    params = TrainParams(head="global_average", dense_units=0, residual=True, convs_per_block=2, epochs=1)
    model = compile_model(build_model(params), params, train_images=16)
    names = [layer.name for layer in model.layers]
    assert "global_average" in names and "dense" not in names and not any("flatten" in n for n in names)
    # The classifier reads one mean per map of the last block: 64 of them, 10 classes.
    assert model.get_layer("probabilities").kernel.shape == (64, 10)
    assert model.count_params() < build_model(TrainParams()).count_params() / 5
    x = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)
    assert np.isfinite(model.fit(x, np.arange(16) % 10, batch_size=8, epochs=1, verbose=0).history["loss"][0])


def test_label_smoothing_spreads_the_targets_and_survives_a_checkpoint(tmp_path):
    from fashion_tune.model import compiled_model, load_model, loss

    assert loss(TrainParams()) == "sparse_categorical_crossentropy"
    smoothed = loss(TrainParams(label_smoothing=0.1))
    confident = np.full((1, 10), 1e-7, np.float32)
    confident[0, 3] = 1 - 9e-7
    # Targets 0.91 for the true class and 0.01 for each other: a sure, right answer still costs.
    expected = -(0.91 * np.log(1 - 9e-7) + 9 * 0.01 * np.log(1e-7))
    assert float(smoothed(np.array([3]), confident)) == pytest.approx(expected, rel=1e-3)
    params = TrainParams(label_smoothing=0.1, conv_blocks=1, filters=8, dense_units=16, epochs=1)
    model = compiled_model(params, 16)
    x = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)
    model.fit(x, np.arange(16) % 10, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    again = load_model(tmp_path / "model.keras")  # compiled, as a resumed trial loads it; safe mode on
    assert type(again.loss).__name__ == "SmoothedSparseCrossentropy" and again.loss.smoothing == 0.1
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


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


# ----------------------------------------------------------------------------- augmentation

# Each option at a clear strength, the Keras layer that does it, and whether it moves the image
# (then the corners it uncovers must be the background's black).
AUGMENTATION_CASES = {
    "flip": (True, "RandomFlip", False),
    "crop_padding": (4, "RandomTranslation", True),
    "translation": (0.2, "RandomTranslation", True),
    "rotation": (30.0, "RandomRotation", True),
    "zoom": (0.3, "RandomZoom", True),
    "contrast": (0.5, "RandomContrast", False),
    "brightness": (0.3, "RandomBrightness", False),
    "erasing": (1.0, "RandomErasing", False),
}
SMALL = dict(conv_blocks=1, filters=4, dense_units=8)


def garments(n: int = 16) -> np.ndarray:
    """Fashion-MNIST-like images: a textured light object on black, float32 in [0, 1]."""
    x = np.zeros((n, 28, 28, 1), np.float32)
    x[:, 6:22, 8:20] = 0.3 + 0.6 * np.random.default_rng(0).random((n, 16, 12, 1), dtype=np.float32)
    return x


def layer_config(model, name: str) -> dict:
    """A layer's config as a saved model holds it (tuples read back as lists)."""
    return json.loads(json.dumps(model.get_layer(name).get_config()))


def test_augment_still_builds_what_the_reference_model_was_trained_with():
    """The 2026-11-21 reference model's first layers, as its saved file held them (tests/data)."""
    from fashion_tune.model import build_model
    from tests.conftest import ROOT

    reference = json.loads((ROOT / "tests" / "data" / "reference_2026-11-21.json").read_text())
    built = build_model(TrainParams.from_config(reference["params"]))
    assert [layer.name for layer in built.layers[:4]] == reference["layers"] == ["image", "shift", "flip",
                                                                                 "block1_conv1"]
    for name, saved in reference["augmentation_layer_configs"].items():
        assert layer_config(built, name) == saved


def test_every_augmentation_option_has_a_case():
    from fashion_tune.model import AUGMENTATIONS

    assert set(AUGMENTATION_CASES) == set(AUGMENTATIONS)


@pytest.mark.parametrize("option", sorted(AUGMENTATION_CASES))
def test_augmentation_changes_training_images_only(option):
    from fashion_tune.model import build_model

    value, layer_class, moves = AUGMENTATION_CASES[option]
    augmented = build_model(TrainParams(**SMALL, **{option: value}))
    layer = augmented.get_layer(option)
    assert type(layer).__name__ == layer_class
    x = garments()
    trained_on = np.asarray(layer(x, training=True))
    assert not np.allclose(trained_on, x) and trained_on.min() >= 0 and trained_on.max() <= 1
    if moves:  # a white image shows what fills the uncovered corners
        assert np.asarray(layer(np.ones_like(x), training=True)).min() == 0
    # At inference the layer is the identity: the same weights answer the same without it.
    assert np.array_equal(np.asarray(layer(x, training=False)), x)
    plain = build_model(TrainParams(**SMALL))
    plain.set_weights(augmented.get_weights())
    assert np.array_equal(augmented(x, training=False).numpy(), plain(x, training=False).numpy())
    assert np.array_equal(augmented.predict(x, verbose=0), plain.predict(x, verbose=0))


def test_augmentation_strengths_mean_what_their_units_say():
    from fashion_tune.model import augmentation_layers

    params = TrainParams(rotation=15, contrast=0.3, brightness=0.2, erasing=0.25)
    layers = {layer.name: layer for layer in augmentation_layers(params)}
    assert np.allclose(layers["rotation"].factor, (-15 / 360, 15 / 360))  # Keras counts in turns
    halves = np.full((400, 28, 28, 1), 0.5, np.float32)
    halves[:, :, 14:] = 0.25  # a step of 0.25 about a mean of 0.375
    contrasted = np.asarray(layers["contrast"](halves, training=True))
    factor = (contrasted[:, 0, 0, 0] - contrasted[:, 0, 27, 0]) / 0.25
    assert 0.7 - 1e-4 <= factor.min() < 0.8 and 1.2 < factor.max() <= 1.3 + 1e-4  # lowered and raised
    added = np.asarray(layers["brightness"](halves, training=True))[:, 0, 27, 0] - 0.25
    assert -0.2 - 1e-4 <= added.min() < -0.15 and 0.15 < added.max() <= 0.2 + 1e-4
    erased = (np.asarray(layers["erasing"](halves, training=True)) != halves).any(axis=(1, 2, 3)).mean()
    assert 0.18 < erased < 0.32  # the probability given, not Keras's "up to" it


def shifted(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """x moved dy pixels down and dx right, the uncovered edge black."""
    out = np.zeros_like(x)
    h, w = x.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = x[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx,
                                                                                                                  0)]
    return out


def test_padded_crops_move_each_image_by_whole_pixels_up_to_the_padding():
    from fashion_tune.model import augmentation_layers

    (crop,) = augmentation_layers(TrainParams(crop_padding=3))
    x = garments(64)
    cropped = np.asarray(crop(x, training=True))
    moves = []
    for before, after in zip(x, cropped):  # each image is its original shifted, not blurred
        found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4) if np.array_equal(shifted(before, dy, dx),
                                                                                          after)]
        assert found, "an image was not a whole-pixel shift of its original within 3 pixels"
        moves.append(found[0])
    assert len(set(moves)) > 10  # drawn per image, not once per batch


def test_flip_adds_no_second_flip_to_augments():
    from fashion_tune.model import augmentation_layers

    assert [layer.name for layer in augmentation_layers(TrainParams(augment=True, flip=True))] == ["shift", "flip"]
    assert [layer.name for layer in augmentation_layers(TrainParams(flip=True))] == ["flip"]


def test_augmentation_is_seeded_and_each_layer_draws_its_own_numbers():
    from fashion_tune.model import augmentation_layers

    def augmented(seed):
        x = garments()
        for layer in augmentation_layers(TrainParams(rotation=30, zoom=0.3, seed=seed)):
            x = np.asarray(layer(x, training=True))
        return x

    assert np.array_equal(augmented(1), augmented(1))
    assert not np.array_equal(augmented(1), augmented(2))
    everything = TrainParams(seed=5, **{option: case[0] for option, case in AUGMENTATION_CASES.items()})
    seeds = [layer.seed for layer in augmentation_layers(everything)]
    assert len(set(seeds)) == len(seeds) and 5 not in seeds  # nor augment's (and dropout's) seed


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_every_augmentation_trains_saves_and_loads_in_safe_mode(tmp_path, mixed_precision):
    from fashion_tune.model import compiled_model, load_model

    params = TrainParams(**SMALL, augment=True, mixed_precision=mixed_precision,
                         **{option: case[0] for option, case in AUGMENTATION_CASES.items()})
    model = compiled_model(params)
    x, y = garments(32), np.arange(32) % 10
    assert np.isfinite(model.fit(x, y, batch_size=16, epochs=1, verbose=0).history["loss"][0])
    model.save(tmp_path / "augmented.keras")
    loaded = load_model(tmp_path / "augmented.keras")
    names = [layer.name for layer in model.layers]
    assert [layer.name for layer in loaded.layers] == names and {"shift", "flip", *AUGMENTATION_CASES} <= set(names)
    for name in ("shift", "flip", *AUGMENTATION_CASES):  # the same random changes if training goes on
        assert layer_config(loaded, name) == layer_config(model, name), name
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_space_with_augmentation_samples_configurations_that_build(write_space):
    from fashion_tune.config import SearchSettings
    from fashion_tune.model import build_model
    from fashion_tune.search.study import param_space
    from tests.test_space import AUGMENTED

    config = param_space(load_space(write_space(AUGMENTED)), SearchSettings(seed=3))
    sampled = [TrainParams.from_config({k: v.sample() if hasattr(v, "sample") else v for k, v in config.items()})
               for _ in range(5)]
    assert len({p.zoom for p in sampled}) == 5 and all(p.rotation == 10 and p.erasing == 0.25 for p in sampled)
    model = build_model(dataclasses.replace(sampled[0], **SMALL))
    assert {"shift", "flip", "rotation", "zoom", "erasing"} <= {layer.name for layer in model.layers}


def test_training_state_exists_before_the_first_step(tmp_path):
    """A variable created inside the first step makes tf.function trace the step twice (0.8 s a
    trial): compiled and loaded models already hold every optimizer and metric variable."""
    from fashion_tune.model import compiled_model, load_model

    def variables(model):
        return [v.path for v in [*model.variables, *model.optimizer.variables, *model.metrics_variables]]

    x = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)
    y = np.arange(16) % 10
    model = compiled_model(TrainParams(conv_blocks=1, filters=8, dense_units=16, epochs=1), 16)
    assert model.optimizer.variables and model.metrics_variables
    created = variables(model)
    model.train_on_batch(x, y)
    assert variables(model) == created
    model.save(tmp_path / "model.keras")
    again = load_model(tmp_path / "model.keras")
    assert int(again.optimizer.iterations) == 1  # the saved optimizer state, not a new one
    loaded = variables(again)
    again.train_on_batch(x, y)
    assert variables(again) == loaded
