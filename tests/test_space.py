"""Every rule of a space file, each broken once: one line naming the file, the key and the rule."""

import pytest

from fashion_tune.space import SpaceError, load_space
from tests.conftest import SPACES

GOOD = """\
metric: val_accuracy
mode: max
fixed:
  epochs: 4
params:
  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
  conv_blocks:   {type: int, low: 1, high: 4}
  dense_units:   {type: int, low: 32, high: 256, step: 32}
  conv_dropout:  {type: float, low: 0.0, high: 0.4, step: 0.1}
  batch_norm:    {type: categorical, choices: [true, false]}
search:
  num_samples: 8
retrain:
  epochs: 12
  flip_tta: true
"""


def spec(space, name):
    """The ParamSpec of a searched parameter."""
    return next(p for p in space.params if p.name == name)


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_spaces_are_valid(path):
    space = load_space(path)
    assert space.params and space.max_epochs >= 1


def test_good_space_parses(write_space):
    space = load_space(write_space(GOOD))
    assert (space.metric, space.mode, space.max_epochs) == ("val_accuracy", "max", 4)
    lr = spec(space, "learning_rate")
    assert (lr.type, lr.low, lr.high, lr.log) == ("float", 1e-4, 1e-2, True)
    units = spec(space, "dense_units")
    assert (units.low, units.high, units.step) == (32, 256, 32)
    assert spec(space, "batch_norm").choices == (True, False)
    assert space.search_defaults == {"num_samples": 8}
    assert space.retrain_defaults == {"epochs": 12, "flip_tta": True}
    assert len(space.sha256) == 64


def add_param(line: str) -> str:
    return GOOD.replace("search:", f"  {line}\nsearch:", 1)


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


