"""Where studies are kept: a folder on this machine's disk, or object storage (`--results-dir
s3://bucket/prefix`, or gs://), what Ray Tune recommends for a cluster: every node reaches the bucket,
and no shared file system has to be made and mounted.

A study in object storage has a working copy on the disk of the machine that runs a command
($FASHION_TUNE_CACHE, else ~/.cache/fashion_tune, then s3/<bucket>/<prefix>/<study>). Every command
reads and writes that copy as it would a study on its own disk: it pulls the study's files from the
bucket first, and pushes back what it wrote (`Bucket.working_copy`). Who writes what in the bucket:
- Tune, itself: each trial's checkpoints (from the node that runs the trial) and its snapshots of the
  run (tuner.pkl, experiment_state-*.json, searcher-state-*.pkl), which --resume restores from.
- The driver, through its copy: study.json, optuna.db, the trials' records and TensorBoard events,
  the reports; pushed at each of Tune's snapshots and at the end (search/study_upload.py), and by
  report, retrain, evaluate and export when they end. Each file goes up whole (an S3 object appears
  complete or not at all), optuna.db as a consistent SQLite backup taken while the search writes it.
Two machines must not run commands that write one study at the same time (nothing here locks a bucket).

Credentials and endpoint come from the standard variables of the store's SDK (AWS_ACCESS_KEY_ID,
AWS_PROFILE, an instance's IAM role, ...; AWS_ENDPOINT_URL for an S3-compatible store).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import functools
import logging
import os
import posixpath
import sqlite3
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import pyarrow.fs

from fashion_tune import atomic
from fashion_tune.errors import UserError
from fashion_tune.layout import EXPERIMENT_STATES, SEARCHER_STATES, TUNER_STATE, StudyDir, cache_root

log = logging.getLogger(__name__)

SCHEMES = ("s3://", "gs://")
# Tune's own files in a study: Tune writes them to the bucket itself; a working copy only reads them.
TUNES_OWN = (TUNER_STATE, EXPERIMENT_STATES, SEARCHER_STATES, "search_gen_state-*.json", "basic-variant-state-*.json",
             ".validate_storage_marker")
CHECKPOINTS = "checkpoint_*"  # in a trial's folder: the trial's node writes them, --resume reads them there
# Never pushed: the search's lock, and SQLite's log beside an open optuna.db (the backup holds its commits).
LOCAL_ONLY = (".search.lock", "optuna.db-*")
# Seconds a request to the store may take before it counts as failed, and the tries of one request.
CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S, ATTEMPTS = 5, 60, 3


def in_object_storage(results_dir: str | os.PathLike) -> bool:
    return str(results_dir).startswith(SCHEMES)


def on_this_disk(filesystem: pyarrow.fs.FileSystem, path: str) -> Path:
    """Where a study's file or folder at `path` on `filesystem` (Tune's storage) is on this disk:
    the path itself on a local file system, else its place in the working copy."""
    from fashion_tune import whole_files

    if whole_files.is_this_disk(filesystem):
        return Path(path)
    return cache_root() / filesystem.type_name / path


class Bucket:
    """Studies kept in object storage under one prefix (`--results-dir URI`), and their working copies."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        try:
            self.filesystem, self.path = _opened(self.uri, _endpoint())
        except (OSError, ValueError) as e:
            raise UserError(f"--results-dir {uri}: {first_line(e)}") from None
        self.local = on_this_disk(self.filesystem, self.path)

    def __repr__(self) -> str:
        return f"Bucket({self.uri!r})"

    def study_uri(self, name: str) -> str:
        return f"{self.uri}/{name}"

    def check_reachable(self, flag: str = "--results-dir") -> None:
        """One line, in seconds, when the bucket cannot be listed (no such bucket, no credentials,
        the store down)."""
        bucket = self.path.split("/")[0]
        try:
            found = self.filesystem.get_file_info(bucket)
        except OSError as e:
            raise UserError(f"{flag} {self.uri}: the bucket cannot be reached: {first_line(e)}") from None
        if found.type == pyarrow.fs.FileType.NotFound:
            raise UserError(f"{flag} {self.uri}: there is no bucket {bucket!r} (or these credentials cannot see it); "
                            "create it first")

    def has_study(self, name: str) -> bool:
        record = posixpath.join(self.path, name, StudyDir(self.local / name).record.name)
        return self.filesystem.get_file_info(record).type == pyarrow.fs.FileType.File

    @contextlib.contextmanager
    def working_copy(self, name: str) -> Iterator[StudyDir]:
        """The study's working copy, pulled from the bucket; what the body writes or deletes in it is
        pushed when it ends without an error."""
        study = StudyDir(self.local / name)
        if search_running_here(study):  # its copy is the newest there is, and pulling would clobber it
            log.info("a search runs study %s on this machine: its working copy %s is read as it is", name, study.path)
            yield study
            return
        self.check_reachable()
        self.pull(name)
        pushed = self.pusher(name)
        yield study
        pushed.push()

    def pusher(self, name: str) -> "Pushed":
        return Pushed(self.filesystem, posixpath.join(self.path, name), self.local / name)

    def pull(self, name: str, *, tune_state: bool = False) -> StudyDir:
        """Make the study's working copy what the bucket holds (not the checkpoints; Tune's snapshots
        only if asked): files missing here or different there are downloaded, files the bucket no
        longer has are deleted here. Returns the copy."""
        study = StudyDir(self.local / name)
        there = {relative: info for relative, info in _listing(self.filesystem, posixpath.join(self.path, name)).items()
                 if _synced(relative, tune_state)}
        for relative, info in there.items():
            here = study.path / relative
            if _stat(here) != (info.size, int(info.mtime.timestamp())):
                here.parent.mkdir(parents=True, exist_ok=True)
                with self.filesystem.open_input_stream(info.path) as source:
                    atomic.write_bytes(here, source.read())
                for stale in (_sqlite_log(here), here.with_name(here.name + "-shm")):  # the old database's
                    stale.unlink(missing_ok=True)
                os.utime(here, (info.mtime.timestamp(), info.mtime.timestamp()))
        if there:  # a study the bucket has: what it no longer has goes from here too
            for relative in _files(study.path, tune_state).keys() - there.keys():
                (study.path / relative).unlink()
        return study


