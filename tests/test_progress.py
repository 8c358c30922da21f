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
