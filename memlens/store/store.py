"""`TraceStore`: episodes of captured arrays (numpy in, lazy Zarr out), committed atomically, one per group.

    >>> store = TraceStore.create("runs/trace", manifest={"provenance": {...}, "sites": {...}})
    >>> for ep in dataset_episodes:
    ...     if not store.has_episode(ep):  # resume: committed episodes are skipped
    ...         store.write_episode(ep, {"memory/write": mem}, {"length": T, "task": "..."})
    >>> trace = TraceStore.open("runs/trace")           # read-only; works while a writer is writing
    >>> trace.episodes()                                # [0, 1, 2, ...] committed episodes only
    >>> ep = trace.episode(3)
    >>> ep.attrs["task"], ep.names                      # json attrs, array names
    >>> ep["memory/write"][10:20]                       # lazy: reads only the chunks of steps 10..19
    >>> ep.load("memory/write")                         # the whole array as np.ndarray
    >>> trace.gather("memory/write")                    # every episode's, concatenated, and row offsets
    >>> store.pack()                                    # writer: consolidate committed episodes (packs)

The on-disk layout and the reasons for Zarr v3 are in `memlens.store.format` and ``docs/trace_store.md``.
"""

from __future__ import annotations

import copy
import datetime
import errno
import json
import math
import operator
import os
import threading
from collections.abc import Mapping

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from memlens import __version__
from memlens.store.backends import _HOST, open_backend
from memlens.store.errors import (
    CorruptEpisodeError,
    EpisodeExistsError,
    EpisodeNotFoundError,
    NotATraceStoreError,
    ProvenanceMismatchError,
    ReadOnlyStoreError,
    SchemaVersionError,
    TraceStoreNotFoundError,
)
from memlens.store import packs as _packs
from memlens.store.format import (
    COMMIT_MARKER,
    EPISODES_DIR,
    FORMAT_NAME,
    MANIFEST_NAME,
    SCHEMA_VERSION,
    ZARR_JSON,
    ZSTD_LEVEL,
    build_manifest,
    check_against_sites,
    check_array_name,
    check_name_set,
    choose_chunks,
    episode_name,
    manifest_differences,
    to_json,
)

_COMPRESSORS = (ZstdCodec(level=ZSTD_LEVEL, checksum=True),)
# What a damaged chunk or metadata file raises inside zarr/numcodecs (zstd: RuntimeError; bad JSON:
# ValueError; missing zarr.json: zarr's NodeNotFoundError, a FileNotFoundError). Bad selections raise
# IndexError (and TypeError), which are not caught. Metadata that parses but lacks fields: KeyError/TypeError.
_DATA_ERRORS = (RuntimeError, ValueError, OSError)
_META_ERRORS = (RuntimeError, ValueError, OSError, KeyError, TypeError)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _index(ep) -> int:
    if isinstance(ep, bool):
        raise TypeError(f"Episode index must be an int, got {ep!r}.")
    ep = operator.index(ep)
    if ep < 0:
        raise ValueError(f"Episode index must be >= 0, got {ep}.")
    return ep


def _dumps(obj) -> bytes:
    return json.dumps(obj, indent=2, allow_nan=False).encode()


def _few(items, n: int = 6) -> str:
    items = list(items)
    return ", ".join(map(str, items[:n])) + (f", ... ({len(items)} in all)" if len(items) > n else "")