class Pushed:
    """A study's working copy pushed to its folder in the bucket: what changed here since the last
    push goes up, what was deleted here is deleted there. Files the bucket has and this copy has not
    (Tune's own, a trial's error.txt synced by Tune) are left alone."""

    def __init__(self, filesystem: pyarrow.fs.FileSystem, remote: str, local: Path):
        self.filesystem, self.remote, self.local = filesystem, remote, Path(local)
        there = {relative: (info.size, int(info.mtime.timestamp()))
                 for relative, info in _listing(filesystem, remote).items()}
        # relative path -> (size, mtime in s): the files that are the same here and in the bucket
        self._sent = {relative: stat for relative, stat in _files(self.local).items() if there.get(relative) == stat}

    def push(self) -> int:
        """Upload the files written since the last push, delete from the bucket those deleted here;
        returns how many files went up. Each uploaded file takes the time the bucket gives it, so
        that a later pull knows it is the same."""
        now = _files(self.local)
        changed = [relative for relative, stat in now.items() if self._sent.get(relative) != stat]
        for relative in changed:
            here, target = self.local / relative, posixpath.join(self.remote, relative)
            if here == StudyDir(self.local).optuna_db:
                _upload_sqlite(here, self.filesystem, target)
            else:
                with open(here, "rb") as source, self.filesystem.open_output_stream(target) as out:
                    _copy(source, out)
            stamp = self.filesystem.get_file_info(target).mtime.timestamp()
            os.utime(here, (stamp, stamp))
            now[relative] = _stat(here)
        for relative in self._sent.keys() - now.keys():
            with contextlib.suppress(FileNotFoundError):
                self.filesystem.delete_file(posixpath.join(self.remote, relative))
        self._sent = now
        return len(changed)


def search_running_here(study: StudyDir) -> bool:
    """Whether a search on this machine holds the study's lock (search/resumable.py)."""
    try:
        with open(study.lock) as lock:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    return False


def results_dir_here(results_dir: str) -> str:
    """--results-dir as a folder of this disk: itself, or the working copies of a bucket's studies."""
    return str(Bucket(results_dir).local) if in_object_storage(results_dir) else results_dir


