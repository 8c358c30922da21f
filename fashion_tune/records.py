"""The JSON records the steps hand each other, each a frozen dataclass that owns its keys.

    StudyRecord   <study>/study.json: how a study was started, its runs and how it ended (search/study.py
                  writes it; results.py, the time budget and --resume read it)
    RetrainRecord <model>/retrain.json: what retrain trained, on what, for how long, and what it
                  calibrated (retrain.py writes it; evaluate and export read it)
    Review        the review threshold: below it an answer goes to a person (chosen by retrain
                  --calibrate on held-out images, else by evaluate on the test images)
    ModelCard     <export>/model_card.json: what a user of an exported model needs (export.py writes
                  it; predict, serve and the page read it)

Each has to_json() and from_json(), and the files have read() and write() here: one writer per file,
and a reader gets typed fields, never a key typed again. A file that is missing a key, has one this
code does not know, or is not JSON is one UserError naming the file and the key. Files written
before these classes existed read unchanged. The study's run clock (its minutes over all its runs,
which the summary and the time budget count) lives with the StudyRecord. No Ray, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from fashion_tune import atomic
from fashion_tune.config import ConfigError, DataSettings, SearchSettings
from fashion_tune.errors import UserError


class _Record:
    """to_json / from_json for a frozen dataclass whose fields are JSON values, settings classes or
    other records (Optional allowed); tuples are JSON lists."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, obj: Any, where: str = ""):
        """Build from parsed JSON; `where` names the file in the error of a missing or unknown key."""
        where = where or cls.__name__
        if not isinstance(obj, dict):
            raise UserError(f"{where}: expected a JSON object, found {type(obj).__name__}")
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - set(known))
        if unknown:
            raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
        values = {}
        for name, f in known.items():
            if name in obj:
                values[name] = _from_json(hints[name], obj[name], f"{where}: {name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise UserError(f"{where}: missing key {name!r}")
        return cls(**values)


def _to_json(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_json()
    if hasattr(value, "to_dict"):  # the settings classes
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    return value


def _from_json(kind: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # Optional[X]
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if typing.get_origin(kind) is tuple:
        kinds = typing.get_args(kind)
        if len(kinds) == 2 and kinds[1] is Ellipsis:  # tuple[X, ...]
            return tuple(_from_json(kinds[0], v, where) for v in value)
        return tuple(_from_json(k, v, where) for k, v in zip(kinds, value))
    if isinstance(kind, type) and issubclass(kind, _Record):
        return kind.from_json(value, where)
    if kind in (SearchSettings, DataSettings):
        try:
            return kind.from_config(value)
        except ConfigError as e:
            raise UserError(f"{where}: {e}") from None
    return value


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); the file is damaged") from None


# ----------------------------------------------------------------------------- a study


@dataclass(frozen=True)
class SpaceRef(_Record):
    """The space file a study ran, as it was then (its copy is the study's space.yaml)."""

    path: str  # as the user named it
    sha256: str  # of the file's text when the study started
    metric: str
    mode: str


# A run of the search command, (start, end) in seconds since the epoch; end is None while it goes on,
# or when it was killed (until --resume closes it).
Run = tuple[float, Optional[float]]


@dataclass(frozen=True)
class StudyRecord(_Record):
    """study.json: how a study was started, so it can be resumed, reported and reproduced, and the
    runs of its search command, so its minutes count the time it ran, not its pauses."""

    name: str
    settings: SearchSettings
    data: DataSettings  # data_dir absolute, so --resume works from any folder
    space: SpaceRef
    command: str  # the command that reruns the study, as the user typed its paths
    started_at: float
    finished_at: Optional[float] = None  # None: not finished (interrupted, or still running)
    runs: tuple[Run, ...] = ()
    wall_s: float = 0.0  # seconds the runs took, together
    cut_by_time_budget: Optional[tuple[str, ...]] = None  # the trials the time budget stopped (None: it ended none)
    # The study's name in optuna.db where it differs from `name`: a study copied or moved under another
    # name keeps its Optuna study (None: the same).
    optuna_study: Optional[str] = None
    # sha256 of what the study is (seal_of): set when it starts, checked at every read, so a hand-edited
    # setting (num_samples, the metric, a searched range) is refused, not silently half-applied. None:
    # a study begun before studies were sealed.
    sealed: Optional[str] = None

    @classmethod
    def read(cls, path: Path) -> "StudyRecord":
        """A study's record (layout.StudyDir.record); a folder without one is not a study, and an
        edited one is refused."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path.parent}: not a study folder (no {path.name})")
        record = cls.from_json(_read_json(path), str(path))
        if record.sealed is not None and record.sealed != record.seal_of():
            raise UserError(f"{path}: its settings, data or space were edited since the study started (they no longer "
                            "match its seal); a study runs and reports with what it began with: restore the file")
        return record

    def write(self, path: Path) -> None:
        atomic.write_json(path, self.to_json())

    def seal_of(self) -> str:
        """sha256 of what makes the study what it is: its settings, data and space, less where it lives
        and runs (name, folders, cluster address), which may change when it is copied or moved."""
        where = {"name", "results_dir", "address", "connect_timeout"}
        what = {"settings": {k: v for k, v in self.settings.to_dict().items() if k not in where},
                "data": {k: v for k, v in self.data.to_dict().items() if k != "data_dir"},
                "space": {k: v for k, v in self.space.to_json().items() if k != "path"},
                "started_at": self.started_at}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()

    def sealed_now(self) -> "StudyRecord":
        return dataclasses.replace(self, sealed=self.seal_of())

    @property
    def optuna_name(self) -> str:
        """The study's name in its optuna.db."""
        return self.optuna_study or self.name

    def moved(self, name: str, results_dir: str | None = None) -> "StudyRecord":
        """The record of this study where it is now: copied or moved under another name (its Optuna
        study keeps its own), to another results folder or bucket (None: where it was)."""
        results_dir = results_dir or self.settings.results_dir
        if (name, results_dir) == (self.name, self.settings.results_dir):
            return self
        return dataclasses.replace(self, name=name,
                                   settings=dataclasses.replace(self.settings, name=name, results_dir=results_dir),
                                   optuna_study=self.optuna_name)

    @property
    def finished(self) -> bool:
        return bool(self.finished_at)

    def running_seconds(self, at: float) -> float:
        """Seconds the study had run by time `at`: since it started, less the pauses between its runs
        (a killed run's end is set when the study is resumed, with_killed_run_closed; a run of an older
        study without an end is taken to have lasted until the next run began)."""
        paused = sum(max(0.0, start - (end or start))
                     for (_, end), (start, _) in zip(self.runs, self.runs[1:]) if start <= at)
        return at - self.started_at - paused

    def budget_spent(self, at: float) -> bool:
        """Whether the study's time budget (none: never) was spent by time `at`."""
        minutes = self.settings.time_budget_min
        return minutes is not None and self.running_seconds(at) >= minutes * 60

    def with_run_started(self, at: float) -> "StudyRecord":
        return dataclasses.replace(self, runs=(*self.runs, (at, None)))

    def with_run_ended(self, at: float) -> "StudyRecord":
        start, _ = self.runs[-1]
        return dataclasses.replace(self, runs=(*self.runs[:-1], (start, at)), wall_s=self.wall_s + at - start)

    def with_killed_run_closed(self, last_report: Optional[float]) -> "StudyRecord":
        """A run the driver did not live to close (killed outright) ended at the last epoch any trial
        reported, not when the study is resumed: the time between was nobody's search."""
        if not self.runs or self.runs[-1][1] is not None:
            return self
        start = self.runs[-1][0]
        return self.with_run_ended(max(start, last_report or start))

    def with_end(self, at: float, cut_by_time_budget: Optional[tuple[str, ...]] = None) -> "StudyRecord":
        return dataclasses.replace(self, finished_at=at, cut_by_time_budget=cut_by_time_budget)


# ----------------------------------------------------------------------------- the review threshold

CHOSEN_ON_TEST = "these test images"  # where evaluate chooses a review threshold when retrain held none out


@dataclass(frozen=True)
class HeldOut(_Record):
    """What a review threshold gave on the held-out images it was chosen on."""

    coverage: float
    accuracy: Optional[float]


@dataclass(frozen=True)
class Review(_Record):
    """The review threshold: answers below `threshold` confidence go to a person; the `coverage` of
    images at or above it were `accuracy` accurate, for a `target_accuracy` (calibration.py)."""

    threshold: float
    coverage: float
    accuracy: Optional[float]
    target_accuracy: float
    chosen_on: str = CHOSEN_ON_TEST  # reviews written before this key existed were all chosen on the test images
    on_held_out: Optional[HeldOut] = None  # where it was chosen elsewhere: what it gave there

    @property
    def chosen_on_test(self) -> bool:
        return self.chosen_on == CHOSEN_ON_TEST


# ----------------------------------------------------------------------------- a retrained model


@dataclass(frozen=True)
class Calibration(_Record):
    """What retrain --calibrate fitted on the images it held out (calibration.py)."""

    temperature: float
    held_out_images: int
    ece_before: float
    ece_after: float
    loss_before: float
    loss_after: float
    review: Optional[Review] = None  # None: no threshold reached the target accuracy there


@dataclass(frozen=True)
class Averaging(_Record):
    """What the saved model averages (averaging.py)."""

    flip_tta: bool
    members: int
    what: str  # in words, for logs and the model card


@dataclass(frozen=True)
class RetrainRecord(_Record):
    """retrain.json: what retrain trained, on what data, for how many epochs and how long."""

    study: Optional[str]
    config: str  # the best_config.json it trained, absolute
    params: dict  # the first member's TrainParams, as trained
    epochs_budget: int
    epochs_run: int
    chosen_epoch: int  # the epoch whose weights it kept (early stopping), else epochs_run
    averaging: Averaging
    members: Optional[tuple[dict, ...]]  # an ensemble's: each member's trial, value, epochs and time
    early_stopping: Optional[dict]  # {"patience", "holdout_fraction"}
    calibration: Optional[Calibration]
    train_images: int
    subset: Optional[int]
    seconds: float
    data: dict  # {"source": the folder read, "checksums": {file: sha256}}
    final: dict  # every metric at the chosen epoch

    @classmethod
    def read(cls, path: Path) -> Optional["RetrainRecord"]:
        """The record at `path`; None where there is none (a model not made by retrain)."""
        return cls.from_json(_read_json(path), str(path)) if Path(path).is_file() else None

    def write(self, path: Path) -> None:
        atomic.write_json(path, self.to_json())


# ----------------------------------------------------------------------------- an exported model


@dataclass(frozen=True)
class TestMetrics(_Record):
    """The headline figures of a model's evaluation, as its card carries them."""

    __test__ = False  # not a pytest class, whatever its name

    accuracy: float
    loss: float
    macro_f1: float
    ece: float
    review: Optional[Review] = None
    robustness: Optional[dict] = None  # {"images_per_tier", "raw_accuracy", "tiers": {name: accuracy}}


@dataclass(frozen=True)
class ModelCard(_Record):
    """model_card.json: what a user of an exported model needs to know."""

    name: str
    created: str  # UTC, ISO 8601
    study: Optional[str]
    source_model: str
    classes: tuple[str, ...]
    input: dict
    output: dict
    preprocessing: tuple[str, ...]
    preprocessing_code: str
    max_input_pixels: int
    parameters: int
    averaging: str
    config: Optional[dict]
    training: dict
    training_data: Optional[dict]
    test_metrics: Optional[TestMetrics]  # None: not evaluated before it was exported
    libraries: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Optional["ModelCard"]:
        """The card at `path`; None where there is none (a bare .keras file given as the model)."""
        return cls.from_json(_read_json(path), str(path)) if Path(path).is_file() else None

    def write(self, path: Path) -> None:
        atomic.write_json(path, self.to_json())

    @property
    def review(self) -> Optional[Review]:
        return self.test_metrics.review if self.test_metrics else None
