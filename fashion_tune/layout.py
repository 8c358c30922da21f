"""Where everything lives: the one owner of the file and folder names fashion_tune reads or writes
(Tune's own, inside a trial folder, are Tune's; a study's records are records.py's to read and write).

    <results_dir>/
      LATEST_EXPORT            the export predict and serve use by default (written by export)
      <study>/                 StudyDir: one search and every step after it
        study.json             how the study was started: for --resume, report and the summary
        space.yaml             the space file as it was when the study started
        trial_<id>/            Tune's folder for each trial: params.json, result.json, error.txt,
                               checkpoint_*/ (CheckpointDir: model.keras, state.json)
        tuner.pkl, experiment_state-*.json, searcher-state-*.pkl   Tune's state, for --resume
        .search.lock           held while a search runs the study
        lost_trials/           trial folders a search killed outright began after Tune's last snapshot
        optuna.db              the Optuna study (SQLite): trials, states, values per epoch (search/searcher.py);
                               optuna.db-wal, -shm beside it while a search has it open (SQLite's log)
        leaderboard.csv, best_config.json, summary.md          (results.py)
        insights/              hyperparameter importances and Optuna's plots (insights.py)
        retrain/               ModelDir: model.keras, history.csv, retrain.json, tensorboard/;
                               backup/ (BackupDir) while a retrain is unfinished
                               (an ensemble: member<i>/ with each member's history.csv, tensorboard/)
        evaluation/            EvaluationDir: metrics.json, report.md, figures, tensorboard/
        lr_find/               lr_find.csv, lr_find.png
      baselines/<preset>/      a ModelDir with its evaluation/ inside
    <export>/                  ExportDir: model.keras, saved_model/, model_card.json, model_card.md

A step given a file rather than a study (`--config FILE`, `--model FILE`) writes beside that file;
nothing here guesses a study folder from a file. Paths only: the one file read or written here is
the LATEST_EXPORT pointer. No Ray, no TensorFlow.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from fashion_tune import atomic
from fashion_tune.errors import UserError

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"  # Keras 3 saves only to .keras names
TENSORBOARD_DIR = "tensorboard"
SAVED_MODEL_DIR = "saved_model"  # an export's TensorFlow SavedModel, for TF Serving
# Tune's own names inside a trial folder.
TRIAL_PARAMS, TRIAL_RESULTS, TRIAL_ERROR = "params.json", "result.json", "error.txt"
# Tune's own state of an experiment (a study's folder): the pickled Tuner, and its snapshots of the run.
TUNER_STATE, EXPERIMENT_STATES, SEARCHER_STATES = "tuner.pkl", "experiment_state-*.json", "searcher-state-*.pkl"
LATEST_EXPORT = "LATEST_EXPORT"
BASELINES_DIR = "baselines"
# The committed model, what a newcomer classifies with right after installing: the reference study's
# best configuration trained on photo views too (results/photos/, issue 32). Present in a source
# checkout (and an editable install), not in a wheel.
REFERENCE_EXPORT = Path(__file__).resolve().parents[1] / "results" / "photos" / "model"
# This machine's cache: working copies of studies in a bucket (storage.py), training images rendered
# as photos (photo_views.py). Anything in it can be deleted; it is made again when needed.
CACHE_ENV = "FASHION_TUNE_CACHE"
PHOTO_VIEWS_DIR = "photo_views"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fashion_tune").expanduser()


def trial_folder_name(trial_id: str) -> str:
    """Short, stable trial folder names: TensorBoard's run names stay readable."""
    return f"trial_{trial_id}"


def _inside(name: str) -> property:
    """A folder class's property: the path of `name` inside its folder."""
    return property(lambda self: self.path / name, doc=f"<folder>/{name}")


