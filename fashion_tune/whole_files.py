"""This disk as Tune's storage for a study, every file Tune writes there written whole.

Tune writes its snapshots of a run (experiment_state-*.json, searcher-state-*.pkl, tuner.pkl) in a
staging folder and copies them into the study's folder in the background, through a pyarrow file
system; the local one truncates the old file and writes the new one in place. A driver killed during
that copy (SIGKILL, the OOM killer, a preempted machine) left an empty experiment_state file, and
--resume could not read the study (seen in tests/test_replay.py, which kills one, under load).
Through this file system each file is written under a temporary name beside it and renamed over
the old one when whole, as fashion_tune's own files are (atomic.py): the study's folder holds the
last snapshot or the one before it, never a torn one. Reads, listings, deletes and moves are the
local file system's. An object store needs none of this: an object appears complete or not at all.
"""

from __future__ import annotations

import io
import os

import pyarrow
import pyarrow.fs

from fashion_tune import atomic


def filesystem() -> pyarrow.fs.FileSystem:
    return pyarrow.fs.PyFileSystem(WholeFiles())


def is_this_disk(filesystem_: pyarrow.fs.FileSystem) -> bool:
    """Whether Tune's storage file system is this disk (the local one, or this one over it)."""
    return isinstance(filesystem_, pyarrow.fs.LocalFileSystem) or isinstance(
        getattr(filesystem_, "handler", None), WholeFiles)


class WholeFiles(pyarrow.fs.FileSystemHandler):
    def __init__(self):
        self._local = pyarrow.fs.LocalFileSystem()

    def __eq__(self, other):
        return isinstance(other, WholeFiles)

    def __ne__(self, other):
        return not self == other

    def get_type_name(self) -> str:
        return "local-whole-files"

    def normalize_path(self, path):
        return self._local.normalize_path(path)

    def get_file_info(self, paths):
        return self._local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self._local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self._local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self._local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self._local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("deleting everything on this disk is not something a study does")

    def delete_file(self, path):
        self._local.delete_file(path)

    def move(self, src, dest):
        self._local.move(src, dest)

    def copy_file(self, src, dest):
        with self._local.open_input_stream(src) as source, self.open_output_stream(dest, None) as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)

    def open_input_stream(self, path):
        return self._local.open_input_stream(path)

    def open_input_file(self, path):
        return self._local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return pyarrow.PythonFile(_Replacing(path), mode="w")

    def open_append_stream(self, path, metadata):
        return self._local.open_append_stream(path)


class _Replacing(io.FileIO):
    """A file written at atomic.partial_path (Tune copies files on several threads: the name holds the
    thread) and renamed over `path` when closed; one whose write failed, or that was dropped without
    being closed, is removed instead."""

    def __init__(self, path: str):
        self._path, self._partial = path, str(atomic.partial_path(path))
        self._failed = False
        super().__init__(self._partial, "wb")

    def write(self, data):
        try:
            return super().write(data)
        except BaseException:
            self._failed = True
            raise

    def close(self):
        if self.closed:
            return
        super().close()
        if self._failed:
            os.unlink(self._partial)
        else:
            os.replace(self._partial, self._path)

    def __del__(self):
        if not self.closed:
            self._failed = True
            self.close()
