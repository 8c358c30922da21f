"""Typed, validated settings: what one trial trains (TrainParams) and how a search runs.

No Ray, no TensorFlow: these import in milliseconds and test as plain Python.
Every value is checked on construction, and a bad one raises ConfigError with a message
that names the field, its value and the rule ("learning_rate is -1, must be > 0").
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Optional

from fashion_tune.errors import UserError


class ConfigError(UserError, ValueError):
    """A setting or hyperparameter with a value outside its rule."""


# name -> (test, rule shown when the test fails)
Rule = tuple[Callable[[Any], bool], str]


def _positive(v) -> bool:
    return v > 0


def _at_least(n) -> Rule:
    return (lambda v: v >= n, f"must be >= {n}")


def _one_of(*choices) -> Rule:
    return (lambda v: v in choices, "must be one of " + ", ".join(map(repr, choices)))


def _unit_interval_open() -> Rule:
    return (lambda v: 0 <= v < 1, "must be in [0, 1)")


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
            rule = self.RULES.get(f.name)
            if rule is not None and value is not None and not rule[0](value):
                raise ConfigError(f"{f.name} is {value!r}, {rule[1]}")
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
        rule = cls.RULES.get(name)
        if rule is not None and value is not None and not rule[0](value):
            raise ConfigError(f"{name} is {value!r}, {rule[1]}")
        return value

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainParams(_Validated):
    """Everything one trial trains: the network's shape and how it is fitted."""

    # --- the network (fashion_tune/model.py) ---
    conv_blocks: int = 2  # conv blocks, each ending in 2x2 pooling (28 -> 14 -> 7 -> 3 -> 1)
    filters: int = 32  # filters of every conv in the first block
    filter_growth: float = 2.0  # each block has this many times the filters of the block before
    kernel_size: int = 3  # square conv kernels: 3 or 5
    convs_per_block: int = 1  # conv layers stacked before each pooling: 1 or 2
    batch_norm: bool = True  # batch normalisation after every conv and the dense layer
    pooling: str = "max"  # down-sampling at the end of a block: "max" or "avg"
    conv_dropout: float = 0.0  # dropout rate after each conv block
    dense_units: int = 128  # units of the hidden dense layer before the classifier
    dense_dropout: float = 0.3  # dropout rate after the hidden dense layer
    # --- the fitting (fashion_tune/model.py: compile_model; fashion_tune/trainable.py) ---
    optimizer: str = "adam"  # "adam", "adamw" (decoupled weight decay) or "sgd" (Nesterov momentum 0.9)
    learning_rate: float = 1e-3  # the optimizer's step size (the peak, under a schedule)
    lr_schedule: str = "constant"  # "constant", or "cosine": decays it to 0 over the run's epochs, step by step
    weight_decay: float = 0.0  # decoupled weight decay; only "adamw" uses it
    batch_size: int = 128  # images per gradient step
    augment: bool = False  # random shifts (up to 10%) and horizontal flips while training
    epochs: int = 10  # the full budget of a trial; ASHA's max_t
    mixed_precision: bool = False  # float16 compute, float32 weights (fast on GPUs with tensor cores)
    jit_compile: bool = False  # compile the training step with XLA
    seed: int = 0  # seeds weights, shuffling and augmentation

    RULES = {
        "conv_blocks": (lambda v: 1 <= v <= 4, "must be 1 to 4 (28x28 images allow four 2x2 poolings)"),
        "filters": _at_least(1),
        "filter_growth": (lambda v: 1 <= v <= 4, "must be 1 to 4"),
        "kernel_size": _one_of(3, 5),
        "convs_per_block": _one_of(1, 2),
        "pooling": _one_of("max", "avg"),
        "conv_dropout": _unit_interval_open(),
        "dense_units": _at_least(1),
        "dense_dropout": _unit_interval_open(),
        "optimizer": _one_of("adam", "adamw", "sgd"),
        "learning_rate": (_positive, "must be > 0"),
        "lr_schedule": _one_of("constant", "cosine"),
        "weight_decay": _at_least(0),
        "batch_size": _at_least(1),
        "epochs": _at_least(1),
        "seed": _at_least(0),
    }

    def block_filters(self, block: int) -> int:
        """Filters of the convs in block `block` (0-based)."""
        return max(1, round(self.filters * self.filter_growth**block))


