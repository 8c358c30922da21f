"""A space file's distributions reach Optuna unchanged through Tune's domains (bounds inclusive)."""

import optuna.distributions as od

from fashion_tune.config import SearchSettings
from fashion_tune.search.study import param_space
from fashion_tune.space import load_space
from tests.test_space import GOOD, add_param


def test_each_distribution_reaches_optuna_as_written(write_space):
    from ray.tune.search.optuna import OptunaSearch

    space = load_space(write_space(add_param("filters: {type: int, low: 8, high: 64, log: true}")))
    converted = OptunaSearch.convert_search_space(param_space(space, SearchSettings(seed=7)))
    assert converted == {
        "learning_rate": od.FloatDistribution(1e-4, 1e-2, log=True),
        "conv_blocks": od.IntDistribution(1, 4),  # 4 included, though Tune's randint excludes its upper bound
        "dense_units": od.IntDistribution(32, 256, step=32),
        "conv_dropout": od.FloatDistribution(0.0, 0.4, step=0.1),
        "batch_norm": od.CategoricalDistribution([True, False]),
        "filters": od.IntDistribution(8, 64, log=True),
    }


def test_fixed_values_seed_and_execution_flags(write_space):
    space = load_space(write_space(GOOD))
    config = param_space(space, SearchSettings(seed=7, jit_compile=True))
    assert config["epochs"] == 4 and config["seed"] == 7 and config["jit_compile"] is True
    assert "mixed_precision" not in config  # not asked for: TrainParams' default applies


def test_xla_is_refused_with_a_searched_augmentation_keras_cannot_compile(write_space, monkeypatch):
    import pytest

    from fashion_tune.errors import UserError
    from fashion_tune.search.checks import _check_jit_compile

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    searched = load_space(write_space(add_param("zoom: {type: float, low: 0.0, high: 0.2}")))
    with pytest.raises(UserError, match=r"--jit-compile: jit_compile is true, but zoom is 0.2: .* \(searched\)"):
        _check_jit_compile(SearchSettings(jit_compile=True), searched)
    _check_jit_compile(SearchSettings(), searched)  # no XLA asked for: nothing to refuse
    only_off = load_space(write_space(add_param("crop_padding: {type: categorical, choices: [0]}")))
    _check_jit_compile(SearchSettings(jit_compile=True), only_off)