@dataclass(frozen=True)
class _ModelFolder:
    """A folder holding a saved Keras model (model.keras, or the file named when one was given)."""

    path: Path
    model_name: str = MODEL_FILE

    @property
    def model(self) -> Path:
        return self.path / self.model_name

    @classmethod
    def of_model_file(cls, file: Path | str):
        """A model given as a file: the folder it lies in is its folder."""
        file = Path(file)
        return cls(file.parent, file.name)


@dataclass(frozen=True)
class EvaluationDir:
    """What `evaluate` writes about one model (evaluate.py)."""

    path: Path
    metrics = _inside("metrics.json")
    report = _inside("report.md")
    classification_report = _inside("classification_report.txt")
    tensorboard = _inside(TENSORBOARD_DIR)

    @staticmethod
    def figure_name(name: str) -> str:
        """A figure's file name, as report.md links it (beside the report)."""
        return f"{name}.png"

    @staticmethod
    def table_name(name: str) -> str:
        return f"{name}.csv"

    def figure(self, name: str) -> Path:
        return self.path / self.figure_name(name)

    def table(self, name: str) -> Path:
        return self.path / self.table_name(name)


@dataclass(frozen=True)
class BackupDir:
    """An unfinished training's state, kept after every epoch so the same command goes on from it
    (training.fit); removed once the model is saved (retrain.py)."""

    path: Path
    history = _inside("history.csv")  # Keras's CSVLogger rows, an epoch each
    best_weights = _inside("best_weights.npz")  # with early stopping: the best epoch's weights
    training_of = _inside("training.json")  # the training it is the state of (retrain checks it)

    def epoch_model(self, epoch: int) -> Path:
        """The whole model (weights and optimizer) after `epoch`."""
        return self.path / f"epoch_{epoch}.keras"

    def epoch_models(self) -> dict[int, Path]:
        """The models the folder holds, by epoch."""
        return {int(p.stem.split("_")[1]): p for p in self.path.glob("epoch_*.keras")}


@dataclass(frozen=True)
class ModelDir(_ModelFolder):
    """A trained model's folder (retrain.py, baselines.py): the model, its training record and curves."""

    evaluation_path: Optional[Path] = None  # where its evaluation goes; None: evaluation/ inside this folder
    record = _inside("retrain.json")
    history = _inside("history.csv")
    tensorboard = _inside(TENSORBOARD_DIR)

    @property
    def backup(self) -> BackupDir:
        return BackupDir(self.path / "backup")

    @property
    def evaluation(self) -> EvaluationDir:
        return EvaluationDir(self.evaluation_path or self.path / "evaluation")

    def member(self, number: int) -> "ModelDir":
        """An ensemble's member number (1 = the study's best trial): its history and curves."""
        return ModelDir(self.path / f"member{number}")


@dataclass(frozen=True)
class ExportDir(_ModelFolder):
    """A model ready to ship (export.py), read by predict and serve."""

    saved_model = _inside(SAVED_MODEL_DIR)
    card_json = _inside("model_card.json")
    card_md = _inside("model_card.md")


@dataclass(frozen=True)
class BaselinesDir:
    """The hand-designed baselines (baselines.py): a ModelDir a preset, and the comparison table."""

    path: Path
    table_csv = _inside("baselines.csv")
    table_md = _inside("baselines.md")

    @classmethod
    def for_command(cls, out: Optional[str], results_dir: str) -> "BaselinesDir":
        """--out, else <results_dir>/baselines."""
        return cls(Path(out) if out else Path(results_dir) / BASELINES_DIR)

    def preset(self, name: str) -> ModelDir:
        return ModelDir(self.path / name)


@dataclass(frozen=True)
class LrFindDir:
    """A learning-rate range test (lr_find.py): the loss at each rate, and its plot."""

    path: Path
    table = _inside("lr_find.csv")
    plot = _inside("lr_find.png")


@dataclass(frozen=True)
class CheckpointDir:
    """One epoch's checkpoint of a trial (search/trainable.py): the whole model and the epoch it ended."""

    path: Path
    model = _inside(MODEL_FILE)
    state = _inside("state.json")


