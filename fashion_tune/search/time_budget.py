"""A study's time budget (`--time-budget-min`, or `time_budget_min` in a space file's `search:`):
once the minutes are spent the study ends, as finished: trials still running stop where they are
(their epochs so far count), and no new one starts.

The minutes are the time the study ran, over all its runs (StudyRecord.running_seconds): a study
interrupted at minute 20 of 35 and resumed has 15 left. Tune's own `TuneConfig(time_budget_s)`
cannot count that way: `Tuner.restore` brings back the Tuner as it was first made, with its whole
budget. So the stopper reads the study's record (study.json) when a run begins instead.

Kept in its own module: Tune pickles the stopper with the Tuner, and --resume unpickles it by this
module path.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from ray.tune import Stopper

from fashion_tune.layout import StudyDir
from fashion_tune.records import StudyRecord

log = logging.getLogger("fashion_tune.search")


class TimeBudget(Stopper):
    """Ends the whole study once it has run `minutes`, counting every earlier run of it."""

    # The study this driver runs, where its folder is now: a copied or moved study's restored stopper
    # still names the folder it was begun in, and Tune restores it from its own snapshot of the run
    # (the controller's state), where nothing else can reach it. Set by study.py before fit().
    running: Optional[StudyDir] = None

    def __init__(self, minutes: float, study: StudyDir):
        self.minutes = minutes
        self.study = study
        self._record: Optional[StudyRecord] = None  # read once a run, at its first check
        self._said = False

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False  # no trial is stopped alone: stop_all ends them together

    def stop_all(self) -> bool:
        if self._record is None:  # study.py writes this run's start into the record before fit()
            self._record = StudyRecord.read((TimeBudget.running or self.study).record)
        ended = self._record.running_seconds(time.time()) >= self.minutes * 60
        if ended and not self._said:
            log.info("time budget of %s min spent: the trials still running stop where they are", f"{self.minutes:g}")
            self._said = True
        return ended

    def __getstate__(self):
        # Pickled with the Tuner before the study runs; a resumed run reads the record afresh.
        return {**self.__dict__, "_record": None, "_said": False}
