"""The searcher: Ray Tune's OptunaSearch, telling Optuna which trials the scheduler stopped early.

Ray's OptunaSearch tells Optuna that a trial its scheduler (ASHA, say) stopped after 1 epoch is *complete*, with its
1-epoch accuracy as its final value. TPE then compares that value with the 9-epoch values of the
trials that ran their budget, and learns to prefer models that score well after one epoch
(small, fast starters) over models that end best. Measured on quick.yaml, 24 trials, budget 9:
TPE + ASHA settled on 1-block, 16-filter models and its best trial scored 1.6 points below TPE
without early stopping (results/reference/benchmarks.md, "Search efficiency").

Here a trial that ended before its budget without an error is told to Optuna as *pruned*, which
is how Optuna's own pruners report it: TPE ranks pruned trials below every completed one, by how
far they got and then by their last value (optuna.samplers.TPESampler, `_split_trials`).

The Optuna study lives in SQLite (<study>/optuna.db, Optuna's RDBStorage), so Optuna's own tools
read it (`optuna-dashboard sqlite:///results/<study>/optuna.db`): each trial carries its Tune trial
id as the user attribute `trial_id`, its validation value per epoch as intermediate values, and the
state our leaderboard gives it (completed: COMPLETE, stopped early: PRUNED, failed: FAIL,
unfinished: RUNNING).

Kept in its own module, imported only where a study runs: Tune pickles the searcher with the
study's state (the storage by its URL), and `--resume` unpickles it by this module path.
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Optional

import optuna
from optuna.distributions import check_distribution_compatibility, distribution_to_json
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch
from sqlalchemy import event
from sqlalchemy.dialects import sqlite

from fashion_tune import results
from fashion_tune.layout import StudyDir


class StoppedTrialsArePruned(OptunaSearch):
    """OptunaSearch that tells Optuna a trial stopped before `max_epochs` was pruned."""

    def __init__(self, *args, max_epochs: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self._last_told: dict[str, dict] = {}  # trial id -> its last epoch and value told to Optuna

    def suggest(self, trial_id: str) -> Optional[dict]:
        config = super().suggest(trial_id)
        self._ot_trials[trial_id].set_user_attr("trial_id", trial_id)  # Tune's name for it, in Optuna's tools
        self._write_held()  # the proposal's parameters in one transaction
        return config

    def save(self, checkpoint_path: str):
        self._write_held()  # a snapshot of the study: optuna.db holds what it knows
        super().save(checkpoint_path)

    def on_trial_result(self, trial_id: str, result: dict):
        told = self._last_told.get(trial_id, {TRAINING_ITERATION: 0})
        if result[TRAINING_ITERATION] > told[TRAINING_ITERATION]:  # Optuna keeps one value an epoch
            super().on_trial_result(trial_id, result)
            self._last_told[trial_id] = {k: result[k] for k in (TRAINING_ITERATION, self.metric)}
        elif trial_id not in self._completed_trials:
            # An epoch trained again (a trial restarted from an earlier checkpoint: Tune's recovery is
            # at-least-once): the model goes on from this one, so its value is the epoch's.
            study_id = self._storage.get_study_id_from_name(self._study_name)
            trial = self._storage.get_trial_id_from_study_id_trial_number(study_id, self._ot_trials[trial_id].number)
            self._storage.set_trial_intermediate_value(trial, result[TRAINING_ITERATION], result[self.metric])

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False):
        if not result and not error:
            # A trial stopped while it waited at a rung (halving, hyperband) ends without a result:
            # its last one says how far it got, its full budget included.
            result = self._last_told.get(trial_id)
        if result and not error:
            # Tune withholds from the searcher the result a trial is stopped on, by its scheduler or
            # at the end of its budget (tune_controller: "Only updating search alg if the trial is
            # not to be stopped"): it is told here, so Optuna has every epoch's value.
            self.on_trial_result(trial_id, result)
        stopped_early = bool(result) and not error and result.get(TRAINING_ITERATION, 0) < self.max_epochs
        # Without a result, OptunaSearch tells the trial to Optuna as PRUNED; its value is then its
        # last reported one.
        super().on_trial_complete(trial_id, result=None if stopped_early else result, error=error)

    def restore(self, checkpoint_path: str):
        """Tune's saved state of the searcher, with its Optuna study opened where the study now is
        (`storage_now`, set by the driver: the study may have been copied or moved since it was
        saved, and the saved storage names optuna.db by its absolute path then), and the storage
        made to agree with the state: a trial Optuna holds as running that the saved state does not
        know was proposed after Tune's last snapshot of the study (a driver killed outright) and will
        never report: it is marked failed."""
        storage_now = getattr(self, "storage_now", None)
        with storage_opened_later():
            super().restore(checkpoint_path)
        self.__dict__.setdefault("_last_told", {})  # saved before it was kept
        self._storage = SoleWriter(storage_now or self._storage.url)
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=self._storage, sampler=self._sampler)
        self._ot_trials = {tune_id: optuna.trial.Trial(self._ot_study, trial._trial_id)
                           for tune_id, trial in self._ot_trials.items()}
        known = {t.number for t in self._ot_trials.values()}
        for lost in self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if lost.number not in known:
                self._ot_study.tell(lost.number, state=optuna.trial.TrialState.FAIL)
        self._tell_unreported_epochs()

    def _tell_unreported_epochs(self) -> None:
        """Each unfinished trial's epochs its result.json holds that Optuna was not told: a driver
        interrupted between logging an epoch and telling its searcher, the trial resumed from that
        epoch's checkpoint, would leave that value out of Optuna's ledger for good."""
        study = StudyDir(Path(self._storage.url.removeprefix("sqlite:///")).parent)
        stored = {t.number: t for t in self._ot_study.get_trials(deepcopy=False)}
        for tune_id, ot_trial in self._ot_trials.items():
            if stored[ot_trial.number].state != optuna.trial.TrialState.RUNNING:
                continue
            told = stored[ot_trial.number].intermediate_values
            for row in results.reported_epochs(study, tune_id):
                if row[TRAINING_ITERATION] not in told and self.metric in row:
                    ot_trial.report(row[self.metric], row[TRAINING_ITERATION])
                    self._last_told[tune_id] = {k: row[k] for k in (TRAINING_ITERATION, self.metric)}
        self._write_held()

    def _write_held(self) -> None:
        if isinstance(self._storage, SoleWriter):  # the study's; tests give Optuna's own storages too
            self._storage.write_held()


class SoleWriter(_CachedStorage):
    """optuna.db as the study's driver, its one writer while the study runs, reads it: every trial
    held in memory, running ones included, each refreshed from the database after this process writes
    to it. Optuna's own cache (the _CachedStorage it wraps an RDBStorage in) reads every running
    trial back from SQLite several times for each trial TPE proposes, in case another process wrote
    to it: with 64 trials at once that was three quarters of the driver's time in TPE
    (benchmarks/driver_scale.py, py-spy).

    A proposal's parameters and each epoch's value are held and written together (write_held): by
    the searcher after each proposal and at each snapshot of the study, before a trial's end, and once
    a second otherwise. Optuna writes each in a transaction of its own with a few queries (3.5 ms a
    value here, the driver's largest cost of its own at 1,000 trials); one statement for them all
    costs 0.06 ms a value. A driver killed outright loses at most a second of running trials'
    values from optuna.db, which --resume tells Optuna again from the trials' records
    (StoppedTrialsArePruned._tell_unreported_epochs), and a proposal not yet written, which it
    marks failed as it does any proposal its snapshot does not know."""

    WRITE_EVERY_S = 1.0

    def __init__(self, url: str):
        super().__init__(optuna.storages.RDBStorage(url))
        self._loaded: set[int] = set()  # studies read whole once
        self._unwritten_params: dict[tuple[int, str], dict] = {}  # (trial, name) -> its trial_params row
        self._unwritten_values: dict[tuple[int, int], dict] = {}  # (trial, step) -> its intermediate value row
        self._written_at = time.monotonic()
        self._holds = url.startswith("sqlite:")  # write_held's statements are SQLite's
        if self._holds:
            event.listen(self._backend.engine, "connect", _commit_without_waiting_for_the_disk)
            self._backend.engine.dispose()  # RDBStorage connected already (to make its tables): connect anew

    @property
    def url(self) -> str:
        return self._backend.url

    def __reduce__(self):
        # Tune pickles the searcher at each snapshot: the database's address, not the trials held,
        # and nothing opened when unpickled (restore() opens the study where it is then).
        return NotOpened, (self.url,)

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        if study_id not in self._loaded:
            super()._read_trials_from_remote_storage(study_id)
            self._loaded.add(study_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states=None) -> list:
        """Optuna's, in number order, without sorting the trials by their `number` property at each
        call: TPE reads the study this way two or three times a proposal, and that sort was a quarter
        of a proposal at 6,000 trials (py-spy, benchmarks/driver_scale.py); a read of 10,000 trials
        2.3 -> 0.4 ms. The cache's keys are the numbers: sorting them is a pass over sorted integers."""
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            held = self._studies[study_id].trials
            trials = [held[number] for number in sorted(held)]
            if states is not None:
                trials = [trial for trial in trials if trial.state in states]
            return copy.deepcopy(trials) if deepcopy else trials

    def get_trial(self, trial_id: int):
        try:
            return self._held(trial_id)
        except KeyError:  # a study not read yet
            return self._backend.get_trial(trial_id)

    def _held(self, trial_id: int):
        with self._lock:
            study_id, number = self._trial_id_to_study_id_and_number[trial_id]
            return self._studies[study_id].trials[number]

    def set_trial_param(self, trial_id, param_name, param_value_internal, distribution):
        held = self._held(trial_id)
        if not self._holds:
            super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        else:  # Optuna's checks, against what this process holds
            self._backend.check_trial_is_updatable(trial_id, held.state)
            with self._lock:
                known = self._studies[self._trial_id_to_study_id_and_number[trial_id][0]].param_distribution
                if param_name in known:
                    check_distribution_compatibility(known[param_name], distribution)
                known.setdefault(param_name, distribution)
            self._unwritten_params[trial_id, param_name] = {
                "trial_id": trial_id, "param_name": param_name, "param_value": param_value_internal,
                "distribution_json": distribution_to_json(distribution)}
        held.params[param_name] = distribution.to_external_repr(param_value_internal)
        held.distributions[param_name] = distribution

    def set_trial_intermediate_value(self, trial_id, step, intermediate_value):
        held = self._held(trial_id)
        if not self._holds:
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        else:
            self._backend.check_trial_is_updatable(trial_id, held.state)
            value, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(intermediate_value)
            self._unwritten_values[trial_id, step] = {"trial_id": trial_id, "step": step, "intermediate_value": value,
                                                      "intermediate_value_type": kind}
            if time.monotonic() - self._written_at >= self.WRITE_EVERY_S:
                self.write_held()
        held.intermediate_values[step] = intermediate_value

    def write_held(self) -> None:
        """Write the parameters and values held, in one transaction (a value told again for a step
        replaces the one there: a trial restarted from an earlier checkpoint trains the epoch again)."""
        self._written_at = time.monotonic()
        if not (self._unwritten_params or self._unwritten_values):
            return
        with _create_scoped_session(self._backend.scoped_session, True) as session:
            for table, rows, key in ((models.TrialParamModel, self._unwritten_params, "param_name"),
                                     (models.TrialIntermediateValueModel, self._unwritten_values, "step")):
                if rows:
                    insert = sqlite.insert(table.__table__)
                    written = {column: insert.excluded[column] for column in next(iter(rows.values()))}
                    session.execute(insert.on_conflict_do_update(index_elements=["trial_id", key], set_=written),
                                    list(rows.values()))
        self._unwritten_params.clear()
        self._unwritten_values.clear()

    def set_trial_user_attr(self, trial_id, key, value):
        super().set_trial_user_attr(trial_id, key, value)
        self._held(trial_id).user_attrs[key] = value

    def set_trial_system_attr(self, trial_id, key, value):
        super().set_trial_system_attr(trial_id, key, value)
        self._held(trial_id).system_attrs[key] = value

    def set_trial_state_values(self, trial_id, state, values=None):
        """Read back whole: the database sets the end time, and refuses a trial already finished. What
        is held is written first: a finished trial's values are all in optuna.db."""
        self.write_held()
        changed = super().set_trial_state_values(trial_id, state, values)
        trial = self._backend.get_trial(trial_id)
        with self._lock:
            self._add_trials_to_cache(self._trial_id_to_study_id_and_number[trial_id][0], [trial])
        return changed


def _commit_without_waiting_for_the_disk(connection, _record) -> None:
    """SQLite's write-ahead log, synced to disk at its checkpoints rather than at every commit: the
    driver commits once an epoch of every trial, and waiting for the disk each time (10 ms or more
    here) held up the driver's loop for every result. A killed driver loses nothing committed; a
    power cut may lose the last commits, which --resume tells Optuna again from the trials' records
    (StoppedTrialsArePruned._tell_unreported_epochs). optuna.db keeps an optuna.db-wal beside it while
    a search has it open (or was killed with it open): copy the folder, not the file alone."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class NotOpened(str):
    """A SoleWriter unpickled: the URL it had, for restore() to open (where the study is now)."""

    @property
    def url(self) -> str:
        return str(self)


@contextlib.contextmanager
def storage_opened_later():
    """While a study's searcher is unpickled (with the Tuner, and from its saved state): its Optuna
    storage keeps its URL but opens nothing. Optuna's own unpickling connects to the SQLite file at
    the absolute path the study was begun at, and creates tables there: in the original folder of a
    copied study, or failing where a moved study's folder is gone. restore() then opens the storage
    where the study now is."""
    unpickle = optuna.storages.RDBStorage.__setstate__
    optuna.storages.RDBStorage.__setstate__ = lambda storage, state: storage.__dict__.update(state)
    try:
        yield
    finally:
        optuna.storages.RDBStorage.__setstate__ = unpickle


def end_cut_short(study: StudyDir, study_name: str, metric: str, max_epochs: int) -> list[str]:
    """Tell Optuna how the trials running when a study's time budget was spent ended. Tune ends them
    without telling its searcher (as on Ctrl-C, where they stay running, to be resumed). One that
    had logged its last epoch completed (the budget ran out between that epoch and Tune telling its
    searcher): complete, with that epoch's value, as OptunaSearch tells it. Any other was cut short:
    pruned, with its last epoch's value (Optuna's rule for a pruned trial) and the user attribute
    `cut_by_time_budget`. A trial proposed but not yet started has no values and no trial folder.
    Returns the Tune trial ids of those cut short."""
    storage = optuna.storages.RDBStorage(study.optuna_storage)
    study_id = storage.get_study_id_from_name(study_name)
    stored = optuna.load_study(study_name=study_name, storage=storage)
    cut = []
    for trial in stored.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        tune_id = trial.user_attrs.get("trial_id", str(trial.number))
        row_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        rows = results.reported_epochs(study, tune_id)
        for row in rows:  # the epoch Tune withholds from its searcher, the one a trial ends on, included
            if row[TRAINING_ITERATION] not in trial.intermediate_values and results.finite(row.get(metric)):
                storage.set_trial_intermediate_value(row_id, row[TRAINING_ITERATION], row[metric])
        last = rows[-1] if rows else {}
        if last.get(TRAINING_ITERATION, 0) >= max_epochs and results.finite(last.get(metric)):
            stored.tell(trial.number, last[metric])
            continue
        storage.set_trial_user_attr(row_id, "cut_by_time_budget", True)
        stored.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
        cut.append(tune_id)
    return cut