@dataclass(frozen=True)
class StudyDir:
    """One study's folder: the search (search/, results.py) and every step after it."""

    path: Path
    record = _inside("study.json")
    space_copy = _inside("space.yaml")
    leaderboard = _inside("leaderboard.csv")
    best_config = _inside("best_config.json")
    summary = _inside("summary.md")
    optuna_db = _inside("optuna.db")
    insights = _inside("insights")
    lock = _inside(".search.lock")  # held by the search that runs the study (search/resumable.py)
    lost_trials = _inside("lost_trials")  # trials a killed search began after Tune's last snapshot (resumable.py)
    tuner_state = _inside(TUNER_STATE)

    def experiment_states(self) -> list[Path]:
        """Tune's snapshots of the run (what --resume restores from)."""
        return sorted(self.path.glob(EXPERIMENT_STATES))

    @property
    def optuna_storage(self) -> str:
        """Optuna's URL of optuna.db (absolute: Tune pickles the searcher with it)."""
        return f"sqlite:///{self.optuna_db.resolve()}"

    @classmethod
    def named(cls, results_dir: Path | str, name: str) -> "StudyDir":
        return cls(Path(results_dir).expanduser() / name)

    @property
    def lr_find(self) -> LrFindDir:
        return LrFindDir(self.path / "lr_find")

    @property
    def retrained(self) -> ModelDir:
        """The best configuration retrained; its evaluation sits beside it, in the study folder."""
        return ModelDir(self.path / "retrain", evaluation_path=self.path / "evaluation")

    def trial_dirs(self) -> list[Path]:
        """Tune's trial folders (those holding a params.json), sorted by name."""
        if not self.path.is_dir():
            return []
        return sorted(folder for folder in self.path.iterdir() if (folder / TRIAL_PARAMS).is_file())


# ----------------------------------------------------------------------------- what a command may write


def is_study(folder: Path) -> bool:
    return (Path(folder) / "study.json").is_file()


def is_export(folder: Path) -> bool:
    """An export folder (export.py): its model card and model are there."""
    export = ExportDir(Path(folder))
    return export.card_json.is_file() and export.model.is_file()


def check_output(path: Path | str, flag: str, reads: Sequence[Path] = (), replace: bool = False) -> Path:
    """The folder a command is about to write (create, or fill, or with `replace` build anew in place
    of what is there), checked before any work: one UserError naming the flag and the rule when the
    path, or a folder above it, is a file; when it cannot be written (a read-only folder); and, where
    the folder exists, when it is a study, holds studies (the results folder), holds the folder the
    command runs in, or holds what the command `reads` (its source). Returns the path."""
    path = check_writable(path, flag)
    where = path.expanduser().resolve()
    if where.is_dir() and any(where.iterdir()):
        _refuse_what_it_holds(where, path, flag, reads, replace)
    return path