@dataclass(frozen=True)
class DataSettings(_Validated):
    """Which images a search trains and validates on."""

    data_dir: Optional[str] = None  # folder with the official .gz files or Kaggle CSVs; None: look in the usual places
    subset: Optional[int] = None  # use a stratified subset of this many training images (quick studies, tests)
    val_fraction: float = 0.1  # share of the training images held out for validation, stratified by class
    seed: int = 0  # seeds the subset and the split (a study sets it to its --seed)

    RULES = {
        "subset": (lambda v: 100 <= v <= 60000, "must be 100 to 60000 (the training set has 60,000 images)"),
        "val_fraction": (lambda v: 0 < v < 0.5, "must be > 0 and < 0.5"),
        "seed": _at_least(0),
    }


@dataclass(frozen=True)
class SearchSettings(_Validated):
    """How a study runs: where, how many trials, what each trial may use, how ASHA prunes."""

    space: str = "search_spaces/default.yaml"  # the search-space YAML
    name: str = ""  # study name: its results live in <results_dir>/<name>/
    results_dir: str = "results"  # where studies live; on a cluster a path every node sees, or s3://...
    num_samples: int = 30  # trials to run
    max_concurrent: Optional[int] = None  # trials running at once; None: as many as the resources allow
    cpus_per_trial: float = 1.0  # CPUs reserved per trial; TensorFlow gets this many threads
    gpus_per_trial: float = 0.0  # GPUs per trial; 0.25 packs four trials on one GPU
    grace_period: int = 1  # epochs every trial trains before ASHA may stop it
    reduction_factor: int = 3  # ASHA keeps the top 1/reduction_factor at each rung
    searcher: str = "tpe"  # "tpe" (Optuna's TPE) or "random" (Optuna's RandomSampler), both seeded
    scheduler: str = "asha"  # "asha" stops weak trials early; "none" trains every trial for its full budget
    tpe_startup_trials: int = 10  # random trials before TPE starts modelling
    max_failures: int = 0  # retries of a failed trial, from its last checkpoint
    seed: int = 0  # seeds TPE, the data split and every trial
    address: Optional[str] = None  # Ray cluster to join ("auto", "ray://host:10001"); None: start local Ray
    mixed_precision: bool = False  # every trial computes in float16 (TrainParams.mixed_precision)
    jit_compile: bool = False  # every trial compiles its training step with XLA (TrainParams.jit_compile)

    RULES = {
        "name": (
            lambda v: v == "" or (v.replace("-", "").replace("_", "").replace(".", "").isalnum() and not v.startswith(".")),
            "must use only letters, digits, '-', '_' and '.', and not start with '.'",
        ),
        "num_samples": _at_least(1),
        "max_concurrent": _at_least(1),
        "cpus_per_trial": (_positive, "must be > 0"),
        "gpus_per_trial": _at_least(0),
        "grace_period": _at_least(1),
        "reduction_factor": _at_least(2),
        "searcher": _one_of("tpe", "random"),
        "scheduler": _one_of("asha", "none"),
        "tpe_startup_trials": _at_least(0),
        "max_failures": _at_least(-1),
        "seed": _at_least(0),
    }

    @classmethod
    def layered(cls, *layers: Mapping[str, Any]) -> "SearchSettings":
        """Merge setting layers, later ones winning; a None value means 'not given here'."""
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update({k: v for k, v in layer.items() if v is not None})
        return cls.from_config(merged)
