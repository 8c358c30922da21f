"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """A mistake the user can fix (a bad file, key, value or path).

    The message names the file, key or value and the rule it breaks, in one line.
    """


class StudyInterrupted(UserError):
    """A study stopped before its end (Ctrl-C); Tune saved its state and --resume continues it.

    The CLI exits with 130, the conventional code for an interrupted command.
    """