class TraceStore:
    """A trace store at a local path or fsspec URL. Build with `create` (writer) or `open` (read-only)."""

    def __init__(self, backend, manifest: dict, *, overwrite: bool = False):
        self._backend = backend
        self._manifest = manifest
        self._overwrite = overwrite
        self._pack_state: _packs.PackIndex | None = None  # listed on first need
        self._pack_lock = threading.Lock()

    # --- constructors ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, path_or_url, *, manifest: Mapping, overwrite: bool = False,
               storage_options: dict | None = None) -> TraceStore:
        """Open the store at ``path_or_url`` for writing, creating it if needed.

        - nothing there, or an empty directory: a new store with this manifest;
        - a trace store with the same provenance and sites (except ``provenance["episodes"]``): opened for
          appending; the caller skips what `has_episode` reports (resume, or several writers at once);
        - a trace store and ``overwrite=True``: its episodes are deleted and the manifest replaced, and
          `write_episode` may replace committed episodes;
        - anything else (a file, a directory without ``manifest.json``): `NotATraceStoreError`, nothing touched.

        ``manifest`` is ``{"provenance": {...}, "sites": {name: {"kind", "shape", "dtype"?, "description"?}}}``.
        Raises `ProvenanceMismatchError` when appending to a store captured differently, and
        `SchemaVersionError` for a store of another schema version. Staging leftovers of dead writers
        (crashed or killed) are removed here.
        """
        new = build_manifest(manifest, created_at=_now())
        backend = open_backend(path_or_url, read_only=False, storage_options=storage_options)
        kind = backend.root_kind()
        existing = None
        if kind == "file":
            raise NotATraceStoreError(_not_a_store(backend, "a file", creating=True))
        if kind == "dir":
            existing = _read_manifest(backend, creating=True)
            if existing is None:
                entries = [e for e in backend.list_root() if not backend.is_own_leftover(e)]
                if entries:
                    raise NotATraceStoreError(_not_a_store(
                        backend, f"a non-empty directory without {MANIFEST_NAME} ({_few(entries)})", creating=True))
        if existing is not None and overwrite:
            backend.clear_packs()  # before the episodes they hold
            backend.clear_episodes()
            backend.replace_manifest(_dumps(new))
            existing = new
        elif existing is None:
            backend.create_manifest(_dumps(new))
            existing = _read_manifest(backend, creating=True)  # ours, or a concurrent creator's
        version = existing["schema_version"]
        if version != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"The trace store at {backend.url} uses schema version {version}, but this memlens ({__version__}) "
                f"writes version {SCHEMA_VERSION}, so it cannot append to it. "
                + ("Upgrade memlens to append to it, " if version > SCHEMA_VERSION else "")
                + "pass overwrite=True (memlens capture --overwrite) to replace it, or write to another path.")
        diffs = manifest_differences(existing, new)
        if diffs:
            more = f" (and {len(diffs) - 5} more)" if len(diffs) > 5 else ""
            raise ProvenanceMismatchError(
                f"The trace store at {backend.url} was captured with a different setup, so this capture cannot "
                f"append to it: {'; '.join(diffs[:5])}{more}. Appending would mix traces of different checkpoints, "
                "data or options. Pass overwrite=True (memlens capture --overwrite) to replace the store, or "
                "write to another path.")
        backend.ensure_layout()
        backend.clean_staging()
        return cls(backend, existing, overwrite=overwrite)

    @classmethod
    def open(cls, path_or_url, *, storage_options: dict | None = None) -> TraceStore:
        """Open a trace store read-only (safe while writers are appending to it)."""
        backend = open_backend(path_or_url, read_only=True, storage_options=storage_options)
        kind = backend.root_kind()
        if kind == "missing":
            raise TraceStoreNotFoundError(
                f"No trace store at {backend.url}: the path does not exist. Expected a directory written by "
                "`memlens capture` (holding manifest.json and episodes/). Check the path, or capture a trace first.")
        if kind == "file":
            raise NotATraceStoreError(_not_a_store(backend, "a file", creating=False))
        manifest = _read_manifest(backend, creating=False)
        if manifest is None:
            entries = backend.list_root()
            found = f"a directory without {MANIFEST_NAME} ({_few(entries)})" if entries else "an empty directory"
            raise NotATraceStoreError(_not_a_store(backend, found, creating=False))
        if manifest["schema_version"] > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"The trace store at {backend.url} uses schema version {manifest['schema_version']}, newer than the "
                f"version {SCHEMA_VERSION} this memlens ({__version__}) reads. Upgrade memlens to read it.")
        return cls(backend, manifest)

    # --- the store ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The store's location: an absolute local path, or the fsspec URL."""
        return self._backend.url

    @property
    def read_only(self) -> bool:
        return self._backend.read_only

    @property
    def manifest(self) -> dict:
        """``{"format", "schema_version", "created_at", "provenance", "sites"}`` (a copy)."""
        return copy.deepcopy(self._manifest)

    @property
    def provenance(self) -> dict:
        return copy.deepcopy(self._manifest["provenance"])

    @property
    def sites(self) -> dict:
        """Declared capture sites: name -> ``{"kind", "shape" (ints and symbolic dims), "dtype"?, ...}``."""
        return copy.deepcopy(self._manifest["sites"])

    def episodes(self) -> list[int]:
        """Committed episodes, sorted; re-read from storage on every call (sees other writers' commits)."""
        return self._backend.committed()

    def has_episode(self, ep: int) -> bool:
        return self._backend.is_committed(episode_name(_index(ep)))

    def __contains__(self, ep) -> bool:
        return self.has_episode(ep)

    def refresh(self) -> None:
        """List ``packs/`` again (this object lists it once, on first need; `gather` re-lists it too)."""
        self._pack_index().refresh()

    def _pack_index(self) -> _packs.PackIndex:
        with self._pack_lock:
            if self._pack_state is None:
                self._pack_state = _packs.PackIndex(self._backend, self._manifest.get("created_at"))
            return self._pack_state

    def __repr__(self) -> str:
        return f"TraceStore({self.url!r}, read_only={self.read_only})"

    # --- writing --------------------------------------------------------------------------------------
    def _check_writable(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(
                f"Cannot {what}: the trace store at {self.url} was opened read-only with TraceStore.open. "
                "Open it with TraceStore.create(path, manifest=...) (same manifest as the capture) to write.")

    def write_episode(self, ep: int, arrays: Mapping[str, np.ndarray], attrs: Mapping | None = None) -> None:
        """Write one episode and commit it atomically (readers see all of it or none of it).

        ``arrays``: name -> numeric array, each a site declared in the manifest (rank, fixed dims and dtype
        are checked; a symbolic dim such as ``"T"`` must have one size within the episode). ``attrs``: JSON
        metadata (length, task, labels...); ``episode_index`` is added. Raises `EpisodeExistsError` if the
        episode is committed (by this or a concurrent writer) unless the store was created with overwrite.
        """
        self._check_writable("write an episode")
        ep = _index(ep)
        name = episode_name(ep)
        if not isinstance(arrays, Mapping) or not arrays:
            raise ValueError(f"Episode {ep}: arrays must be a non-empty dict name -> np.ndarray, got {arrays!r:.80}.")
        arrays = {n: np.asarray(a) for n, a in arrays.items()}
        for n, a in arrays.items():
            check_array_name(n)
            if a.dtype.kind not in "biufc":
                raise ValueError(f"Episode {ep}: array {n!r} has dtype {a.dtype}; the store holds numeric and bool "
                                 "arrays only. Put text and labels in attrs.")
        check_name_set(list(arrays))
        check_against_sites(arrays, self._manifest["sites"], episode=ep)
        attrs = to_json(dict(attrs or {}), f"attrs of episode {ep}")
        if attrs.get("episode_index", ep) != ep:
            raise ValueError(f"Episode {ep}: attrs['episode_index'] is {attrs['episode_index']!r}; leave it out "
                             "(the store sets it) or make it equal to the episode index.")
        attrs = {"episode_index": ep, **attrs}
        if not self._overwrite and self._backend.is_committed(name):
            raise EpisodeExistsError(self._exists_message(ep))
        _packs.invalidate(self, [ep])  # a pack holding an older version of it (replaced, or deleted before)
        zstore, token = self._backend.begin_episode(name, replace=self._overwrite)
        try:
            group = zarr.create_group(store=zstore, attributes=attrs, zarr_format=3)
            info = {}
            for n, a in arrays.items():
                chunks = choose_chunks(a.shape, a.dtype.itemsize)
                group.create_array(n, data=a, chunks=chunks, compressors=_COMPRESSORS,
                                   config={"write_empty_chunks": True})
                info[n] = {"shape": list(a.shape), "dtype": a.dtype.name, "chunks": list(chunks)}
            marker = {"episode_index": ep, "arrays": dict(sorted(info.items())), "committed_at": _now(),
                      "writer": {"host": _HOST, "pid": os.getpid(), "memlens": __version__}}
            committed = self._backend.commit_episode(name, token, _dumps(marker), replace=self._overwrite)
        except BaseException:
            self._backend.abort_episode(token)
            raise
        if not committed:
            self._backend.abort_episode(token)
            raise EpisodeExistsError(self._exists_message(ep, concurrent=True))
        if self._overwrite:
            _packs.invalidate(self, [ep])  # packed by a concurrent pack() before the commit

    def _exists_message(self, ep: int, concurrent: bool = False) -> str:
        how = "another writer committed it while this one was writing" if concurrent else "it is already committed"
        return (f"Episode {ep} cannot be written to the trace store at {self.url}: {how}. Skip committed episodes "
                "(store.has_episode(ep)) to resume, delete it first (store.delete_episode(ep)), or create the store "
                "with overwrite=True (memlens capture --overwrite) to start over.")

    def delete_episode(self, ep: int) -> None:
        """Uncommit one episode atomically, then remove its files; a no-op if it is not there.

        The way to re-capture a corrupted episode: delete it, then rerun the capture (it resumes).
        """
        self._check_writable("delete an episode")
        ep = _index(ep)
        _packs.invalidate(self, [ep])
        self._backend.delete_episode(episode_name(ep))

    def pack(self, consolidate: bool = False) -> str | None:
        """Consolidate committed episodes into a pack, so reading an array of every episode (`gather`,
        `memlens.analysis.memory_states`) is a few large reads; returns the (last) new pack's name.

        Packs every committed episode no valid pack covers into new packs of at most 1,000 episodes each
        (None if there are none);
        ``consolidate=True`` writes packs of every committed episode, then deletes the others (None if
        that is what is there). Packs whose episodes were deleted or replaced behind their back are deleted.
        Episodes are not changed. See ``docs/trace_store.md``, "Packs".
        """
        self._check_writable("pack the episodes")
        try:
            return _packs.write_pack(self, consolidate=consolidate)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise ReadOnlyStoreError(
                f"Cannot pack the trace store at {self.url}: it cannot be written here ({e.strerror}: {e.filename}). "
                "Nothing was changed; it reads as before (episode by episode, slower). Pack it where it is "
                "writable (memlens store pack PATH), or copy it somewhere writable first.") from None

    def packs(self) -> dict[str, dict]:
        """The store's packs, listed now: name -> ``{"episodes": [...], "packed_at",
        "arrays": {array: {"episodes": n, "rows": n, "nbytes": raw bytes}}}``."""
        return _packs.summary(self)

    def gather(self, name: str, episodes=None) -> tuple[np.ndarray, np.ndarray]:
        """The array ``name`` of ``episodes`` (default: all committed) concatenated along axis 0, in the order
        given, and the row offsets ``[len(episodes) + 1]``: episode ``episodes[i]`` is rows
        ``offsets[i]:offsets[i + 1]``. Served from packs where they hold it, otherwise read per episode
        (concurrently). `EpisodeNotFoundError` for an episode not committed, `KeyError` for one lacking it.
        """
        return _packs.gather(self, name, episodes)

    # --- reading --------------------------------------------------------------------------------------
    def episode(self, ep: int) -> EpisodeTrace:
        """The committed episode ``ep`` (metadata read now, arrays lazily). `EpisodeNotFoundError` if absent.

        A packed episode's metadata comes from its pack (no file read but the committed check)."""
        return self._episode(_index(ep))

    def _episode(self, ep: int) -> EpisodeTrace:
        name = episode_name(ep)
        if not self._backend.is_committed(name):
            raise _not_found(self, ep, self.episodes())
        pack = self._pack_index().live_pack_of(ep)
        try:
            if pack is not None:
                return EpisodeTrace(self, ep, {n: dict(i) for n, i in pack.arrays_of(ep).items()},
                                    copy.deepcopy(pack.attrs[ep]), pack=pack)
        except _META_ERRORS:
            pass  # a damaged marker in pack.json: the episode's own files say what it is
        try:
            marker = json.loads(self._backend.read_bytes(f"{EPISODES_DIR}/{name}/{COMMIT_MARKER}"))
            group = json.loads(self._backend.read_bytes(f"{EPISODES_DIR}/{name}/{ZARR_JSON}"))
            arrays = {n: {"shape": tuple(i["shape"]), "dtype": np.dtype(i["dtype"]), "chunks": tuple(i["chunks"])}
                      for n, i in marker["arrays"].items()}
            attrs = dict(group["attributes"])
        except FileNotFoundError as e:
            if not self._backend.is_committed(name):  # deleted meanwhile
                return self._episode(ep)
            raise _corrupt(self, ep, None, e) from e
        except _META_ERRORS as e:
            raise _corrupt(self, ep, None, e) from e
        return EpisodeTrace(self, ep, arrays, attrs)


def _not_found(store: TraceStore, ep: int, eps: list[int]) -> EpisodeNotFoundError:
    return EpisodeNotFoundError(
        f"Episode {ep} is not in the trace store at {store.url}: it holds {len(eps)} committed episodes"
        + (f" ({_few(eps)})" if eps else "") + ". It may not be captured yet, still being written, "
        "or deleted; run `memlens capture` on it (it resumes and adds missing episodes).")


def _corrupt(store: TraceStore, ep: int, array: str | None, e: BaseException) -> CorruptEpisodeError:
    what = f"reading array {array!r}" if array else "reading its metadata (zarr.json, .committed)"
    where = store._backend.location(f"{EPISODES_DIR}/{episode_name(ep)}")
    return CorruptEpisodeError(
        f"Episode {ep} of the trace store at {store.url} is corrupted: {what} failed ({type(e).__name__}: {e}). "
        f"The other episodes are not affected. Re-capture this episode: delete it "
        f"(TraceStore.create(path, manifest=...).delete_episode({ep}), or remove {where}) and rerun "
        "`memlens capture` with the same arguments; it resumes and captures only the missing episodes.",
        episode=ep, array=array)


class EpisodeTrace:
    """One committed episode: ``attrs`` (dict), ``names`` (array names), lazy arrays by name."""

    def __init__(self, store: TraceStore, index: int, arrays: dict, attrs: dict, *, pack=None):
        self._store = store
        self.index = index
        self._arrays = arrays
        self.attrs = attrs
        self._pack = pack  # the pack serving its packed arrays, or None

    @property
    def names(self) -> list[str]:
        """Array names, sorted (``"/"`` separates nested groups: ``"attention/mem_to_groups"``)."""
        return list(self._arrays)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """name -> shape, from the commit marker (no array is opened)."""
        return {n: i["shape"] for n, i in self._arrays.items()}

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    def __getitem__(self, name: str) -> LazyArray | _packs.PackedArray:
        """The array ``name``, lazily: slicing it reads only the chunks the slice touches (a packed array:
        a `PackedArray` over its pack's chunks, read once per store object)."""
        if name not in self._arrays:
            raise KeyError(f"Episode {self.index} has no array {name!r}; it has {self.names}.")
        rows = self._pack.rows(self.index, name) if self._pack is not None else None
        if rows is not None:
            return _packs.PackedArray(self, name, self._pack, rows)
        return self._lazy(name)

    def _lazy(self, name: str) -> LazyArray:
        """The episode's own Zarr array ``name`` (never the pack)."""
        path = f"{EPISODES_DIR}/{episode_name(self.index)}/{name}"
        try:
            arr = zarr.open_array(store=self._store._backend.zarr_root(), path=path, mode="r", zarr_format=3)
        except _META_ERRORS as e:
            raise _corrupt(self._store, self.index, name, e) from e
        if tuple(arr.shape) != self._arrays[name]["shape"] or arr.dtype != self._arrays[name]["dtype"]:
            raise _corrupt(self._store, self.index, name, ValueError(
                f"zarr.json says {arr.dtype}{list(arr.shape)}, the commit marker {self._arrays[name]}"))
        return LazyArray(arr, store=self._store, episode=self.index, name=name)

    def load(self, name: str) -> np.ndarray:
        """The whole array ``name`` as a numpy array."""
        return self[name][...]

    def verify(self) -> None:
        """Read every chunk of every array (checksums) and check none is missing; `CorruptEpisodeError` if not.

        It checks the episode's own files; a packed episode's commit marker must also equal its pack's."""
        if self._pack is not None:
            _packs.check_marker(self, self._pack)
        for name, info in self._arrays.items():
            arr = self._lazy(name)
            expected = math.prod(math.ceil(s / c) for s, c in zip(info["shape"], info["chunks"]))
            try:
                found = arr.zarr.nchunks_initialized
            except _DATA_ERRORS as e:
                raise _corrupt(self._store, self.index, name, e) from e
            if found != expected:
                raise _corrupt(self._store, self.index, name, FileNotFoundError(
                    f"{expected - found} of its {expected} chunk files are missing"))
            arr[...]

    def __repr__(self) -> str:
        return f"EpisodeTrace(index={self.index}, arrays={self.shapes})"


class LazyArray:
    """A committed Zarr array of an episode: numpy-style slicing reads only the chunks needed.

    Behaves like a read-only array (``shape``, ``dtype``, ``ndim``, ``len``, ``np.asarray``); the
    underlying ``zarr.Array`` is ``.zarr``. A damaged chunk raises `CorruptEpisodeError`.
    """

    def __init__(self, array: zarr.Array, *, store: TraceStore, episode: int, name: str):
        self.zarr = array
        self._store = store
        self.episode = episode
        self.name = name

    shape = property(lambda self: tuple(self.zarr.shape))
    dtype = property(lambda self: self.zarr.dtype)
    ndim = property(lambda self: self.zarr.ndim)
    chunks = property(lambda self: tuple(self.zarr.chunks))
    size = property(lambda self: math.prod(self.zarr.shape))
    nbytes = property(lambda self: self.size * self.zarr.dtype.itemsize)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __getitem__(self, selection) -> np.ndarray:
        try:
            return np.asarray(self.zarr[selection])
        except IndexError:
            raise
        except _DATA_ERRORS as e:
            raise _corrupt(self._store, self.episode, self.name, e) from e

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"LazyArray({self.name!r}, episode={self.episode}, shape={self.shape}, dtype={self.dtype})"


def _read_manifest(backend, *, creating: bool) -> dict | None:
    """The store's manifest, None if there is no manifest.json; `NotATraceStoreError` if it is not ours."""
    try:
        data = backend.read_bytes(MANIFEST_NAME)
    except FileNotFoundError:
        return None
    try:
        manifest = json.loads(data)
    except ValueError as e:
        raise NotATraceStoreError(_not_a_store(backend, f"a {MANIFEST_NAME} that is not valid JSON ({e})",
                                               creating=creating)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME \
            or not isinstance(manifest.get("schema_version"), int):
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise NotATraceStoreError(_not_a_store(
            backend, f"a {MANIFEST_NAME} of another kind (format {fmt!r}, not {FORMAT_NAME!r})", creating=creating))
    return manifest


def _not_a_store(backend, found: str, *, creating: bool) -> str:
    todo = ("Choose a new or empty directory for the trace (overwrite=True / --overwrite only ever replaces a "
            "trace store, never other data)" if creating else "Pass the path of a trace store")
    return (f"{backend.url} is not a memlens trace store: expected a directory holding {MANIFEST_NAME} "
            f"(format {FORMAT_NAME!r}) and {EPISODES_DIR}/, as written by `memlens capture`, but found {found}. "
            f"Nothing was changed. {todo}.")
