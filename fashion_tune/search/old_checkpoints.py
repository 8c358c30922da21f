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
restores from a checkpoint that still exists. "That snapshot" is told by Tune's step count, which
each snapshot holds: Tune copies snapshots to the study's folder in the background and skips a copy
while the one before is still going, so a file written there after a snapshot may hold the one
before it (a file's time once let this callback delete a checkpoint the stored snapshot named).
A trial keeps its newest checkpoint, and while it runs the few saved since the last snapshot (a driver
killed outright leaves those few, until the run that resumes the study ends: tests/test_replay.py
kills one). Tune pickles this callback with the study, and --resume unpickles it by its module path.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict

import pyarrow.fs
from ray.tune import Callback

from fashion_tune.layout import EXPERIMENT_STATES


class OldCheckpoints(Callback):
    """Deletes each trial's checkpoints older than the one the study's last stored snapshot names."""

    def __init__(self):
        self._saved: dict[str, list] = defaultdict(list)  # trial id -> its checkpoints this run, oldest first
        self._named: dict[str, str] = {}  # trial id -> the newest checkpoint's path at the last snapshot
        self._named_step = 0  # Tune's step count written in that snapshot
        self._step = 0  # Tune's step count, as Tune tells its callbacks
        self._storage = None  # the study's StorageContext, from the first trial that saves one

    def on_step_begin(self, iteration, trials, **info):
        self._step = iteration  # a snapshot taken in this step holds it

    def on_step_end(self, iteration, trials, **info):
        self._step = iteration  # the last snapshot, after Tune's last step, holds this one

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self._saved[trial.trial_id].append(checkpoint)
        self._storage = self._storage or trial.storage

    def get_state(self):
        """Called by Tune while it writes a snapshot (after the trials' states): the checkpoints the
        previous snapshot named are safe to keep alone once that snapshot is stored; this one's are
        noted."""
        self._delete_unnamed()
        self._named = {trial_id: saved[-1].path for trial_id, saved in self._saved.items() if saved}
        self._named_step = self._step
        return None  # nothing to restore: a resumed study starts with no checkpoints of its run

    def on_experiment_end(self, trials, **info):
        """Tune stored its last snapshot (forced, waited for) before ending: the checkpoint it names
        for each trial is all a --resume needs. The older ones go, those a driver killed outright
        left behind in an earlier run included."""
        if not self._storage or not self._snapshot_stored(self._named_step):
            return
        for trial in trials:
            if trial.checkpoint is not None:
                _delete_older_than(trial.checkpoint)

    def __reduce__(self):
        return OldCheckpoints, ()  # the study's pickle holds a fresh one: the lists are this run's

    def _delete_unnamed(self) -> None:
        if not self._named or not self._snapshot_stored(self._named_step):
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

    def _snapshot_stored(self, step: int) -> bool:
        """Whether the newest snapshot in the study's storage (the one --resume reads) was written at
        Tune's step `step` or later. Its step count sits near its end (Tune writes runner_data after the
        trials); a file caught while it is copied reads as an earlier step or none."""
        fs, folder = self._storage.storage_filesystem, self._storage.experiment_fs_path
        names = [info.base_name for info in fs.get_file_info(pyarrow.fs.FileSelector(folder))
                 if info.type == pyarrow.fs.FileType.File and _is_snapshot(info.base_name)]
        if not names:
            return False
        with fs.open_input_file(posixpath.join(folder, max(names))) as snapshot:  # Tune's choice: max name
            size = snapshot.size()
            snapshot.seek(max(0, size - _TAIL_BYTES))
            counts = _STEP.findall(snapshot.read())
            if not counts and size > _TAIL_BYTES:  # a runner state larger than usual: read it all
                snapshot.seek(0)
                counts = _STEP.findall(snapshot.read())
        return bool(counts) and int(counts[-1]) >= step


def _delete_older_than(checkpoint) -> None:
    """Delete the checkpoints saved before this one in its trial's folder (Tune numbers them in order:
    checkpoint_000007 comes after checkpoint_000006)."""
    fs, folder = checkpoint.filesystem, posixpath.dirname(checkpoint.path)
    name = posixpath.basename(checkpoint.path)
    for info in fs.get_file_info(pyarrow.fs.FileSelector(folder)):
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_") \
                and info.base_name < name:
            fs.delete_dir(info.path)


_STEP = re.compile(rb'"_iteration": (\d+)')  # TuneController's step count, in a snapshot's runner_data
_TAIL_BYTES = 16 * 1024  # it sits about 1.2 KB from the end at 10,000 trials


def _is_snapshot(name: str) -> bool:
    prefix, suffix = EXPERIMENT_STATES.split("*")
    return name.startswith(prefix) and name.endswith(suffix)
