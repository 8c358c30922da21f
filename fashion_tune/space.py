"""Search-space files: YAML -> a validated SearchSpace.

A space file says what is searched and what is held fixed, in Optuna's distribution vocabulary:

    metric: val_accuracy
    mode: max
    fixed:  {epochs: 10}
    params:
      learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      conv_blocks:   {type: int, low: 1, high: 4}
      batch_norm:    {type: categorical, choices: [true, false]}
    search: {num_samples: 20, grace_period: 1, reduction_factor: 3}   # optional defaults
    retrain: {epochs: 60, flip_tta: true}   # optional: how the best becomes the shipped model

Everything is checked here, before Ray starts, and every mistake is one line naming the file,
the key and the rule. No Ray and no TensorFlow: search/study.py maps a SearchSpace onto Tune domains.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from fashion_tune.config import ConfigError, RetrainSettings, SearchSettings, TrainParams
from fashion_tune.errors import UserError

# Metrics a trial reports after every epoch, with the direction that is better.
METRICS = {"val_accuracy": "max", "val_loss": "min", "train_accuracy": "max", "train_loss": "min"}
TOP_KEYS = ("description", "metric", "mode", "fixed", "params", "search", "retrain")
DISTRIBUTION_KEYS = {
    "float": ("type", "low", "high", "step", "log"),
    "int": ("type", "low", "high", "step", "log"),
    "categorical": ("type", "choices"),
}
# The budget of every trial: ASHA's max_t, so it is held fixed.
FIXED_ONLY = ("epochs",)
# The spaces that come with the project; `--space quick` and the default find them from any folder.
SHIPPED_SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


class SpaceError(UserError, ValueError):
    """A search-space file that breaks a rule."""


@dataclass(frozen=True)
class ParamSpec:
    """One searched hyperparameter: an Optuna distribution."""

    name: str  # a TrainParams field
    type: str  # "float", "int" or "categorical"
    low: Optional[float] = None  # lower bound, inclusive (float, int)
    high: Optional[float] = None  # upper bound, inclusive (float, int)
    step: Optional[float] = None  # grid step from low (float, int); None: continuous / every integer
    log: bool = False  # sample uniformly in log space (float, int)
    choices: tuple = ()  # the values to choose from (categorical)

    def edge(self, value: Any) -> Optional[str]:
        """'low' or 'high' when value sits at the edge of this range (the tuning playbook's
        warning that the best value may lie outside it) and the range could be widened there
        (conv_blocks at 1 cannot go lower), else None."""
        side = self._side(value)
        return side if side and self._widenable(side) else None

    def _widenable(self, side: str) -> bool:
        """Whether a value a little beyond this edge is still legal for the hyperparameter."""
        if self.type == "categorical":
            values = [c for c in self.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        else:
            values = [self.low, self.high]
        is_int = all(isinstance(v, int) for v in values)
        lo, hi = min(values), max(values)
        # The smallest widening: one integer, or 1% of the range (of its logarithm with log: true).
        if is_int:
            beyond = lo - 1 if side == "low" else hi + 1
        elif self.log:
            beyond = lo * (lo / hi) ** 0.01 if side == "low" else hi * (hi / lo) ** 0.01
        else:
            beyond = lo - 0.01 * (hi - lo) if side == "low" else hi + 0.01 * (hi - lo)
        try:
            TrainParams.check_value(self.name, beyond)
        except ConfigError:
            return False
        return True

    def _side(self, value: Any) -> Optional[str]:
        if self.type == "categorical":
            numeric = [c for c in self.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
            if len(numeric) < 3 or len(numeric) != len(self.choices) or value not in numeric:
                return None
            return "low" if value == min(numeric) else "high" if value == max(numeric) else None
        scale = math.log if self.log else (lambda v: v)
        lo, hi, v = scale(self.low), scale(self.high), scale(value)
        margin = 0.05 * (hi - lo)
        if self.type == "int" and self.high - self.low < 20:
            margin = 0  # few integers: only the end values themselves count as edges
        if v <= lo + margin:
            return "low"
        if v >= hi - margin:
            return "high"
        return None


@dataclass(frozen=True)
class SearchSpace:
    """A validated space file."""

    path: str  # the file it was read from
    sha256: str  # hash of the file's bytes, recorded in every study's summary
    text: str  # the file itself, copied into the study folder
    metric: str  # what trials are ranked by, one of METRICS
    mode: str  # "max" or "min"
    fixed: dict  # TrainParams values held fixed
    params: tuple  # ParamSpec for each searched value
    search_defaults: dict  # SearchSettings defaults from the file's `search:` section
    retrain_defaults: dict  # RetrainSettings defaults from its `retrain:` section (best_config.json carries them)
    description: str = ""

    @property
    def max_epochs(self) -> int:
        """The full budget of a trial: ASHA's max_t."""
        return self.fixed.get("epochs", TrainParams().epochs)

    def may_turn_on(self, name: str) -> bool:
        """Whether a trial of this space can get a non-zero `name` (a TrainParams field whose default is off)."""
        spec = next((p for p in self.params if p.name == name), None)
        if spec is None:
            return bool(self.fixed.get(name))
        return any(spec.choices) if spec.type == "categorical" else bool(spec.low or spec.high)


