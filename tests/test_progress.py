"""What a study prints, in our words: Tune's own lines that would point the user at Tune's API or
into the study's folder are replaced or dropped while a study runs (search/study.py attaches these)."""

import logging

from fashion_tune.search.progress import InterruptInOurWords, UnreportedTrialsInOurWords


def emitted(logger_name: str, words: logging.Filter, message: str, caplog) -> list[str]:
    logger = logging.getLogger(logger_name)
    logger.addFilter(words)
    try:
        with caplog.at_level(logging.WARNING, logger=logger_name):
            caplog.clear()
            logger.warning(message)
            return [r.getMessage() for r in caplog.records]
    finally:
        logger.removeFilter(words)


def test_a_trial_caught_before_its_first_epoch_is_not_reported_as_a_missing_file(caplog):
    # Ray 2.60's ExperimentAnalysis._fetch_trial_dataframes, for a trial interrupted before it reported.
    warning = ("Failed to fetch metrics for 1 trial(s):\n- trial_169e5fb6: FileNotFoundError('Could not fetch metrics "
               "for trial_169e5fb6: both result.json and progress.csv were not found at /r/s/trial_169e5fb6')")
    words = UnreportedTrialsInOurWords()
    assert emitted(words.LOGGER, words, warning, caplog) == []
    assert emitted(words.LOGGER, words, "something else Tune warns of", caplog) == ["something else Tune warns of"]


def test_tunes_resume_hint_is_replaced_by_ours(caplog):
    words = InterruptInOurWords("cut")
    assert emitted(words.LOGGER, words, "Wait for the experiment to finish, then use Tuner.restore(...)", caplog) == []
    assert emitted(words.LOGGER, words, "Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run.",
                   caplog) == ["interrupted: saving the study's state for --resume cut (Ctrl-C again skips this)"]



def test_the_best_so_far_is_against_every_ended_trial_also_after_a_resume(caplog):
    import pickle
    from types import SimpleNamespace

    from fashion_tune.search.progress import StudyProgress

    def running(trial_id, value):
        return SimpleNamespace(trial_id=trial_id, status="RUNNING",
                               last_result={"training_iteration": 3, "val_accuracy": value, "val_loss": 1 - value})

    def completions(progress, trials, ending):
        """Whether each trial of `ending` is called the best so far as it ends (in that order)."""
        with caplog.at_level(logging.INFO, logger="fashion_tune.search"):
            caplog.clear()
            for trial in ending:
                trial.status = "TERMINATED"
                progress.on_trial_complete(0, trials, trial)
            return [r.getMessage().endswith("the best so far") for r in caplog.records]

    progress = StudyProgress("val_accuracy", "max", 3, ["learning_rate"], "ASHA")
    first = [running("a", 0.80), running("b", 0.70), running("c", 0.85), running("d", 0.85)]
    assert completions(progress, first, first) == [True, False, True, False]  # a tie is not better
    # A resumed driver unpickles the callback: the trials that ended in the run before count.
    later = [running("e", 0.84), running("f", 0.9)]
    assert completions(pickle.loads(pickle.dumps(progress)), first + later, later) == [False, True]
    minimising = StudyProgress("val_loss", "min", 3, [], None)
    assert completions(minimising, first[:2], first[:2]) == [True, False]  # losses 0.2, then 0.3
