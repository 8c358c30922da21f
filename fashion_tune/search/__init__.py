"""The run of a study: the Tuner and every Ray Tune plug-in beside it, the package's only Tune code.

    study.py          new_study, resume_study: the study's folder, record and Ray session; builds,
                      restores and fits the Tuner; records the run's end and writes the reports
    trainable.py      one trial: build, fit epoch by epoch, report and checkpoint to Tune
    searcher.py       OptunaSearch with its study in optuna.db; a stopped trial reaches Optuna as pruned
    schedulers.py     --scheduler: ASHA, synchronous successive halving, HyperBand, the i-epoch cut
    time_budget.py    a Tune stopper: the study ends when its minutes, over all its runs, are spent
    progress.py       a Tune callback: what a study prints while it runs, trial by trial
    trial_events.py   a Tune logger: each trial's TensorBoard curves and HParams session
    trial_records.py  Tune's loggers of result.json and progress.csv, kept whole across pauses
    replay.py         --replay: trials that report recorded learning curves instead of training

Laid out as Ray Tune's own extension points are (tune/search, schedulers, stopper, logger,
callback). Ray is imported only here, in serve.py and in ray_start.py (tests/test_layout.py).
Importing this package imports neither Ray nor TensorFlow: study.py imports them when a study runs.
"""

from fashion_tune.search.study import new_study, resume_study, trial_name

# trial_name: Tune pickled it by this path in studies begun before the plug-ins moved here (study.MOVED).
__all__ = ["new_study", "resume_study", "trial_name"]