class DuplicateKey(yaml.constructor.ConstructorError):
    """A key given twice in one mapping."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a repeated key is an error: PyYAML keeps the last
    silently, so half of what the user wrote would be ignored."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key: the base loader reports it
            if key in seen:
                raise DuplicateKey(None, None, f"key {key!r} appears twice in the same mapping; give it once",
                                   key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def resolve_space_path(name: str | Path) -> Path:
    """The file as given if it exists, else the shipped space of that name (quick, quick.yaml,
    search_spaces/quick.yaml), else the path as given (load_space then says it is missing)."""
    path = Path(name)
    if path.exists():
        return path
    for candidate in (SHIPPED_SPACES / path.name, SHIPPED_SPACES / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    return path


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space file; raise SpaceError naming the file, key and rule."""
    path = resolve_space_path(path)
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpaceError(f"{where}: no such search-space file") from None
    except OSError as e:
        raise SpaceError(f"{where}: cannot read it ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
        doc = yaml.load(text, Loader=_UniqueKeyLoader)
    except UnicodeDecodeError:
        raise SpaceError(f"{where}: not a UTF-8 text file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        kind = "" if isinstance(e, DuplicateKey) else "YAML syntax error: "
        raise SpaceError(f"{where}: {at}{kind}{problem}") from None
    return parse_space(doc, where, text, hashlib.sha256(raw).hexdigest())


def parse_space(doc: Any, where: str, text: str = "", sha256: str = "") -> SearchSpace:
    """Validate an already-parsed space document."""

    def fail(key: str, rule: str):
        raise SpaceError(f"{where}: {key}: {rule}")

    if not isinstance(doc, dict):
        raise SpaceError(f"{where}: must be a mapping with keys metric, mode, fixed, params")
    _no_unknown_keys(doc, TOP_KEYS, "", fail)
    metric, mode = _parse_metric(doc, fail)
    fixed = _parse_fixed(doc.get("fixed"), fail)
    return SearchSpace(
        path=where,
        sha256=sha256,
        text=text,
        metric=metric,
        mode=mode,
        fixed=fixed,
        params=_parse_params(doc.get("params"), fixed, fail),
        search_defaults=_parse_settings("search", doc.get("search"), SearchSettings, fail),
        retrain_defaults=_parse_settings("retrain", doc.get("retrain"), RetrainSettings, fail),
        description=str(doc.get("description", "")),
    )


def _parse_metric(doc: dict, fail) -> tuple[str, str]:
    metric = doc.get("metric")
    if metric is None:
        fail("metric", f"missing; name the metric to rank trials by: {', '.join(METRICS)}")
    if metric not in METRICS:
        fail("metric", f"{metric!r} is not a reported metric; use one of {', '.join(METRICS)}")
    mode = doc.get("mode", METRICS[metric])
    if mode not in ("max", "min"):
        fail("mode", f"{mode!r} must be max or min")
    if mode != METRICS[metric]:
        better = "higher" if METRICS[metric] == "max" else "lower"
        fail("mode", f"{mode} contradicts {metric}, where {better} is better; use mode: {METRICS[metric]}, or leave "
             "mode out")
    return metric, mode


def _parse_fixed(fixed: Any, fail) -> dict:
    fixed = fixed or {}
    if not isinstance(fixed, dict):
        fail("fixed", "must be a mapping of parameter: value")
    checked = {}
    for name, value in fixed.items():
        _known_param(name, f"fixed.{name}", fail)
        checked[name] = _check_value(name, value, f"fixed.{name}", fail)
    return checked


def _parse_params(params: Any, fixed: dict, fail) -> tuple[ParamSpec, ...]:
    if not isinstance(params, dict) or not params:
        fail("params", "must be a non-empty mapping of parameter: distribution")
    specs = []
    for name, dist in params.items():
        key = f"params.{name}"
        _known_param(name, key, fail)
        if name in FIXED_ONLY:
            fail(key, f"{name} cannot be searched (it is the budget ASHA shares out); put it under fixed")
        if name in fixed:
            fail(key, f"{name} is also under fixed; a parameter is either fixed or searched")
        specs.append(_parse_distribution(name, dist, key, fail))
    return tuple(specs)


def _parse_settings(section: str, values: Any, cls, fail) -> dict:
    """A settings section (`search:`, `retrain:`): defaults for the fields of cls a space file may set."""
    values = values or {}
    if not isinstance(values, dict):
        fail(section, "must be a mapping of setting: value")
    _no_unknown_keys(values, cls.space_file_keys(), f"{section}.", fail)
    for name, value in values.items():
        try:
            cls.check_value(name, value)
        except ConfigError as e:
            fail(f"{section}.{name}", str(e))
    return dict(values)


def _no_unknown_keys(mapping: dict, allowed, prefix: str, fail) -> None:
    for key in mapping:
        if key not in allowed:
            fail(f"{prefix}{key}", f"unknown key; allowed here: {', '.join(allowed)}")


def _known_param(name: str, key: str, fail) -> None:
    if name == "seed":
        fail(key, "the seed is set with --seed, not in the space file")
    if name not in TrainParams.field_names():
        fail(key, f"unknown parameter; known: {', '.join(TrainParams.field_names())}")


def _check_value(name: str, value: Any, key: str, fail) -> Any:
    """Check a value against the TrainParams rule for `name`."""
    if isinstance(value, str) and _looks_numeric(value) and TrainParams.field_type(name) != "str":
        fail(key, _yaml_number_hint(value))
    try:
        return TrainParams.check_value(name, value)
    except ConfigError as e:
        fail(key, str(e))


def _parse_distribution(name: str, dist: Any, key: str, fail) -> ParamSpec:
    if not isinstance(dist, dict):
        fail(key, "must be a mapping such as {type: float, low: 0.0, high: 0.5}")
    kind = dist.get("type")
    if kind not in DISTRIBUTION_KEYS:
        fail(f"{key}.type", f"{kind!r} is not a distribution type; use float, int or categorical")
    _no_unknown_keys(dist, DISTRIBUTION_KEYS[kind], f"{key}.", fail)
    field_type = TrainParams.field_type(name)

    if kind == "categorical":
        choices = dist.get("choices")
        if not isinstance(choices, list) or not choices:
            fail(f"{key}.choices", "must be a non-empty list")
        if len(set(map(repr, choices))) != len(choices):
            fail(f"{key}.choices", "has a repeated value")
        checked = tuple(_check_value(name, c, f"{key}.choices", fail) for c in choices)
        return ParamSpec(name=name, type=kind, choices=checked)

    if field_type not in ("int", "float") or (kind == "float" and field_type == "int"):
        fail(f"{key}.type", f"{kind} does not fit {name} (a {field_type}); use "
             + ("type: int" if field_type == "int" else "type: categorical with choices"))
    _check_bounds(dist, kind, key, fail)
    low, high = dist["low"], dist["high"]
    if low >= high:
        fail(key, f"low ({low}) must be < high ({high})")
    log = dist.get("log", False)
    if not isinstance(log, bool):
        fail(f"{key}.log", f"{log!r} must be true or false")
    if log and low <= 0:
        fail(f"{key}.low", f"{low} must be > 0 with log: true")
    step = dist.get("step")
    if step is not None:
        _check_step(step, kind, log, key, fail)
        _check_step_fits(low, high, step, key, fail)
    for bound, value in (("low", low), ("high", high)):
        _check_value(name, value, f"{key}.{bound}", fail)
    as_type = int if kind == "int" else float
    return ParamSpec(
        name=name,
        type=kind,
        low=as_type(low),
        high=as_type(high),
        step=None if step is None else as_type(step),
        log=log,
    )


def _check_bounds(dist: dict, kind: str, key: str, fail) -> None:
    """low and high are there, and are numbers of the distribution's kind."""
    for bound in ("low", "high"):
        if bound not in dist:
            fail(f"{key}.{bound}", f"missing; a {kind} distribution needs low and high")
        value = dist[bound]
        if isinstance(value, str):
            fail(f"{key}.{bound}", _yaml_number_hint(value) if _looks_numeric(value) else f"{value!r} is not a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(f"{key}.{bound}", f"{value!r} is not a number")
        if kind == "int" and not float(value).is_integer():
            fail(f"{key}.{bound}", f"{value!r} must be an integer for an int distribution")


def _check_step(step: Any, kind: str, log: bool, key: str, fail) -> None:
    if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
        fail(f"{key}.step", f"{step!r} must be a number > 0")
    if log:
        fail(f"{key}.step", "cannot be combined with log: true (Optuna samples a log range continuously)")
    if kind == "int" and not float(step).is_integer():
        fail(f"{key}.step", f"{step!r} must be an integer for an int distribution")


def _check_step_fits(low, high, step, key: str, fail) -> None:
    """Optuna quietly shortens a range whose width is not a multiple of its step ([32, 100] step 64
    becomes [32, 96]; step 128 on [32, 64] leaves only 32): refused, so what is typed is searched."""
    steps = (high - low) / step
    if steps < 1:
        fail(f"{key}.step", f"{step} is larger than the range {low} to {high}; the only value would be {low}")
    if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
        top = low + math.floor(steps) * step
        fail(f"{key}.step", f"{step} does not divide the range {low} to {high} (high would silently become "
             f"{top:g}); make high - low a multiple of step")


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _yaml_number_hint(text: str) -> str:
    return (
        f"{text!r} is a string, not a number: YAML reads exponents without a decimal point as text; "
        f"write it with one (e.g. 1.0e-4 for 1e-4)"
    )
