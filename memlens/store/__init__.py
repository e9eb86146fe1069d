"""The trace store: what `memlens capture` writes and analysis reads (numpy arrays and JSON, no torch).

Each episode is a Zarr v3 group of named arrays plus JSON attrs, committed atomically; packs
(`memlens.store.packs`) consolidate committed episodes for fast whole-store reads. See
`memlens.store.format` for the layout and ``docs/trace_store.md`` for the guide.
"""

from memlens.store.errors import (
    CorruptEpisodeError,
    EpisodeExistsError,
    EpisodeNotFoundError,
    NotATraceStoreError,
    ProvenanceMismatchError,
    ReadOnlyStoreError,
    SchemaVersionError,
    TraceStoreError,
    TraceStoreNotFoundError,
)
from memlens.store.format import SCHEMA_VERSION
from memlens.store.packs import PackedArray
from memlens.store.store import EpisodeTrace, LazyArray, TraceStore

__all__ = [
    "SCHEMA_VERSION",
    "CorruptEpisodeError",
    "EpisodeExistsError",
    "EpisodeNotFoundError",
    "EpisodeTrace",
    "LazyArray",
    "NotATraceStoreError",
    "PackedArray",
    "ProvenanceMismatchError",
    "ReadOnlyStoreError",
    "SchemaVersionError",
    "TraceStore",
    "TraceStoreError",
    "TraceStoreNotFoundError",
]
