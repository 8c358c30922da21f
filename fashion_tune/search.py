"""A study: Ray Tune runs trials that Optuna's TPE proposes, and ASHA stops the weak ones early.

The driver loads the data once and hands it to every trial through Ray's object store. Each
study lives in <results_dir>/<name>/: Tune's trial folders (TensorBoard events, progress.csv,
checkpoints), study.json (how it was started, so it can be resumed and reproduced), a copy of
the space file, and the reports results.py writes when it ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shlex
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from fashion_tune import data, results
from fashion_tune.config import DataSettings, SearchSettings
from fashion_tune.errors import StudyInterrupted, UserError
from fashion_tune.results import SPACE_COPY, STUDY_FILE
from fashion_tune.space import ParamSpec, SearchSpace, load_space

log = logging.getLogger(__name__)


def tune_domain(spec: ParamSpec):
    """The Tune domain for one ParamSpec; OptunaSearch turns it back into the same Optuna
    distribution (Tune's randint/lograndint exclude their upper bound, qrandint includes it)."""
    from ray import tune

    if spec.type == "categorical":
        return tune.choice(list(spec.choices))
    if spec.type == "int":
        if spec.step is not None:
            return tune.qrandint(spec.low, spec.high, spec.step)
        return (tune.lograndint if spec.log else tune.randint)(spec.low, spec.high + 1)
    if spec.step is not None:
        return tune.quniform(spec.low, spec.high, spec.step)
    return (tune.loguniform if spec.log else tune.uniform)(spec.low, spec.high)


def param_space(space: SearchSpace, settings: SearchSettings) -> dict[str, Any]:
    """Tune's param_space: fixed values as constants, searched ones as domains; the study's seed
    and the execution options given on the command line override the space file."""
    execution = {k: True for k in ("mixed_precision", "jit_compile") if getattr(settings, k)}
    domains = {p.name: tune_domain(p) for p in space.params if p.name not in execution}
    return {**space.fixed, **domains, "seed": settings.seed, **execution}


def new_study(flags: Mapping[str, Any], data_settings: DataSettings) -> Path:
    """Start a study. flags: SearchSettings values from the command line (None: not given)."""
    space = load_space(flags.get("space") or SearchSettings.space)
    settings = SearchSettings.layered(space.search_defaults, flags)
    if not settings.name:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        settings = SearchSettings.layered(settings.to_dict(), {"name": f"{Path(space.path).stem}-{stamp}"})
    _check_budget(settings, space)
    study_dir = study_path(settings)
    if study_dir.exists():
        raise UserError(
            f"study {settings.name!r} already exists at {study_dir}; choose another --name, "
            f"or continue it with --resume {settings.name}"
        )
    # One seed for the study: TPE, the validation split and every trial.
    data_settings = dataclasses.replace(data_settings, seed=settings.seed)
    splits = _load_splits(data_settings)
    # Absolute in the record, so --resume works from any folder; the command keeps what was typed.
    data_dir = str(Path(data_settings.data_dir).expanduser().resolve()) if data_settings.data_dir else None
    record = {
        "name": settings.name,
        "settings": settings.to_dict(),
        "data": {**data_settings.to_dict(), "data_dir": data_dir},
        "space": {"path": space.path, "sha256": space.sha256, "metric": space.metric, "mode": space.mode},
        "command": reproduce_command(settings, data_settings),
        "started_at": time.time(),
        "finished_at": None,
    }
    with ray_session(settings):  # before anything is written: a cluster that cannot run it writes nothing
        study_dir.mkdir(parents=True)
        (study_dir / SPACE_COPY).write_text(space.text)
        results.write_json(study_dir / STUDY_FILE, record)
        return _run(settings, space, splits, study_dir, record, restore=False)


def resume_study(name: str, results_dir: str, address: Optional[str] = None) -> Path:
    """Continue an interrupted study with its searcher's state; a finished one is left as it is."""
    study_dir = Path(results_dir).expanduser().resolve() / name
    record_path = study_dir / STUDY_FILE
    if not record_path.is_file():
        raise UserError(f"--resume {name}: no study at {study_dir} (no {STUDY_FILE} there)")
    record = json.loads(record_path.read_text())
    if record.get("finished_at"):
        log.info("study %r already finished; nothing to resume (its reports are in %s)", name, study_dir)
        return study_dir
    settings = SearchSettings.from_config({**record["settings"], "address": address})
    # The space as it was when the study started, not whatever the original path holds now.
    space = load_space(study_dir / SPACE_COPY)
    splits = _load_splits(DataSettings.from_config(record["data"]))
    with ray_session(settings):
        return _run(settings, space, splits, study_dir, record, restore=True)


def study_path(settings: SearchSettings) -> Path:
    return Path(settings.results_dir).expanduser().resolve() / settings.name


def reproduce_command(settings: SearchSettings, data_settings: DataSettings) -> str:
    """The exact command line that runs this study again."""
    args = ["python", "-m", "fashion_tune", "search", "--space", settings.space, "--name", settings.name]
    for key in ("num_samples", "max_concurrent", "cpus_per_trial", "gpus_per_trial", "searcher", "scheduler",
                "grace_period", "reduction_factor", "tpe_startup_trials", "max_failures", "seed"):
        value = getattr(settings, key)
        if value is not None:
            args += ["--" + key.replace("_", "-"), str(value)]
    args += ["--" + key.replace("_", "-") for key in ("mixed_precision", "jit_compile") if getattr(settings, key)]
    if settings.results_dir != SearchSettings.results_dir:
        args += ["--results-dir", settings.results_dir]
    if data_settings.subset is not None:
        args += ["--subset", str(data_settings.subset)]
    args += ["--val-fraction", str(data_settings.val_fraction)]
    if data_settings.data_dir:
        args += ["--data-dir", data_settings.data_dir]
    return shlex.join(args)


def _check_budget(settings: SearchSettings, space: SearchSpace) -> None:
    if settings.grace_period > space.max_epochs:
        raise UserError(
            f"grace_period is {settings.grace_period}, must be <= the trial budget of "
            f"{space.max_epochs} epochs (fixed.epochs in {space.path})"
        )


def _load_splits(data_settings: DataSettings) -> data.Splits:
    dataset = data.load(data_settings.data_dir)
    splits = data.split_for_search(dataset, data_settings.subset, data_settings.val_fraction, data_settings.seed)
    log.info("data from %s: %s (the 10,000 test images are kept out)", dataset.source, splits.describe())
    return splits


def _run(settings, space, splits, study_dir: Path, record: dict, restore: bool) -> Path:
    """Fit the Tuner (new or restored), then record the end and write the reports."""
    from ray import tune

    from fashion_tune.trainable import train_trial

    trainable = tune.with_resources(
        tune.with_parameters(train_trial, splits=splits),  # one copy in the object store
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    if restore:
        if not tune.Tuner.can_restore(str(study_dir)):
            raise UserError(f"--resume {settings.name}: {study_dir} holds no Tune state to resume from")
        tuner = tune.Tuner.restore(str(study_dir), trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = _make_tuner(trainable, settings, space)
    began = time.time()
    grid = tuner.fit()
    record["wall_s"] = record.get("wall_s", 0.0) + time.time() - began
    # Interrupted (Ctrl-C), Tune saves its state and fit() returns: only a study whose every
    # trial ended is finished; any other stays resumable.
    finished = grid.num_terminated + grid.num_errors >= settings.num_samples
    if finished:
        record["finished_at"] = time.time()
    results.write_json(study_dir / STUDY_FILE, record)
    if len(grid):
        report = results.write_reports(study_dir)
        log.info("best %s so far: %s", space.metric, report.get("best_value"))
    log.info("%d of %d trials ended (%d failed); reports in %s",
             grid.num_terminated + grid.num_errors, settings.num_samples, grid.num_errors, study_dir)
    if not finished:
        raise StudyInterrupted(f"study {settings.name!r} stopped before its end; continue it with --resume {settings.name}")
    return study_dir


def _make_tuner(trainable, settings: SearchSettings, space: SearchSpace):
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from fashion_tune.searcher import StoppedTrialsArePruned

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Tune's table is the progress display
    if settings.searcher == "tpe":
        sampler = optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=settings.tpe_startup_trials)
    else:  # the same OptunaSearch path, sampling at random: the baseline TPE must beat
        sampler = optuna.samplers.RandomSampler(seed=settings.seed)
    searcher = StoppedTrialsArePruned(sampler=sampler, max_epochs=space.max_epochs)
    scheduler = None  # Tune's FIFO: every trial trains for its full budget
    if settings.scheduler == "asha":
        # ASHA decides after every reported epoch; a trial it stops reaches Optuna as pruned
        # (searcher.py), ranked below the trials that ran their budget.
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=space.max_epochs,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
        )
    return tune.Tuner(
        trainable,
        param_space=param_space(space, settings),
        tune_config=tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=settings.num_samples,
            max_concurrent_trials=settings.max_concurrent,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=str(Path(settings.results_dir).expanduser().resolve()),
            # The last two epochs: enough to resume. Tune snapshots its own state whenever a trial
            # has saved num_to_keep checkpoints, so 1 would mean a snapshot after every epoch.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        ),
    )


def trial_name(trial) -> str:
    """Short, stable trial names: TensorBoard run names and folder names stay readable."""
    return f"trial_{trial.trial_id}"


@contextlib.contextmanager
def ray_session(settings: SearchSettings):
    """Join the cluster at settings.address, or start local Ray and check it can run a trial;
    shut down on leaving what this started."""
    import ray

    if ray.is_initialized():
        yield
        return
    # Trials import TensorFlow; keep its C++ start-up chatter out of the progress display.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Tune warns when it snapshots its state often; with a checkpoint every epoch, it does, by design.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if settings.address:
        ray.init(address=settings.address, logging_level=logging.WARNING)
    else:
        # "local": always a new Ray of our own, never a cluster someone left running here.
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
        available = ray.cluster_resources()
        for key, asked in (("CPU", settings.cpus_per_trial), ("GPU", settings.gpus_per_trial)):
            if asked > available.get(key, 0):
                ray.shutdown()
                flag = f"--{key.lower()}s-per-trial"
                raise UserError(f"{flag} is {asked}, but this machine offers Ray {available.get(key, 0):g} {key}s")
    try:
        yield
    finally:
        ray.shutdown()
