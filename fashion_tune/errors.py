"""The two ways a command ends early that the CLI turns into one line and an exit code."""


class UserError(Exception):
    """A mistake the user can fix (a bad file, key, value or path): exit code 2.

    The message names the file, key or value and the rule it breaks, in one line.
    """


class Interrupted(Exception):
    """A search or retrain stopped before its end (Ctrl-C): not a mistake; its state is saved and
    the message says how to go on. The CLI exits with 130, the conventional code for an interrupted
    command."""
