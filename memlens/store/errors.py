"""Errors of the trace store; each message is one paragraph: what was expected, what was found, what to do.

All derive from `TraceStoreError`, itself a `memlens.errors.UserError`, so the CLI prints them without a
traceback. Each also derives from the builtin a caller would naturally catch (`ValueError`,
`FileNotFoundError`, `KeyError`, `FileExistsError`, `PermissionError`).
"""

from __future__ import annotations

from memlens.errors import UserError


class TraceStoreError(UserError):
    """Base class of every trace-store error."""


class NotATraceStoreError(TraceStoreError, ValueError):
    """The path exists but holds something that is not a memlens trace store; nothing was changed."""


class SchemaVersionError(TraceStoreError, ValueError):
    """The store was written with a schema this memlens cannot read or append to."""


class ProvenanceMismatchError(TraceStoreError, ValueError):
    """Appending to a store whose manifest (checkpoint, dataset, options, sites) differs from this capture's."""


class TraceStoreNotFoundError(TraceStoreError, FileNotFoundError):
    """No trace store at the path."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class EpisodeNotFoundError(TraceStoreError, KeyError):
    """The episode is not committed in the store (never captured, deleted, or still being written)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class EpisodeExistsError(TraceStoreError, FileExistsError):
    """The episode is already committed and the store was not created with ``overwrite=True``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ReadOnlyStoreError(TraceStoreError, PermissionError):
    """A write on a store opened with `TraceStore.open` (read-only)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CorruptEpisodeError(TraceStoreError):
    """A committed episode whose metadata or chunk data cannot be decoded; other episodes are unaffected.

    ``episode`` is the episode index, ``array`` the array name (None when the episode's own metadata is bad).
    """

    def __init__(self, message: str, *, episode: int, array: str | None = None):
        super().__init__(message)
        self.episode = episode
        self.array = array