def check_writable(path: Path | str, flag: str) -> Path:
    """A folder a command writes in (or will create): one UserError when it, or a folder above it, is
    a file, or when it cannot be written (a read-only folder). Returns the path."""
    if str(path) == "":
        raise UserError(f"{flag} is empty; give a folder")
    path = Path(path)
    where = path.expanduser().resolve()
    existing = next(p for p in (where, *where.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable (a read-only folder, or another user's)")
    return path


def _refuse_what_it_holds(where: Path, path: Path, flag: str, reads: Sequence[Path], replace: bool) -> None:
    if is_study(where):
        raise UserError(f"{flag} {path}: is a study folder; give a folder of its own")
    studies = [child.name for child in where.iterdir() if child.is_dir() and is_study(child)]
    if studies or (where / LATEST_EXPORT).is_file():
        raise UserError(f"{flag} {path}: holds studies ({', '.join(studies[:3]) or LATEST_EXPORT}); give a folder of "
                        "its own")
    cwd = Path.cwd().resolve()
    if cwd == where or where in cwd.parents:
        raise UserError(f"{flag} {path}: holds the current folder; give another folder")
    for read in reads:
        held = Path(read).expanduser().resolve()
        if held == where or where in held.parents:
            raise UserError(f"{flag} {path}: holds {read}, which this command reads; give another folder")
    if replace and not is_export(where):
        raise UserError(f"{flag} {path}: --force replaces only an earlier export (a folder with {MODEL_FILE} and "
                        "model_card.json); this one is not: give another folder")


# ----------------------------------------------------------------------------- what a command names


def best_config_of(study: Optional[str], config: Optional[str], results_dir: str) -> Path:
    """--study NAME (its best_config.json) or --config FILE."""
    if bool(study) == bool(config):
        raise UserError("give either --study NAME or --config FILE")
    return Path(config) if config else StudyDir.named(results_dir, study).best_config


def retrain_dir_for(study: Optional[str], config: Optional[str], out: Optional[str], results_dir: str) -> ModelDir:
    """Where `retrain` writes: --out, else the study's retrain/, else retrain/ beside --config."""
    if out:
        return ModelDir(Path(out))
    if study:
        return StudyDir.named(results_dir, study).retrained
    return ModelDir(Path(config).parent / "retrain")


def trained_model(study: Optional[str], model: Optional[str], results_dir: str) -> ModelDir:
    """--study NAME (its retrained model) or --model FILE (a .keras file; its record and evaluation
    beside it); refused when the model file is not there."""
    if bool(study) == bool(model):
        raise UserError("give either --study NAME or --model PATH")
    found = StudyDir.named(results_dir, study).retrained if study else ModelDir.of_model_file(model)
    if not found.model.is_file():
        hint = f"; run `fashion-tune retrain --study {study}` first" if study else ""
        raise UserError(f"{found.model}: no such model file{hint}")
    return found


def lr_find_dir_for(study: Optional[str], config: Optional[Path], out: Optional[str], results_dir: str,
                    stamp: str) -> LrFindDir:
    """--out, else the study's lr_find/, else lr_find/ beside --config, else <results_dir>/lr-find-<stamp>."""
    if out:
        return LrFindDir(Path(out))
    if study:
        return StudyDir.named(results_dir, study).lr_find
    if config:
        return LrFindDir(Path(config).parent / "lr_find")
    return LrFindDir(Path(results_dir) / f"lr-find-{stamp}")


def resolve_export(model: Optional[str], results_dir: str) -> ExportDir:
    """The model to classify with: --model (an export folder or a .keras file), else the newest
    export (LATEST_EXPORT), else the committed reference model."""
    if model:
        given = Path(model)
        export = ExportDir(given) if given.is_dir() else ExportDir.of_model_file(given)
        if not export.model.is_file():
            raise UserError(f"--model {model}: no {MODEL_FILE} there (pass an export folder or a .keras file)")
        return export
    pointer = Path(results_dir) / LATEST_EXPORT
    if pointer.is_file():
        export = ExportDir(Path(pointer.read_text().strip()))
        if export.model.is_file():
            return export
        raise UserError(f"{pointer} points at {export.path}, which holds no {MODEL_FILE}; export again or pass --model")
    reference = ExportDir(REFERENCE_EXPORT)
    if reference.model.is_file():
        log.info("no export of your own in %s/: using the reference model %s", results_dir, reference.path)
        return reference
    raise UserError("no exported model found: run `fashion-tune export --study NAME --out DIR`, or pass --model DIR")


def record_latest_export(results_dir: str, export: ExportDir) -> Path:
    """Point <results_dir>/LATEST_EXPORT at `export`: predict and serve use it from now on."""
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    pointer = Path(results_dir) / LATEST_EXPORT
    atomic.write_text(pointer, str(export.path.resolve()) + "\n")
    return pointer
