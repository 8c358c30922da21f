"""Whether a study folder can be run, and by whom: checked before Ray starts, so a mistake costs a
line, not a traceback after a minute, and nothing in the folder changes.

- One search at a time: the driver holds the study's lock file (an OS file lock, fcntl.flock) for as
  long as it runs the study. A second `search --resume` of it is refused in one line; a driver that
  crashes or is killed leaves no stale lock, since the OS releases it with the process.
- What it resumes from must be whole: Tune's state (tuner.pkl and its snapshots of the run), the
  Optuna study (optuna.db) and the space file copy, unchanged since the study started.
- A study interrupted before Tune saved any state (Ctrl-C while Ray started) holds no finished
  work: it is started afresh with the settings it recorded, rather than left a folder that neither
  --resume nor a new search under its name could use.
- A trial started after Tune's last snapshot by a search killed outright is not in that snapshot:
  Tune will not resume it, and Optuna is told it failed (searcher.py). Its folder, written live,
  is set aside in lost_trials/, so the leaderboard and reports hold the study's trials only.
- A study copied, moved or renamed resumes where it now is (StudyRecord.renamed, and the searcher
  and the time budget pointed at this folder: searcher.py, study.py).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import sqlite3
from typing import Iterator

from fashion_tune import results
from fashion_tune.errors import UserError
from fashion_tune.layout import SEARCHER_STATES, StudyDir, trial_folder_name
from fashion_tune.records import StudyRecord

log = logging.getLogger("fashion_tune.search")


@contextlib.contextmanager
def held(study: StudyDir, name: str) -> Iterator[None]:
    """The study's lock, for as long as a search runs it; UserError when another process holds it."""
    with open(study.lock, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise UserError(f"study {name!r} is being run by another search ({holder}); wait for it to end, or stop "
                            "it (Ctrl-C), then --resume") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"process {os.getpid()} on {os.uname().nodename}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()  # released with the file; an empty lock file means nobody runs the study


def has_tune_state(study: StudyDir) -> bool:
    return study.tuner_state.is_file() and bool(study.experiment_states())


def check(study: StudyDir, record: StudyRecord, name: str) -> bool:
    """Whether the unfinished study at `study` can be resumed (True) or must be started afresh,
    never having got going (False); UserError in one line when it can be neither."""
    results.read_space(study, record)  # the space file's copy, unchanged
    reported = [folder for folder in study.trial_dirs() if any(folder.glob("result.json"))]
    if not has_tune_state(study):
        if reported:
            missing = study.tuner_state.name if not study.tuner_state.is_file() else "experiment_state-*.json"
            raise UserError(f"--resume {name}: {study.path} has lost Tune's state ({missing}), so its trials cannot "
                            f"be continued; `fashion-tune report --study {name}` still reads what they did")
        return False
    if not any(study.path.glob(SEARCHER_STATES)):
        raise UserError(f"--resume {name}: {study.path} has lost the searcher's saved state ({SEARCHER_STATES}), so "
                        f"its trials cannot be continued; `fashion-tune report --study {name}` still reads them")
    if not study.optuna_db.is_file():
        raise UserError(f"--resume {name}: {study.optuna_db} is missing: the searcher's record of every trial; restore "
                        f"it from a copy of the study (`fashion-tune report --study {name}` still reads the trials)")
    if not _holds_study(study, record.optuna_name):
        raise UserError(f"--resume {name}: {study.optuna_db} does not hold the Optuna study {record.optuna_name!r} "
                        f"that the searcher's saved state refers to; restore it from a copy of the study "
                        f"(`fashion-tune report --study {name}` still reads the trials)")
    return True


def _holds_study(study: StudyDir, optuna_name: str) -> bool:
    with contextlib.closing(sqlite3.connect(f"file:{study.optuna_db}?mode=ro", uri=True)) as db:
        try:
            return db.execute("SELECT 1 FROM studies WHERE study_name = ?", (optuna_name,)).fetchone() is not None
        except sqlite3.DatabaseError:  # no table (a database Optuna never wrote) or not a database
            return False


def start_afresh(study: StudyDir) -> None:
    """Clear what a study that never got going left beside its record and space file: a searcher's
    storage with no finished trial in it, and Tune's half-written files."""
    log.info("study %s never got going (interrupted before Tune saved any state): starting it afresh with its "
             "recorded settings", study.path.name)
    for leftover in (study.optuna_db, *study.path.glob(f"{study.optuna_db.name}-*"),  # its SQLite -wal, -shm
                     study.tuner_state, *study.path.glob(SEARCHER_STATES)):
        leftover.unlink(missing_ok=True)


def set_aside_lost_trials(study: StudyDir) -> list[str]:
    """Move the trial folders that Tune's last snapshot of the study does not name into lost_trials/;
    returns their folder names."""
    snapshot = json.loads(study.experiment_states()[-1].read_text())  # the one Tune restores from
    known = {trial_folder_name((json.loads(state) if isinstance(state, str) else state)["trial_id"])
             for state, _ in snapshot["trial_data"]}
    lost = sorted(folder.name for folder in study.path.glob("trial_*") if folder.name not in known)
    for name in lost:
        study.lost_trials.mkdir(exist_ok=True)
        (study.path / name).rename(study.lost_trials / name)
        log.warning("trial %s began after the study's last saved state and was lost when the search was killed; "
                    "its records are in %s", name.removeprefix("trial_"), study.lost_trials / name)
    return lost
