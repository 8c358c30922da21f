"""A study: Ray Tune runs trials that Optuna's TPE proposes, and ASHA stops the weak ones early.

The driver loads the data once and hands it to every trial through Ray's object store. Each
study lives in <results_dir>/<name>/ (a layout.StudyDir): Tune's trial folders (TensorBoard events, progress.csv,
checkpoints), study.json (how it was started, so it can be resumed and reproduced), a copy of
the space file, and the reports results.py writes when it ends.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import logging
import os
import posixpath
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from fashion_tune import atomic, data, layout, ray_start, results, storage
from fashion_tune.config import (
    SCHEDULERS,
    DataSettings,
    SearchSettings,
    flag_of,
)
from fashion_tune.errors import Interrupted, UserError
from fashion_tune.layout import StudyDir
from fashion_tune.records import SpaceRef, StudyRecord
from fashion_tune.search import checks, resumable
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


def new_study(flags: Mapping[str, Any], data_flags: Mapping[str, Any]) -> StudyDir:
    """Start a study. flags, data_flags: SearchSettings and DataSettings values from the command
    line (None: not given); a setting not given comes from the space file, then the defaults."""
    space = load_space(flags.get("space") or SearchSettings.space)
    settings = SearchSettings.layered(space.search_defaults, flags)
    if not settings.name:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        settings = SearchSettings.layered(settings.to_dict(), {"name": f"{Path(space.path).stem}-{stamp}"})
    # One seed for the study: TPE, the validation split and every trial.
    data_settings = DataSettings.layered(data_flags, {"seed": settings.seed})
    checks.check_settings(settings, space, flags)
    bucket = _bucket(settings.results_dir)
    if not bucket:
        layout.check_writable(settings.results_dir, "--results-dir")
    study = study_dir(settings.results_dir, settings.name)
    _refuse_existing(study, settings.name, bucket)
    # Absolute in the record, so --resume works from any folder; the command keeps what was typed.
    data_dir = str(Path(data_settings.data_dir).expanduser().resolve()) if data_settings.data_dir else None
    replay = str(Path(settings.replay).expanduser().resolve()) if settings.replay else None
    record = StudyRecord(
        name=settings.name, settings=dataclasses.replace(settings, replay=replay),
        data=dataclasses.replace(data_settings, data_dir=data_dir),
        space=SpaceRef(path=space.path, sha256=space.sha256, metric=space.metric, mode=space.mode),
        command=reproduce_command(settings, data_settings), started_at=time.time()).sealed_now()
    curves = _replayed(settings, space, data_flags)
    if curves is None:
        data.locate(data_settings.data_dir)  # a wrong --data-dir: said at once (or the download done first)
    # Ray before the data are read: a cluster that cannot be reached or cannot run a trial says so
    # in seconds, and before anything is written.
    with ray_session(settings):
        trials_read = curves or _prepare_data(data_settings, space)
        try:
            study.path.mkdir(parents=True)
        except FileExistsError:  # another search took the name since the check above
            _refuse_existing(study, settings.name, bucket)
        with resumable.held(study, settings.name):
            atomic.write_text(study.space_copy, space.text)
            record.write(study.record)
            return _run(settings, space, trials_read, study, record, restore=False)


def _refuse_existing(study: StudyDir, name: str, bucket: storage.Bucket | None) -> None:
    where = bucket.study_uri(name) if bucket else study.path
    if (bucket.has_study(name) if bucket else study.path.exists()):
        raise UserError(f"study {name!r} already exists at {where}; choose another --name, or continue it with "
                        f"--resume {name}")
    if bucket and study.path.exists():  # a working copy of a study the bucket no longer has
        shutil.rmtree(study.path)


def _bucket(results_dir: str) -> storage.Bucket | None:
    """The bucket --results-dir names (checked reachable), or None for a folder on this disk."""
    if not storage.in_object_storage(results_dir):
        return None
    bucket = storage.Bucket(results_dir)
    bucket.check_reachable()
    return bucket


# What may accompany --resume: where the study lives, and where it runs now.
RESUME_FLAGS = ("results_dir", "address", "connect_timeout")


def resume_study(name: str, flags: Mapping[str, Any], data_flags: Mapping[str, Any]) -> StudyDir:
    """Continue an interrupted study with its searcher's state, where its folder now is (copied,
    moved or renamed); a finished one is left as it is. What cannot be resumed is said in one line
    before Ray starts (resumable.py).

    A study continues with the settings it started with: any other search or data flag is refused,
    not silently ignored."""
    given = [flag_of(k) for k, v in {**flags, **data_flags}.items() if v is not None and k not in RESUME_FLAGS]
    if given:
        raise UserError(f"--resume {name}: {', '.join(given)} cannot change a study that has begun (it continues "
                        f"with the settings it started with); only {', '.join(map(flag_of, RESUME_FLAGS[:-1]))} and "
                        f"{flag_of(RESUME_FLAGS[-1])} go with --resume")
    results_dir = flags.get("results_dir") or SearchSettings.results_dir
    study, bucket = study_dir(results_dir, name), _bucket(results_dir)
    if bucket:
        if not bucket.has_study(name):
            raise UserError(f"--resume {name}: no study at {bucket.study_uri(name)} (no {study.record.name} there)")
        if not storage.search_running_here(study):  # else resumable.held says who runs it
            bucket.pull(name, tune_state=True)
    if not study.record.is_file():
        raise UserError(f"--resume {name}: no study at {study.path} (no {study.record.name} there)")
    record = StudyRecord.read(study.record)
    if record.finished:
        log.info("study %r already finished; nothing to resume (its reports are in %s)", name, study.path)
        return study
    layout.check_writable(study.path, "--resume")
    restore = resumable.check(study, record, name)
    with resumable.held(study, name):
        pushed = bucket.pusher(name) if bucket else None
        if restore:
            resumable.set_aside_lost_trials(study)
        else:
            resumable.start_afresh(study)
        if pushed:
            pushed.push()  # the bucket too: a lost trial's records out of its folder there
        record = record.moved(name, results_dir)  # the folder's name is the study's name
        where = {k: flags[k] for k in ("address", "connect_timeout") if flags.get(k) is not None}
        settings = dataclasses.replace(record.settings, address=None, **where)
        # The space as it was when the study started, not whatever the original path holds now.
        space = load_space(study.space_copy)
        curves = _replayed(settings, space, {})
        with ray_session(settings):
            trials_read = curves or _prepare_data(record.data, space)
            return _run(settings, space, trials_read, study, record, restore=restore)


def study_dir(results_dir: str, name: str) -> StudyDir:
    """The study's folder on this disk, absolute (Tune's storage path must be): in --results-dir, or
    its working copy when --results-dir is a bucket (storage.py)."""
    return StudyDir.named(Path(storage.results_dir_here(results_dir)).expanduser().resolve(), name)


def tune_storage(results_dir: str) -> tuple[str, Any]:
    """Where Tune stores the study's experiment (its snapshots, the trials' checkpoints): the folder
    on this disk, each file written whole (whole_files.py), or the bucket's path and file system
    (storage.Bucket: bounded waits)."""
    if storage.in_object_storage(results_dir):
        bucket = storage.Bucket(results_dir)
        return bucket.path, bucket.filesystem
    from fashion_tune import whole_files

    return str(Path(results_dir).expanduser().resolve()), whole_files.filesystem()


def reproduce_command(settings: SearchSettings, data_settings: DataSettings) -> str:
    """The exact command line that runs this study again (made from the settings' own fields)."""
    data_args = [] if settings.replay else data_settings.command_line_args()  # replayed trials read no data
    return shlex.join(["python", "-m", "fashion_tune", "search", *settings.command_line_args(), *data_args])


def _replayed(settings: SearchSettings, space: SearchSpace, data_flags: Mapping[str, Any]):
    """With --replay, the recorded curves the trials replay (checked against the space), else None."""
    if not settings.replay:
        return None
    given = [flag_of(k) for k, v in data_flags.items() if v is not None]
    if given:
        raise UserError(f"{', '.join(given)} cannot go with --replay: replayed trials train on nothing (the "
                        f"recording's curves were made on its own data)")
    from fashion_tune.search.replay import Curves

    return Curves.for_space(settings.replay, space)


def _prepare_data(settings: DataSettings, space: SearchSpace) -> data.Splits:
    splits = data.prepare(settings)
    if space.may_turn_on("photo_share"):
        from fashion_tune import photo_views

        splits = photo_views.with_views(splits)
    log.info("data from %s: %s (the 10,000 test images are kept out)", splits.source, splits.describe())
    return splits


def _run(settings: SearchSettings, space: SearchSpace, trials_read, study: StudyDir, record: StudyRecord,
         restore: bool) -> StudyDir:
    """Fit the Tuner (new or restored), then record the end and write the reports."""
    tuner = _tuner(settings, space, trials_read, study, restore)
    record = record.with_killed_run_closed(results.last_report_time(study))
    at_once = f"{settings.max_concurrent} at a time" if settings.max_concurrent else "as many at a time as fit"
    log.info("study %s: %d trials of up to %d epochs, %s, %s%s", settings.name, settings.num_samples,
             space.max_epochs, _strategy(settings), at_once, _budget_left(record))
    log.info("watch it live: tensorboard --logdir %s", study.path)
    # Each run's start and end: the summary's minutes, and the time budget, count the time the
    # study ran, not its pauses.
    record = record.with_run_started(time.time())
    record.write(study.record)
    pushed = _pusher(settings.results_dir, study)
    if pushed:  # the bucket has the study from its start (then Tune's snapshots, StudyUpload)
        pushed.push()
    grid = _fit(tuner, study, settings.results_dir)
    if pushed:  # what Tune wrote in the bucket itself, a failed trial's error.txt, read here too
        pushed.push()
        storage.Bucket(settings.results_dir).pull(study.path.name)
    record = record.with_run_ended(time.time())
    budget_spent = record.budget_spent(record.runs[-1][1])
    cut = _cut_by_time_budget(study, record.optuna_name, space) if budget_spent else None
    ended = _ended_trials(study, record.optuna_name, grid)
    finished = ended >= settings.num_samples or budget_spent
    if finished:
        record = record.with_end(time.time(), cut)
    record.write(study.record)
    if budget_spent and not study.trial_dirs():
        log.warning("the time budget of %g min was spent before any trial started (Ray and the data took that long): "
                    "the study ended with no trial; give it more minutes", settings.time_budget_min)
    if study.trial_dirs() or finished:
        report = results.write_reports(study)
        if report.get("best_value") is not None:
            log.info("best %s%s: %.4f", space.metric, "" if finished else " so far", report["best_value"])
    log.info("%d of %d trials ended (%d failed%s); reports in %s", ended, settings.num_samples,
             sum(1 for r in grid if r.error), f", {len(cut)} cut short by the time budget" if budget_spent else "",
             study.path)
    if pushed:
        pushed.push()
        log.info("study pushed to %s", storage.Bucket(settings.results_dir).study_uri(study.path.name))
    if not finished:
        raise Interrupted(f"study {settings.name!r} stopped before its end; continue it with --resume {settings.name}")
    return study


def _pusher(results_dir: str, study: StudyDir) -> storage.Pushed | None:
    """What pushes the study's working copy to its bucket; None for a study on this disk."""
    return storage.Bucket(results_dir).pusher(study.path.name) if storage.in_object_storage(results_dir) else None


def _tuner(settings: SearchSettings, space: SearchSpace, trials_read, study: StudyDir, restore: bool):
    """The study's Tuner: restored from its folder, or made (and the study's HParams experiment written).
    trials_read: what every trial reads, through Ray's object store: the data (data.Splits), or with
    --replay the recorded curves (replay.Curves)."""
    import optuna
    from ray import tune

    from fashion_tune import hparams

    if settings.replay:
        from fashion_tune.search.replay import replay_trial

        trial = tune.with_parameters(replay_trial, curves=trials_read, time_scale=settings.replay_time_scale)
    else:
        from fashion_tune.search.trainable import train_trial

        trial = tune.with_parameters(train_trial, splits=trials_read)  # one copy in the object store
    trainable = tune.with_resources(trial, {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial})
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress.py's lines are the display
    if restore:  # resumable.check made sure there is Tune state to restore
        from fashion_tune.search.searcher import storage_opened_later

        map_moved_modules()
        storage_path, filesystem = tune_storage(settings.results_dir)
        with storage_opened_later():
            tuner = tune.Tuner.restore(posixpath.join(storage_path, study.path.name), trainable,
                                       resume_unfinished=True, resume_errored=False, storage_filesystem=filesystem)
        _point_at(tuner, study, settings.results_dir)
        return tuner
    hparams.write_experiment(study.path, space)
    return _make_tuner(trainable, settings, space, study)


def _point_at(tuner, study: StudyDir, results_dir: str) -> None:
    """A restored Tuner's searcher and time budget use the study where it now is, not where it was
    begun (a copied or moved study: resumable.py). Tune restores the searcher with the Tuner, as it
    was pickled, and offers no public way in: its internal Tuner's configuration is reached here,
    once; the stopper it restores from its own snapshot of the run (TimeBudget.running)."""
    from fashion_tune.search.study_upload import StudyUpload
    from fashion_tune.search.time_budget import TimeBudget

    tuner._local_tuner._tune_config.search_alg.storage_now = study.optuna_storage  # read by searcher.restore
    TimeBudget.running = study
    for callback in tuner._local_tuner._run_config.callbacks or []:
        if isinstance(callback, StudyUpload):
            callback.point_at(results_dir, study.path.name)


def _fit(tuner, study: StudyDir, results_dir: str):
    """tuner.fit(), with Tune's words on an interrupt, on unstarted trials and on a snapshot it could
    not store said our way (progress.py); a bucket lost mid-study ends it in one line."""
    from fashion_tune.search.progress import (
        InterruptInOurWords,
        SnapshotFailureInOurWords,
        UnreportedTrialsInOurWords,
    )

    our_words = [InterruptInOurWords(study.path.name), UnreportedTrialsInOurWords(), SnapshotFailureInOurWords()]
    for words in our_words:
        logging.getLogger(words.LOGGER).addFilter(words)
    try:
        with _new_trials_stored_here(tune_storage(results_dir)[0], study.path.name):
            return tuner.fit()
    except OSError as e:
        if not storage.in_object_storage(results_dir):
            raise
        raise UserError(f"the study's bucket {results_dir} could not be reached while the study ran "
                        f"({storage.first_line(e)}): the study stopped, and the bucket holds it as of its last saved "
                        f"state; continue it with --resume {study.path.name} --results-dir {results_dir} once the "
                        f"bucket can be reached") from None
    finally:
        for words in our_words:
            logging.getLogger(words.LOGGER).removeFilter(words)


@contextlib.contextmanager
def _new_trials_stored_here(storage_path: str, name: str):
    """Tune restores its trial generator with the experiment as the study was begun, storage
    included (Ray 2.60, SearchGenerator.set_state): the new trials of a copied or moved study would
    be stored in the original's folder (where one is gone, every new trial failed at its first
    checkpoint). While the study runs, a restored generator's storage is this folder, as Tune makes
    it for the trials it restores itself (TuneController._restore_trials)."""
    from ray.tune.search.search_generator import SearchGenerator

    set_state = SearchGenerator.set_state

    def set_state_here(generator, state):
        set_state(generator, state)
        where = copy.copy(generator._experiment.spec["storage"])
        where.storage_fs_path, where.experiment_dir_name = storage_path, name
        generator._experiment.spec["storage"] = where

    SearchGenerator.set_state = set_state_here
    try:
        yield
    finally:
        SearchGenerator.set_state = set_state


def _cut_by_time_budget(study: StudyDir, name: str, space: SearchSpace) -> tuple[str, ...]:
    """The trials the time budget stopped, told to Optuna as pruned (searcher.end_cut_short); a
    trial proposed but never started has no folder and is not among them."""
    from fashion_tune.search.searcher import end_cut_short

    started = {folder.name for folder in study.trial_dirs()}
    return tuple(trial_id for trial_id in end_cut_short(study, name, space.metric, space.max_epochs)
                 if layout.trial_folder_name(trial_id) in started)


def _ended_trials(study: StudyDir, name: str, grid) -> int:
    """How many trials ended: ran their budget, were stopped early, or failed. Only a study whose
    every trial ended is finished; any other stays resumable.

    Interrupted (Ctrl-C), Tune saves its state, fit() returns, and it marks the trials it cut short
    as terminated too; a trial a pausing scheduler stopped while it waited has no result saying
    done. Optuna's ledger knows (searcher.py): a trial ended if it is no longer running there. A
    study begun before studies kept optuna.db: a trial ended if it failed or its last result says done."""
    states = results.optuna_states(study, name)
    if not states:
        return sum(1 for r in grid if r.error or (r.metrics or {}).get("done"))
    return sum(1 for state in states.values() if state != "RUNNING")


def _budget_left(record: StudyRecord) -> str:
    """The time budget, as the start line says it ("" without one)."""
    budget = record.settings.time_budget_min
    if budget is None:
        return ""
    # every earlier run closed (StudyRecord.with_killed_run_closed)
    used = record.running_seconds(record.runs[-1][1]) / 60 if record.runs else 0.0
    if used < 0.05:
        return f", within {budget:g} min"
    return f", within the {max(0.0, budget - used):.1f} min left of its {budget:g}"


def _strategy(settings: SearchSettings) -> str:
    """How trials are proposed and stopped, in a few words."""
    proposer = "TPE (Optuna) proposing" if settings.searcher == "tpe" else "random proposals"
    name = SCHEDULERS[settings.scheduler]
    if settings.scheduler == "asha":
        return f"{proposer}, {name} stopping weak trials from epoch {settings.grace_period}"
    if settings.scheduler == "halving":
        return (f"{proposer}, {name} from epoch {settings.grace_period} (a trial waits at each rung "
                f"for its bracket's peers; the best 1/{settings.reduction_factor} go on)")
    if settings.scheduler == "hyperband":
        return f"{proposer}, {name} brackets (trials wait at each rung for their bracket's peers)"
    if settings.scheduler == "i-epoch":
        return (f"{proposer}, {name} (after epoch {settings.grace_period}, a trial goes on only if it is in the best "
                f"1/{settings.reduction_factor} so far)")
    return f"{proposer}, every trial running its budget"


def _sampler(settings: SearchSettings):
    import optuna

    from fashion_tune.search import tpe

    if settings.searcher == "tpe":
        return tpe.sampler(seed=settings.seed, startup_trials=settings.tpe_startup_trials)
    return optuna.samplers.RandomSampler(seed=settings.seed)  # the same OptunaSearch path: the baseline TPE must beat


def _make_tuner(trainable, settings: SearchSettings, space: SearchSpace, study: StudyDir):
    from ray import tune

    from fashion_tune.search import old_checkpoints, schedulers, study_upload, time_budget, trial_events, trial_records
    from fashion_tune.search.progress import StudyProgress
    from fashion_tune.search.searcher import SoleWriter, StoppedTrialsArePruned

    searcher = StoppedTrialsArePruned(sampler=_sampler(settings), max_epochs=space.max_epochs, study_name=settings.name,
                                      storage=SoleWriter(study.optuna_storage))
    # A trial the scheduler stops reaches Optuna as pruned (searcher.py), ranked below the trials
    # that ran their budget.
    scheduler = schedulers.make(settings.scheduler, settings.grace_period, settings.reduction_factor,
                                space.max_epochs)
    storage_path, filesystem = tune_storage(settings.results_dir)
    return tune.Tuner(
        trainable,
        param_space=param_space(space, settings),
        tune_config=tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=settings.num_samples,
            max_concurrent_trials=settings.max_concurrent or None,  # 0: no limit
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
            # A trial that ends hands its process (TensorFlow imported, data mapped) to the next one
            # of the same resources: no start-up between trials (trainable.py clears Keras's state).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            # Every checkpoint, as far as Tune knows: OldCheckpoints deletes the old ones once no
            # snapshot needs them (Tune's num_to_keep forces a snapshot every few epochs instead).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            # Not TuneConfig(time_budget_s): --resume would start that budget again (time_budget.py).
            stop=time_budget.TimeBudget(settings.time_budget_min, study) if settings.time_budget_min else None,
            verbose=0,  # Tune's display off: StudyProgress tells the study in our words
            callbacks=[StudyProgress(space.metric, space.mode, space.max_epochs, [p.name for p in space.params],
                                     SCHEDULERS[settings.scheduler]),
                       trial_events.TrialScalars(space.max_epochs),  # in place of Tune's own TensorBoard logger
                       # and of its result.json and progress.csv loggers, which could drop a paused trial's epochs
                       trial_records.TrialResults(), trial_records.TrialProgress(),
                       old_checkpoints.OldCheckpoints(),
                       # a study in a bucket: its working copy pushed with each snapshot
                       *([study_upload.StudyUpload(settings.results_dir, settings.name)]
                         if storage.in_object_storage(settings.results_dir) else [])],
        ),
    )


