"""Typed, validated settings: what one trial trains (TrainParams), which images a step uses
(DataSettings), and how a search runs (SearchSettings).

No Ray, no TensorFlow: these import in milliseconds and test as plain Python.
Every value is checked on construction, and a bad one raises ConfigError with a message
that names the field, its value and the rule ("learning_rate is -1, must be > 0").
The settings' fields carry their own help text (`setting(...)`): the CLI's flags, a space file's
`search:` keys and a study's reproduce command are made from them, so a new setting is one field.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, NamedTuple, Optional

from fashion_tune.errors import UserError


class ConfigError(UserError, ValueError):
    """A setting or hyperparameter with a value outside its rule."""


class Rule(NamedTuple):
    """A field's rule: the test, the words shown when a value fails it, and the allowed values
    when the rule is a list of them (the CLI offers those as choices)."""

    test: Callable[[Any], bool]
    text: str
    choices: tuple = ()


def _positive() -> Rule:
    return Rule(lambda v: v > 0, "must be > 0")


def _at_least(n) -> Rule:
    return Rule(lambda v: v >= n, f"must be >= {n}")


def _one_of(*choices) -> Rule:
    return Rule(lambda v: v in choices, "must be one of " + ", ".join(map(repr, choices)), choices)


def _unit_interval_open() -> Rule:
    return Rule(lambda v: 0 <= v < 1, "must be in [0, 1)")


def setting(default: Any, help: str, *, default_text: Optional[str] = None, in_space: bool = False,
            on_command_line: bool = True, reproduce: bool = True) -> Any:
    """A settings field that says itself what the command line and the space file need to know.

    help: the --help text (and the field's documentation); default_text: what the default means,
    where the value alone does not say (None, ""); in_space: a space file's section for the class
    (`search:`, `retrain:`) may set it; on_command_line: it has a --flag; reproduce: the command
    that reruns a study repeats it (not so for where a study ran: the cluster address).
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "default_text": default_text, "in_space": in_space, "on_command_line": on_command_line,
        "reproduce": reproduce})


def flag_of(name: str) -> str:
    """A field's command-line flag: num_samples -> --num-samples."""
    return "--" + name.replace("_", "-")


def _coerce(cls_name: str, field: dataclasses.Field, value: Any) -> Any:
    """Return value as the field's declared type, or raise ConfigError saying why not."""
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    optional = kind.startswith("Optional[")
    kind = kind.removeprefix("Optional[").removesuffix("]")
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{field.name} is missing ({cls_name} needs a {kind})")
    # numpy scalars (what Optuna and Tune hand back) become plain Python values.
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{field.name} is {value!r}, must be true or false")
    if kind == "int":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{field.name} is {value!r}, must be an integer")
    if kind == "float":
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = float(value)
            if math.isfinite(value):
                return value
        raise ConfigError(f"{field.name} is {value!r}, must be a finite number")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise ConfigError(f"{field.name} is {value!r}, must be a string")
    raise TypeError(f"{cls_name}.{field.name}: unsupported field type {kind}")