@contextlib.contextmanager
def study_here(results_dir: str, study: Optional[str]) -> Iterator[str]:
    """For a command that reads (and may write) the study `study` in --results-dir: a results folder
    on this disk that holds it; a bucket's study is pulled first and pushed back after."""
    if not (study and in_object_storage(results_dir)):
        yield results_dir
        return
    bucket = Bucket(results_dir)
    with bucket.working_copy(study):
        yield str(bucket.local)


@functools.lru_cache(maxsize=16)
def _opened(uri: str, endpoint: str | None) -> tuple[pyarrow.fs.FileSystem, str]:
    """The store's file system (with bounded waits) and the path in it, made once a process for each
    URI and endpoint: pyarrow's from_uri asks S3 for the bucket's region, and one run of a command
    makes a Bucket of its --results-dir in several places."""
    found, path = pyarrow.fs.FileSystem.from_uri(uri)
    return _patient(found, endpoint), path


def _endpoint() -> str | None:
    """S3's endpoint from AWS_ENDPOINT_URL(_S3), as the AWS SDKs read it (pyarrow does not)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _patient(filesystem: pyarrow.fs.FileSystem, endpoint: str | None) -> pyarrow.fs.FileSystem:
    """The store's file system with bounded waits: a store that is down fails a request in seconds,
    not after the SDK's default minutes of retries."""
    if not isinstance(filesystem, pyarrow.fs.S3FileSystem):
        return filesystem
    return pyarrow.fs.S3FileSystem(region=filesystem.region, endpoint_override=endpoint,
                                   connect_timeout=CONNECT_TIMEOUT_S, request_timeout=REQUEST_TIMEOUT_S,
                                   retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=ATTEMPTS))


def _copy(source, target) -> None:
    while chunk := source.read(1 << 20):
        target.write(chunk)


def _upload_sqlite(database: Path, filesystem: pyarrow.fs.FileSystem, target: str) -> None:
    """A consistent copy of a SQLite database that a search may be writing (SQLite's online backup:
    the commits in its write-ahead log included), uploaded whole."""
    with tempfile.NamedTemporaryFile(suffix=".db") as snapshot:
        with contextlib.closing(sqlite3.connect(database)) as live, \
                contextlib.closing(sqlite3.connect(snapshot.name)) as copy:
            live.backup(copy)
        with open(snapshot.name, "rb") as source, filesystem.open_output_stream(target) as out:
            _copy(source, out)


def _synced(relative: str, tune_state: bool = False) -> bool:
    """Whether a study's file (its path in the study's folder) goes between bucket and working copy:
    not the checkpoints, nor what stays on this disk; Tune's snapshots only down, and only if asked."""
    top_level = "/" not in relative
    if top_level and any(fnmatch.fnmatch(relative, pattern) for pattern in LOCAL_ONLY):
        return False
    if top_level and any(fnmatch.fnmatch(relative, pattern) for pattern in TUNES_OWN):
        return tune_state
    return not any(fnmatch.fnmatch(part, CHECKPOINTS) for part in relative.split("/")[:-1])


def _listing(filesystem: pyarrow.fs.FileSystem, remote: str) -> dict[str, pyarrow.fs.FileInfo]:
    """The files under a folder of the bucket, by their path in it."""
    selector = pyarrow.fs.FileSelector(remote, recursive=True, allow_not_found=True)
    return {posixpath.relpath(info.path, remote): info for info in filesystem.get_file_info(selector)
            if info.type == pyarrow.fs.FileType.File}


def _files(folder: Path, tune_state: bool = False) -> dict[str, tuple[int, int]]:
    """The study's synced files in its working copy: relative path -> (size, mtime in whole seconds,
    the bucket's resolution)."""
    if not folder.is_dir():
        return {}
    return {relative: _stat(path) for path in folder.rglob("*")
            if path.is_file() and _synced(relative := path.relative_to(folder).as_posix(), tune_state)}


def _stat(path: Path) -> Optional[tuple[int, int]]:
    """(size, mtime in whole seconds); a SQLite database's with its write-ahead log's (its commits
    stay there until SQLite checkpoints them into the file)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    size, mtime = stat.st_size, stat.st_mtime
    log = _sqlite_log(path)
    if log.is_file():
        size, mtime = size + log.stat().st_size, max(mtime, log.stat().st_mtime)
    return size, int(mtime)


def _sqlite_log(database: Path) -> Path:
    return database.with_name(database.name + "-wal")


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