# Tune pickles the searcher, scheduler, stopper, callbacks and trainable with a study, each by its
# module path. A study begun before they moved into this package (fashion_tune 0.1.0 before
# 2026-12-06) names their old paths: resuming it maps each onto its module here first.
MOVED = {f"fashion_tune.{name}": f"fashion_tune.search.{name}"
         for name in ("trainable", "searcher", "schedulers", "time_budget", "progress", "trial_events",
                      "trial_records")}


def map_moved_modules() -> None:
    """Let Tune unpickle a study begun before the move under the old module paths (MOVED); the old
    fashion_tune.search.trial_name is fashion_tune.search's own."""
    for old, new in MOVED.items():
        sys.modules.setdefault(old, importlib.import_module(new))


def trial_name(trial) -> str:
    """Tune's name and folder for a trial (layout.trial_folder_name)."""
    return layout.trial_folder_name(trial.trial_id)


@contextlib.contextmanager
def ray_session(settings: SearchSettings):
    """Join the cluster at settings.address, or start local Ray and check it can run a trial;
    shut down on leaving what this started."""
    import ray

    # Read by Tune in this process when the study runs, whoever started Ray. Tune's newer display
    # prints its experiment box and a TensorBoard hint into /tmp/ray even when silenced
    # (verbose=0); its older one, silenced, prints nothing: progress.py speaks instead.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A failed trial is told in one line by progress.py, its traceback in its error.txt: not Tune's
    # traceback on the terminal too.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    if ray.is_initialized():
        yield
        return
    if settings.address:
        ray_start.join_cluster(settings.address, settings.connect_timeout)
    else:
        ray_start.start_local()
        available = ray.cluster_resources()
        for key, asked in (("CPU", settings.cpus_per_trial), ("GPU", settings.gpus_per_trial)):
            if asked > available.get(key, 0):
                ray.shutdown()
                flag = f"--{key.lower()}s-per-trial"
                raise UserError(f"{flag} is {asked:g}, but this machine offers Ray {available.get(key, 0):g} {key}s")
    try:
        yield
    finally:
        ray.shutdown()