class _Validated:
    """Mixin: coerce every field to its type and check it against RULES on construction."""

    RULES: Mapping[str, Rule] = {}

    def __post_init__(self):
        for f in fields(self):
            value = _coerce(type(self).__name__, f, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
            self._check_rule(f.name, value)
        self._check_together()

    def _check_together(self) -> None:
        """Rules that involve more than one field."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def field_type(cls, name: str) -> str:
        kind = {f.name: f.type for f in fields(cls)}[name]
        return kind.removeprefix("Optional[").removesuffix("]")

    @classmethod
    def check_value(cls, name: str, value: Any) -> Any:
        """Validate one field's value on its own; return it coerced to the field's type."""
        field = {f.name: f for f in fields(cls)}[name]
        value = _coerce(cls.__name__, field, value)
        cls._check_rule(name, value)
        return value

    @classmethod
    def _check_rule(cls, name: str, value: Any) -> None:
        rule = cls.RULES.get(name)
        if rule is not None and value is not None and not rule.test(value):
            raise ConfigError(f"{name} is {value!r}, {rule.text}")

    @classmethod
    def space_file_keys(cls) -> tuple[str, ...]:
        """The settings a space file's section for this class may set (the command line overrides them)."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("in_space"))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]):
        """Build from a plain dict (a Tune trial's config, a JSON file); unknown keys are errors."""
        known = set(cls.field_names())
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(
                f"unknown {cls.__name__} key {unknown[0]!r}; known keys: {', '.join(sorted(known))}"
            )
        return cls(**dict(config))

    @classmethod
    def layered(cls, *layers: Mapping[str, Any]):
        """Merge setting layers, later ones winning; a None value means 'not given here'."""
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update({k: v for k, v in layer.items() if v is not None})
        return cls.from_config(merged)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def command_line_fields(cls) -> tuple[dataclasses.Field, ...]:
        """The fields with a --flag, in declaration order."""
        return tuple(f for f in fields(cls) if f.metadata.get("on_command_line"))

    def command_line_args(self) -> list[str]:
        """The flags that give these settings again (None and False values need none)."""
        args = []
        for f in self.command_line_fields():
            value = getattr(self, f.name)
            if not f.metadata["reproduce"] or value is None or value is False:
                continue
            args += [flag_of(f.name)] if value is True else [flag_of(f.name), str(value)]
        return args


@dataclass(frozen=True)
class TrainParams(_Validated):
    """Everything one trial trains: the network's shape and how it is fitted."""

    # --- the network (fashion_tune/model.py) ---
    conv_blocks: int = 2  # conv blocks, each ending in 2x2 pooling (28 -> 14 -> 7 -> 3 -> 1)
    filters: int = 32  # filters of every conv in the first block
    filter_growth: float = 2.0  # each block has this many times the filters of the block before
    kernel_size: int = 3  # square conv kernels: 3 or 5
    convs_per_block: int = 1  # conv layers stacked before each pooling: 1 or 2
    residual: bool = False  # a shortcut adds each block's input to its convs' output (ResNet's basic block)
    batch_norm: bool = True  # batch normalisation after every conv and the dense layer
    pooling: str = "max"  # down-sampling at the end of a block: "max" or "avg"
    conv_dropout: float = 0.0  # dropout rate after each conv block
    # how the last block's maps reach the classifier: "flatten", or "global_average" (one mean per map)
    head: str = "flatten"
    dense_units: int = 128  # units of the hidden dense layer before the classifier; 0: none
    dense_dropout: float = 0.3  # dropout rate before the classifier
    # --- the fitting (fashion_tune/model.py: compile_model; fashion_tune/search/trainable.py) ---
    optimizer: str = "adam"  # "adam", "adamw" (decoupled weight decay) or "sgd" (Nesterov momentum 0.9)
    learning_rate: float = 1e-3  # the optimizer's step size (the peak, under a schedule)
    lr_schedule: str = "constant"  # "constant", or "cosine": decays it to 0 over the run's epochs, step by step
    weight_decay: float = 0.0  # decoupled weight decay; only "adamw" uses it
    batch_size: int = 128  # images per gradient step
    label_smoothing: float = 0.0  # the training targets give this share of probability to the other classes
    # --- augmentation: random changes to the training images only, 0 is off (fashion_tune/model.py) ---
    augment: bool = False  # random shifts (up to 10%) and horizontal flips while training
    flip: bool = False  # random horizontal flips (augment has them too)
    crop_padding: int = 0  # padded random crops: each image moved a whole number of pixels, up to this many, either way
    rotation: float = 0.0  # largest random rotation, in degrees either way
    zoom: float = 0.0  # largest random zoom in or out, a fraction of the size (0.1: about 90% to 110%)
    translation: float = 0.0  # largest random shift, a fraction of the width and height (adds to augment's)
    contrast: float = 0.0  # largest random contrast change: a factor in [1 - c, 1 + c] about the image's mean
    brightness: float = 0.0  # largest random brightness change, added to every pixel (images are in [0, 1])
    erasing: float = 0.0  # probability that an image gets a random rectangle of noise (an occlusion)
    # probability that a training image is shown, each epoch, as a rendered product photo after the
    # photo path's preprocessing (fashion_tune/photo_views.py: rendered once, cached)
    photo_share: float = 0.0
    epochs: int = 10  # the full budget of a trial; ASHA's max_t
    mixed_precision: bool = False  # float16 compute, float32 weights (fast on GPUs with tensor cores)
    jit_compile: bool = False  # compile the training step with XLA
    seed: int = 0  # seeds weights, shuffling and augmentation

    RULES = {
        "conv_blocks": Rule(lambda v: 1 <= v <= 4, "must be 1 to 4 (28x28 images allow four 2x2 poolings)"),
        "filters": _at_least(1),
        "filter_growth": Rule(lambda v: 1 <= v <= 4, "must be 1 to 4"),
        "kernel_size": _one_of(3, 5),
        "convs_per_block": _one_of(1, 2),
        "head": _one_of("flatten", "global_average"),
        "pooling": _one_of("max", "avg"),
        "conv_dropout": _unit_interval_open(),
        "dense_units": _at_least(0),
        "dense_dropout": _unit_interval_open(),
        "optimizer": _one_of("adam", "adamw", "sgd"),
        "learning_rate": _positive(),
        "lr_schedule": _one_of("constant", "cosine"),
        "weight_decay": _at_least(0),
        "batch_size": _at_least(1),
        "label_smoothing": _unit_interval_open(),
        "crop_padding": Rule(lambda v: 0 <= v <= 8, "must be 0 to 8 pixels"),
        "rotation": Rule(lambda v: 0 <= v <= 180, "must be 0 to 180 (degrees either way)"),
        "zoom": _unit_interval_open(),
        "translation": _unit_interval_open(),
        "contrast": _unit_interval_open(),
        "brightness": _unit_interval_open(),
        "erasing": Rule(lambda v: 0 <= v <= 1, "must be 0 to 1 (a probability)"),
        "photo_share": Rule(lambda v: 0 <= v <= 1, "must be 0 to 1 (a probability)"),
        "epochs": _at_least(1),
        "seed": _at_least(0),
    }

    # On TensorFlow, Keras's random crops, shifts, rotations and zooms do not compile with XLA (its
    # image-transform op has none): given jit_compile, Keras trains without it and says so only in
    # a warning (Keras 3.15, 2026-11-24). Under JAX they compile (benchmarks/keras_backend_gpu.py).
    NOT_XLA = ("augment", "crop_padding", "rotation", "zoom", "translation")

    def _check_together(self) -> None:
        if self.jit_compile and os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
            for name in self.NOT_XLA:
                if getattr(self, name):
                    raise ConfigError(xla_conflict(name, getattr(self, name)))

    def block_filters(self, block: int) -> int:
        """Filters of the convs in block `block` (0-based)."""
        return max(1, round(self.filters * self.filter_growth**block))


def xla_conflict(name: str, value: Any) -> str:
    """Why jit_compile cannot go with the augmentation `name` at `value`."""
    return (f"jit_compile is true, but {name} is {value!r}: Keras's random crops, shifts, rotations and zooms do not "
            f"compile with XLA, and Keras would quietly train without it; drop jit_compile or {name}")


@dataclass(frozen=True)
class DataSettings(_Validated):
    """Which images a step trains and validates on (data.prepare)."""

    data_dir: Optional[str] = setting(
        None, "folder with the Fashion-MNIST files (official .gz or Kaggle CSV)",
        default_text="$FASHION_TUNE_DATA, else ~/.keras/datasets/fashion-mnist, else download there")
    subset: Optional[int] = setting(None, "use a stratified subset of N training images (quick studies, tests)",
                                    default_text="all 60,000")
    val_fraction: float = setting(0.1, "share of the training images held out for validation, stratified by class")
    seed: int = setting(0, "seeds the subset and the split (a study sets it to its --seed)", on_command_line=False)

    RULES = {
        "subset": Rule(lambda v: 100 <= v <= 60000, "must be 100 to 60000 (the training set has 60,000 images)"),
        "val_fraction": Rule(lambda v: 0 < v < 0.5, "must be > 0 and < 0.5"),
        "seed": _at_least(0),
    }


# --scheduler: how weak trials are stopped early (search/schedulers.py builds them), and their names in
# what a study prints and writes.
SCHEDULERS = {"asha": "ASHA", "halving": "successive halving", "hyperband": "HyperBand",
              "i-epoch": "the i-epoch cut", "none": None}
# Those that pause a trial at a rung until its peers have reached it.
PAUSING_SCHEDULERS = ("halving", "hyperband")


@dataclass(frozen=True)
class SearchSettings(_Validated):
    """How a study runs: where, how many trials, what each trial may use, how its scheduler prunes.

    The one source of the search options: the CLI's flags, the keys a space file's `search:`
    section may set, and the command that reruns a study are all made from these fields.
    """

    space: str = setting("search_spaces/default.yaml", "search-space YAML: a file, or a shipped space by name (quick)")
    name: str = setting("", "study name; results go to RESULTS_DIR/NAME", default_text="<space>-<timestamp>")
    results_dir: str = setting("results", "where studies live; on a cluster a path every node sees")
    num_samples: int = setting(30, "trials to run", in_space=True)
    max_concurrent: Optional[int] = setting(None, "trials at once; 0: no limit (overrides a space file's)",
                                            default_text="as many as the resources allow",
                                            in_space=True)
    cpus_per_trial: float = setting(1.0, "CPUs per trial, also TensorFlow's threads", in_space=True)
    gpus_per_trial: float = setting(0.0, "GPUs per trial, may be fractional: 0.25 packs four on a GPU", in_space=True)
    grace_period: int = setting(1, "epochs every trial trains before asha, halving or i-epoch may stop it",
                                in_space=True)
    reduction_factor: int = setting(3, "the scheduler keeps the best 1/N of the trials at each rung", in_space=True)
    searcher: str = setting("tpe", "how trials are proposed: Optuna's TPE or random sampling, both seeded",
                            in_space=True)
    scheduler: str = setting("asha", "how weak trials are stopped early: asha (asynchronous), halving (synchronous "
                             "successive halving), hyperband, i-epoch (one cut after --grace-period epochs: the "
                             "baseline), or none (every trial to its full budget)", in_space=True)
    tpe_startup_trials: int = setting(10, "random trials before TPE starts modelling", in_space=True)
    max_failures: int = setting(0, "retries of a failed trial, from its last checkpoint", in_space=True)
    time_budget_min: Optional[float] = setting(
        None, "minutes the study may run, over all its runs (--resume goes on counting): then the trials still "
        "running stop where they are, none is started, and the study ends as finished", default_text="no limit",
        in_space=True)
    seed: int = setting(0, "seeds TPE, the data split and every trial")
    # Where a study ran, not what it is: its reproduce command leaves the address out.
    address: Optional[str] = setting(None, "Ray cluster to join, e.g. auto or ray://head:10001",
                                     default_text="start local Ray", reproduce=False)
    connect_timeout: float = setting(30.0, "seconds to wait for the cluster at --address before giving up",
                                     reproduce=False)
    mixed_precision: bool = setting(False, "every trial computes in mixed float16 (GPUs with tensor cores)")
    jit_compile: bool = setting(False, "every trial compiles its training step with XLA")
    replay: Optional[str] = setting(None, "trials replay the learning curves recorded in this file "
                                    "(benchmarks/record_curves.py) instead of training: the same driver, "
                                    "schedulers and reports, in seconds", default_text="trials train")
    replay_time_scale: Optional[float] = setting(None, "with --replay, each epoch takes its recorded seconds "
                                                 "times this", default_text="0: at once")

    RULES = {
        "replay_time_scale": _at_least(0),
        "name": Rule(
            lambda v: v == "" or (v.translate(str.maketrans("", "", "-_.")).isalnum() and not v.startswith(".")),
            "must use only letters, digits, '-', '_' and '.', and not start with '.'",
        ),
        "num_samples": _at_least(1),
        "max_concurrent": _at_least(0),
        "cpus_per_trial": _positive(),
        "gpus_per_trial": _at_least(0),
        "connect_timeout": _positive(),
        "grace_period": _at_least(1),
        "reduction_factor": _at_least(2),
        "searcher": _one_of("tpe", "random"),
        "scheduler": _one_of(*SCHEDULERS),
        "tpe_startup_trials": _at_least(0),
        "max_failures": _at_least(-1),
        "time_budget_min": _positive(),
        "seed": _at_least(0),
    }


@dataclass(frozen=True)
class RetrainSettings(_Validated):
    """How a study's result becomes the model that ships: retrain's flags, and a space file's
    `retrain:` section (a rule written before the study runs, so the test set decides nothing)."""

    epochs: Optional[int] = setting(None, "epochs to train each model", default_text="the configuration's budget",
                                    in_space=True)
    top: int = setting(1, "retrain the study's K best trials and average them as one model (an ensemble)",
                       in_space=True)
    flip_tta: bool = setting(False, "the saved model averages its answers for each image and its mirror image "
                             "(test-time augmentation: twice the inference compute)", in_space=True)
    calibrate: bool = setting(False, "hold out --holdout of the training images (stratified) and fit on them the "
                              "temperature that calibrates the saved model's confidence and the review threshold "
                              "below which predict and serve say 'unsure', so the test set chooses neither; the "
                              "model trains on the rest", in_space=True)

    RULES = {
        "epochs": _at_least(1),
        "top": _at_least(1),
    }
