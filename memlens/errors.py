"""Errors that carry a one-paragraph explanation for the user (what was expected, found, to do)."""


class UserError(Exception):
    """Bad input: the CLI prints the message as one paragraph, without a traceback, and exits with 2."""
