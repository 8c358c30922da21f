import pytest

from fashion_tune.config import ConfigError, DataSettings, SearchSettings, TrainParams


def test_defaults_are_valid():
    TrainParams()
    DataSettings()
    SearchSettings()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("learning_rate", -1, "learning_rate is -1.0, must be > 0"),
        ("conv_blocks", 5, "conv_blocks is 5, must be 1 to 4 (28x28 images allow four 2x2 poolings)"),
        ("kernel_size", 4, "kernel_size is 4, must be one of 3, 5"),
        ("dense_dropout", 1.0, "dense_dropout is 1.0, must be in [0, 1)"),
        ("optimizer", "rmsprop", "optimizer is 'rmsprop', must be one of 'adam', 'adamw', 'sgd'"),
        ("batch_norm", "yes", "batch_norm is 'yes', must be true or false"),
        ("filters", 3.5, "filters is 3.5, must be an integer"),
        ("learning_rate", float("nan"), "learning_rate is nan, must be a finite number"),
        ("rotation", -5, "rotation is -5.0, must be 0 to 180 (degrees either way)"),
        ("rotation", 200, "rotation is 200.0, must be 0 to 180 (degrees either way)"),
        ("zoom", 1, "zoom is 1.0, must be in [0, 1)"),
        ("translation", -0.1, "translation is -0.1, must be in [0, 1)"),
        ("contrast", 1.5, "contrast is 1.5, must be in [0, 1)"),
        ("brightness", "0.2", "brightness is '0.2', must be a finite number"),
        ("erasing", 1.5, "erasing is 1.5, must be 0 to 1 (a probability)"),
        ("erasing", True, "erasing is True, must be a finite number"),
        ("photo_share", 1.5, "photo_share is 1.5, must be 0 to 1 (a probability)"),
    ],
)
def test_bad_values_name_field_value_and_rule(field, value, message):
    with pytest.raises(ConfigError) as err:
        TrainParams(**{field: value})
    assert str(err.value) == message


def test_from_config_coerces_numpy_and_rejects_unknown_keys():
    import numpy as np

    params = TrainParams.from_config({"filters": np.int64(16), "learning_rate": np.float64(0.01),
                                      "batch_norm": np.bool_(False)})
    assert (params.filters, params.learning_rate, params.batch_norm) == (16, 0.01, False)
    assert type(params.filters) is int and type(params.batch_norm) is bool
    with pytest.raises(ConfigError, match="unknown TrainParams key 'filtres'"):
        TrainParams.from_config({"filtres": 16})


def test_block_filters_grow_per_block():
    params = TrainParams(conv_blocks=4, filters=16, filter_growth=1.5)
    assert [params.block_filters(b) for b in range(4)] == [16, 24, 36, 54]


def test_layered_settings_later_layers_win_and_none_means_unset():
    settings = SearchSettings.layered({"num_samples": 5, "grace_period": 2}, {"num_samples": 9, "grace_period": None})
    assert (settings.num_samples, settings.grace_period) == (9, 2)


def test_study_names_are_safe_folder_names():
    SearchSettings(name="quick-2026.v1_a")
    with pytest.raises(ConfigError, match="name is '../x'"):
        SearchSettings(name="../x")


def test_searcher_and_scheduler_choices():
    assert SearchSettings(searcher="random", scheduler="none").scheduler == "none"
    with pytest.raises(ConfigError, match="searcher is 'grid', must be one of 'tpe', 'random'"):
        SearchSettings(searcher="grid")
    assert SearchSettings(scheduler="halving").scheduler == "halving"
    with pytest.raises(ConfigError,
                       match="scheduler is 'bohb', must be one of 'asha', 'halving', 'hyperband', 'i-epoch', 'none'"):
        SearchSettings(scheduler="bohb")


def test_augmentation_is_off_unless_asked_for_and_old_configs_still_load():
    """A configuration written before an option existed trains as it did: the option is off."""
    import json

    from tests.conftest import ROOT

    reference = json.loads((ROOT / "tests" / "data" / "reference_2026-11-21.json").read_text())["params"]
    params = TrainParams.from_config(reference)
    assert params.augment is True
    assert (params.rotation, params.zoom, params.translation, params.contrast, params.brightness,
            params.erasing) == (0,) * 6
    assert {"rotation", "zoom", "translation", "contrast", "brightness", "erasing"} <= set(params.to_dict())


def test_a_time_budget_is_minutes_above_zero_or_none():
    assert SearchSettings().time_budget_min is None
    assert SearchSettings(time_budget_min=35).time_budget_min == 35.0
    with pytest.raises(ConfigError, match="time_budget_min is 0.0, must be > 0"):
        SearchSettings(time_budget_min=0)


def test_xla_with_augmentation_keras_cannot_compile_is_refused_on_tensorflow(monkeypatch):
    """Keras would otherwise train without XLA and say so only in a warning nobody sees in a trial."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert TrainParams(jit_compile=True, flip=True, erasing=0.2).jit_compile  # these compile
    with pytest.raises(ConfigError, match="jit_compile is true, but rotation is 10.0: Keras's random crops"):
        TrainParams(jit_compile=True, rotation=10)
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # where they compile (benchmarks/keras_backend_gpu.py)
    assert TrainParams(jit_compile=True, rotation=10).jit_compile
