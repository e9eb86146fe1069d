"""Errors that carry a one-paragraph explanation for the user (what was expected, found, to do)."""


class UserError(Exception):
    """Bad input: the CLI prints the message as one paragraph, without a traceback, and exits with 2."""


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """The path or Hub id names no LeRobot policy checkpoint (a `FileNotFoundError` too)."""


class InvalidInputError(UserError, ValueError):
    """An argument out of its allowed values (a `ValueError` too, for library callers)."""


class OutputExistsError(UserError, FileExistsError):
    """The output path holds data memlens will not overwrite (a `FileExistsError` too)."""