BAD = {
    "yaml syntax": ("metric: val_accuracy\nparams: {learning_rate: [1, 2\n",
                    r"line \d+, column \d+: YAML syntax error"),
    "unknown top key": (GOOD + "scheduler: asha\n", r"scheduler: unknown key; allowed here: description, metric"),
    "unknown param": (replace("conv_blocks:", "conv_block:"),
                      r"params\.conv_block: unknown parameter; known: conv_blocks"),
    "unknown dist key": (replace("{type: int, low: 1, high: 4}", "{type: int, low: 1, high: 4, q: 1}"),
                         r"params\.conv_blocks\.q: unknown key; allowed here: type, low, high, step, log"),
    "low >= high": (replace("low: 1, high: 4", "low: 4, high: 4"),
                    r"params\.conv_blocks: low \(4\) must be < high \(4\)"),
    "log with low <= 0": (replace("low: 1.0e-4, high: 1.0e-2, log: true", "low: 0.0, high: 1.0e-2, log: true"),
                          r"params\.learning_rate\.low: 0\.0 must be > 0 with log: true"),
    "empty choices": (replace("choices: [true, false]", "choices: []"),
                      r"params\.batch_norm\.choices: must be a non-empty list"),
    "string bound": (replace("low: 1.0e-4", "low: 1e-4"),
                     r"params\.learning_rate\.low: '1e-4' is a string, not a number: YAML reads exponents without a "
                     r"decimal point as text.*1\.0e-4"),
    "text bound": (replace("high: 4}", "high: four}"), r"params\.conv_blocks\.high: 'four' is not a number"),
    "unknown type": (replace("{type: int, low: 1", "{type: integer, low: 1"),
                     r"params\.conv_blocks\.type: 'integer' is not a distribution type; use float, int or categorical"),
    "missing metric": (replace("metric: val_accuracy\n", ""), r"metric: missing; name the metric"),
    "unknown metric": (replace("metric: val_accuracy", "metric: accuracy"),
                       r"metric: 'accuracy' is not a reported metric"),
    "bad mode": (replace("mode: max", "mode: up"), r"mode: 'up' must be max or min"),
    "bad fixed value": (replace("epochs: 4", "epochs: 0"), r"fixed\.epochs: epochs is 0, must be >= 1"),
    "bound breaks param rule": (replace("low: 1, high: 4", "low: 1, high: 6"),
                                r"params\.conv_blocks\.high: conv_blocks is 6, must be 1 to 4"),
    "choice breaks param rule": (add_param("optimizer: {type: categorical, choices: [adam, lion]}"),
                                 r"params\.optimizer\.choices: optimizer is 'lion', must be one of"),
    "epochs searched": (add_param("epochs: {type: int, low: 1, high: 9}"),
                        r"params\.epochs: epochs cannot be searched \(it is the budget ASHA shares out\); put it under "
                        r"fixed"),
    "seed in space": (replace("epochs: 4", "epochs: 4\n  seed: 3"), r"fixed\.seed: the seed is set with --seed"),
    "fixed and searched": (replace("epochs: 4", "epochs: 4\n  conv_blocks: 2"),
                           r"params\.conv_blocks: conv_blocks is also under fixed"),
    "float for int param": (replace("{type: int, low: 1, high: 4}", "{type: float, low: 1, high: 4}"),
                            r"params\.conv_blocks\.type: float does not fit conv_blocks \(a int\); use type: int"),
    "range for bool": (replace("{type: categorical, choices: [true, false]}", "{type: int, low: 0, high: 1}"),
                       r"params\.batch_norm\.type: int does not fit batch_norm \(a bool\)"),
    "step with log": (replace("log: true}", "log: true, step: 0.001}"),
                      r"params\.learning_rate\.step: cannot be combined with log: true"),
    "unknown search key": (replace("num_samples: 8", "samples: 8"),
                           r"search\.samples: unknown key; allowed here: num_samples"),
    "bad search value": (replace("num_samples: 8", "num_samples: 0"),
                         r"search\.num_samples: num_samples is 0, must be >= 1"),
    "unknown retrain key": (replace("flip_tta: true", "tta: true"),
                            r"retrain\.tta: unknown key; allowed here: epochs, top, flip_tta"),
    "bad retrain value": (replace("epochs: 12", "epochs: 0"), r"retrain\.epochs: epochs is 0, must be >= 1"),
    "retrain not a mapping": (replace("retrain:\n  epochs: 12\n  flip_tta: true", "retrain: 60"),
                              r"retrain: must be a mapping of setting: value"),
    "crops out of range": (add_param("crop_padding: {type: int, low: 0, high: 10}"),
                           r"params\.crop_padding\.high: crop_padding is 10, must be 0 to 8 pixels"),
    "augmentation out of range": (
        add_param("rotation: {type: float, low: 0.0, high: 200.0}"),
        r"params\.rotation\.high: rotation is 200\.0, must be 0 to 180 \(degrees either way\)"),
    "fixed augmentation out of range": (replace("epochs: 4", "epochs: 4\n  erasing: 1.5"),
                                        r"fixed\.erasing: erasing is 1\.5, must be 0 to 1 \(a probability\)"),
    # Optuna would quietly search less than what is written (issue 15): refused.
    "step larger than the range": (replace("low: 32, high: 256, step: 32", "low: 32, high: 64, step: 128"),
                                   r"params\.dense_units\.step: 128 is larger than the range 32 to 64"),
    "step not dividing the range": (replace("low: 32, high: 256, step: 32", "low: 32, high: 100, step: 64"),
                                    r"params\.dense_units\.step: 64 does not divide the range 32 to 100 \(high would "
                                    r"silently become 96\)"),
    "float step not dividing the range": (replace("high: 0.4, step: 0.1", "high: 0.5, step: 0.2"),
                                          r"params\.conv_dropout\.step: 0\.2 does not divide the range 0\.0 to 0\.5"),
    "duplicated key": (replace("  batch_norm:", "  conv_blocks:   {type: int, low: 1, high: 3}\n  batch_norm:"),
                       r"line 10, column 3: key 'conv_blocks' appears twice in the same mapping; give it once"),
    "mode contradicting the metric": (replace("mode: max", "mode: min"),
                                      r"mode: min contradicts val_accuracy, where higher is better; use mode: max"),
    "not a mapping": ("- just\n- a list\n", r"must be a mapping with keys metric"),
    "no params": (GOOD.split("params:")[0], r"params: must be a non-empty mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_space_gets_one_clear_line(write_space, case):
    text, pattern = BAD[case]
    path = write_space(text)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    assert pytest.importorskip("re").search(pattern, message), message


def test_shipped_spaces_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("quick", "quick.yaml", "search_spaces/quick.yaml"):
        assert load_space(name).path == str(SPACES / "quick.yaml")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SpaceError, match=r"nope\.yaml: no such search-space file"):
        load_space(tmp_path / "nope.yaml")


def test_edges_of_ranges(write_space):
    space = load_space(write_space(add_param("filters: {type: categorical, choices: [16, 32, 64]}")))
    lr = spec(space, "learning_rate")
    assert lr.edge(1.05e-4) == "low" and lr.edge(9.6e-3) == "high" and lr.edge(1e-3) is None
    # 1 to 4 is all conv_blocks can be: no edge to widen (the warning would suggest what fails).
    blocks = spec(space, "conv_blocks")
    assert blocks.edge(1) is None and blocks.edge(4) is None
    dropout = spec(space, "conv_dropout")  # 0.0 to 0.4: below 0 is impossible, above 0.4 is not
    assert dropout.edge(0.0) is None and dropout.edge(0.4) == "high"
    units = spec(space, "dense_units")
    assert units.edge(32) == "low" and units.edge(256) == "high" and units.edge(128) is None
    filters = spec(space, "filters")
    assert filters.edge(16) == "low" and filters.edge(64) == "high" and filters.edge(32) is None
    assert spec(space, "batch_norm").edge(True) is None


AUGMENTED = GOOD.replace("fixed:\n", """fixed:
  augment: true
  rotation: 10
  erasing: 0.25
""").replace("search:", """  zoom:       {type: float, low: 0.0, high: 0.2}
  contrast:   {type: float, low: 0.0, high: 0.5, step: 0.1}
  brightness: {type: categorical, choices: [0.0, 0.1, 0.2]}
search:""")


def test_augmentation_options_are_fixed_or_searched_like_any_parameter(write_space):
    from fashion_tune.config import TrainParams

    space = load_space(write_space(AUGMENTED))
    assert space.fixed == {"epochs": 4, "augment": True, "rotation": 10.0, "erasing": 0.25}
    assert type(space.fixed["rotation"]) is float  # coerced to the field's type
    zoom, contrast = spec(space, "zoom"), spec(space, "contrast")
    assert (zoom.type, zoom.low, zoom.high) == ("float", 0.0, 0.2)
    assert (contrast.low, contrast.high, contrast.step) == (0.0, 0.5, 0.1)
    assert spec(space, "brightness").choices == (0.0, 0.1, 0.2)
    # Every value the space can propose makes valid TrainParams: here, each end of each range.
    for end in (0, -1):
        picked = {p.name: (p.choices or (p.low, p.high))[end] for p in space.params}
        params = TrainParams.from_config({**space.fixed, **picked})
        assert params.zoom == picked["zoom"] and params.rotation == 10.0


def test_a_search_renders_photo_views_only_when_a_trial_can_be_shown_them(write_space):
    """search/study.py asks data.prepare for the training images' photo views (minutes of rendering
    the first time) only when the space can give a trial a photo_share above 0."""
    base = "metric: val_accuracy\nmode: max\nfixed:\n  epochs: 2\n"
    searched = "params:\n  learning_rate: {type: float, low: 0.001, high: 0.01}\n"
    cases = {"": False, "  photo_share: 0.25\n": True, "  photo_share: 0.0\n": False}
    for fixed, expected in cases.items():
        assert load_space(write_space(base + fixed + searched)).may_turn_on("photo_share") is expected
    for param, expected in {"photo_share: {type: float, low: 0.0, high: 0.5}": True,
                            "photo_share: {type: categorical, choices: [0.0, 0.5]}": True,
                            "photo_share: {type: categorical, choices: [0.0]}": False}.items():
        assert load_space(write_space(base + searched + f"  {param}\n")).may_turn_on("photo_share") is expected
