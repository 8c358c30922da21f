"""Deleting a trial's old checkpoints once no snapshot of the study can still need them.

Tune's own way (CheckpointConfig(num_to_keep=N)) deletes a trial's older checkpoints as it saves new
ones, and so forces a snapshot of the whole study every N checkpoints of any trial, lest the last
snapshot name a checkpoint already gone (ray.tune.execution.experiment_state). Each snapshot
serialises every trial and copies the driver's staging folder: with tens of trials at once that is
nearly every epoch, and its cost grows with the trials so far (driver_scale.py measured 6.1 ms a
trial-epoch at 100 trials, 14.1 at 1,000).

Here Tune keeps every checkpoint (num_to_keep=None: no forced snapshots; Tune snapshots on its own
clock, at most 5% of the time), and this callback deletes a trial's checkpoints older than the one
a snapshot named, once that snapshot is in the study's folder: --resume after a crash or SIGKILL
restores from a checkpoint that still exists. A trial keeps its newest checkpoint, and while it runs
the few saved since the last snapshot (a driver killed outright leaves those few, until the run that
resumes the study ends: tests/test_replay.py kills one). Tune pickles this callback with the study, and --resume
unpickles it by its module path.
"""

from __future__ import annotations

import math
import posixpath
import time
from collections import defaultdict

import pyarrow.fs
from ray.tune import Callback

from fashion_tune.layout import EXPERIMENT_STATES


class OldCheckpoints(Callback):
    """Deletes each trial's checkpoints older than the one the study's last stored snapshot names."""

    def __init__(self):
        self._saved: dict[str, list] = defaultdict(list)  # trial id -> its checkpoints this run, oldest first
        self._named: dict[str, str] = {}  # trial id -> the newest checkpoint's path at the last snapshot
        self._named_at = 0.0  # when that snapshot was written
        self._storage = None  # the study's StorageContext, from the first trial that saves one

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self._saved[trial.trial_id].append(checkpoint)
        self._storage = self._storage or trial.storage

    def get_state(self):
        """Called by Tune while it writes a snapshot (after the trials' states): the checkpoints the
        previous snapshot named are safe to keep alone once that snapshot is stored; this one's are
        noted."""
        self._delete_unnamed()
        self._named = {trial_id: saved[-1].path for trial_id, saved in self._saved.items() if saved}
        self._named_at = time.time()
        return None  # nothing to restore: a resumed study starts with no checkpoints of its run

    def on_experiment_end(self, trials, **info):
        """Tune stored its last snapshot (forced, waited for) before ending: the checkpoint it names
        for each trial is all a --resume needs. The older ones go, those a driver killed outright
        left behind in an earlier run included."""
        if not self._storage or not self._snapshot_stored_since(self._named_at, waited_for=True):
            return
        for trial in trials:
            if trial.checkpoint is not None:
                _delete_older_than(trial.checkpoint)

    def __reduce__(self):
        return OldCheckpoints, ()  # the study's pickle holds a fresh one: the lists are this run's

    def _delete_unnamed(self) -> None:
        if not self._named or not self._snapshot_stored_since(self._named_at):
            return
        for trial_id, path in self._named.items():
            saved = self._saved[trial_id]
            keep = next(i for i, checkpoint in enumerate(saved) if checkpoint.path == path)
            for checkpoint in saved[:keep]:
                try:
                    checkpoint.filesystem.delete_dir(checkpoint.path)
                except FileNotFoundError:
                    pass  # deleted already (a trial restarted from an earlier checkpoint saves again)
            self._saved[trial_id] = saved[keep:]
        self._named = {}

    def _snapshot_stored_since(self, when: float, waited_for: bool = False) -> bool:
        """Whether the study's storage holds a snapshot of Tune's written after `when` (Tune copies
        its snapshots there in the background; a copy's time is when it was made). An object store
        gives whole seconds: a snapshot stored in the second of `when` counts only if it is the one
        Tune waited for (its last), lest the one stored just before `when` be taken for it."""
        fs, folder = self._storage.storage_filesystem, self._storage.experiment_fs_path
        states = fs.get_file_info(pyarrow.fs.FileSelector(folder))
        newest = max((info.mtime.timestamp() for info in states
                      if info.type == pyarrow.fs.FileType.File and _is_snapshot(info.base_name)), default=0.0)
        if isinstance(fs, pyarrow.fs.LocalFileSystem):
            return newest >= when
        return newest >= (math.floor(when) if waited_for else math.floor(when) + 1)


def _delete_older_than(checkpoint) -> None:
    """Delete the checkpoints saved before this one in its trial's folder (Tune numbers them in order:
    checkpoint_000007 comes after checkpoint_000006)."""
    fs, folder = checkpoint.filesystem, posixpath.dirname(checkpoint.path)
    name = posixpath.basename(checkpoint.path)
    for info in fs.get_file_info(pyarrow.fs.FileSelector(folder)):
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_") \
                and info.base_name < name:
            fs.delete_dir(info.path)


def _is_snapshot(name: str) -> bool:
    prefix, suffix = EXPERIMENT_STATES.split("*")
    return name.startswith(prefix) and name.endswith(suffix)
