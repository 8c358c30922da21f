"""Pushing a running study's working copy to its bucket (storage.py), at each of Tune's snapshots
and at the study's end. Each push happens while Tune writes the snapshot, before Tune uploads it:
the study's files in the bucket (optuna.db above all, which the searcher's saved state refers to)
are never older than the snapshot --resume restores from.

Tune pickles this callback with the study, and --resume unpickles it by its module path.
"""

from __future__ import annotations

import logging
import time

from ray.tune import Callback

from fashion_tune import storage

log = logging.getLogger(__name__)


class StudyUpload(Callback):
    """Pushes the working copy of study `name` to the bucket `results_dir` when Tune snapshots it."""

    def __init__(self, results_dir: str, name: str):
        self.results_dir, self.name = results_dir, name
        self._pushed = None  # the pusher, made at the first push (it lists the bucket)

    def point_at(self, results_dir: str, name: str) -> None:
        """The study where --resume finds it now (copied or renamed since it was pickled)."""
        self.results_dir, self.name, self._pushed = results_dir, name, None

    def get_state(self):
        """Called by Tune while it writes a snapshot."""
        self.push()
        return None

    def on_experiment_end(self, trials, **info):
        self.push()

    def push(self) -> None:
        began = time.perf_counter()
        self._pushed = self._pushed or storage.Bucket(self.results_dir).pusher(self.name)
        count = self._pushed.push()
        log.debug("pushed %d files of study %s to %s in %.2f s", count, self.name, self.results_dir,
                  time.perf_counter() - began)

    def __reduce__(self):
        # what was pushed is this run's to know: a resumed run lists the bucket afresh
        return StudyUpload, (self.results_dir, self.name)
