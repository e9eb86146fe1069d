"""Packs: committed episodes consolidated into few large arrays, so reading one array of every episode
is a handful of reads instead of thousands of small ones (each Zarr array read costs 3-5 ms).

A pack (``packs/p-<first>-<last>-<uuid8>/``, layout in `memlens.store.format`) is derived, immutable data:
for the episodes it covers, every packable array name (not ``frames/...``, not 0-d, at most 4 MiB per
episode) concatenated along axis 0, plus ``pack.json`` holding the row offsets and each episode's commit
marker and attrs. The episodes stay the source of truth; deleting ``packs/`` is always safe.

Rules (``docs/trace_store.md``, "Packs"):

- `write_pack` (``TraceStore.pack``) packs the committed episodes no valid pack covers, into one new pack;
  ``consolidate=True`` writes one pack of every committed episode, then deletes the others. A pack is
  valid while every episode it covers is committed with the commit marker recorded in ``pack.json``; the
  writer checks that (reading every marker) and deletes packs that fail it.
- Writers delete every pack covering an episode before deleting or replacing it (`invalidate`), and
  ``create(overwrite=True)`` deletes all packs first. Readers use a pack row only for an episode committed
  now, and only while the pack's ``pack.json`` exists (checked once per `gather`, once per ``episode()``);
  a pack recording another manifest ``created_at`` (the store was overwritten since) is never used.
- Several packs may cover an episode (two writers packing at once): the first by name is used.
- Readers list ``packs/`` once per `PackIndex` (one per `TraceStore` object); `gather` and
  ``TraceStore.refresh()`` list it again. Each chunk of a packed array is read once per index and kept in
  memory, read-only.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
import warnings

import numpy as np
import zarr

from memlens.store.format import (
    COMMIT_MARKER,
    EPISODES_DIR,
    PACK_FORMAT,
    PACK_INDEX,
    PACK_VERSION,
    PACKS_DIR,
    ZARR_JSON,
    episode_name,
    pack_chunk_rows,
    pack_name,
    packable,
    parse_pack_name,
)

_META_ERRORS = (RuntimeError, ValueError, OSError, KeyError, TypeError, AttributeError)
_BATCH = 512  # arrays read concurrently per call into zarr's event loop
PACK_EPISODES = 1000  # episodes per pack: opening one episode of a packed store parses one pack.json (~0.35 MB)


class PackGoneError(Exception):
    """A pack was deleted (or found unreadable) while being read: read the episode's own arrays instead."""


def marker_arrays(marker: dict) -> dict:
    """name -> {"shape", "dtype", "chunks"} from a commit marker, as `EpisodeTrace` holds them."""
    return {n: {"shape": tuple(i["shape"]), "dtype": np.dtype(i["dtype"]), "chunks": tuple(i["chunks"])}
            for n, i in marker["arrays"].items()}


class PackedArrayInfo:
    """One array of a pack: the episodes holding it, in pack order, and where their rows start."""

    def __init__(self, info: dict, covered: set[int]):
        self.episodes = [int(e) for e in info["episodes"]]
        self.offsets = np.asarray(info["offsets"], dtype=np.int64)
        self.tail = tuple(int(d) for d in info["shape_tail"])
        self.dtype = np.dtype(info["dtype"])
        self.chunk_rows = int(info["chunk_rows"])
        self.position = {e: i for i, e in enumerate(self.episodes)}
        if (len(self.offsets) != len(self.episodes) + 1 or self.offsets[0] != 0 or (np.diff(self.offsets) < 0).any()
                or len(self.position) != len(self.episodes) or not covered.issuperset(self.episodes)
                or self.chunk_rows < 1):
            raise ValueError("inconsistent episodes, offsets or chunk_rows")

    @property
    def total(self) -> int:
        return int(self.offsets[-1])


class Pack:
    """A parsed ``pack.json``. ``markers``/``attrs``: per covered episode, as committed."""

    def __init__(self, name: str, data: dict):
        if data.get("format") != PACK_FORMAT or not isinstance(data.get("pack_version"), int) \
                or data["pack_version"] > PACK_VERSION:
            raise ValueError(f"not a pack this memlens reads (format {data.get('format')!r}, "
                             f"version {data.get('pack_version')!r})")
        self.name = name
        self.packed_at = data.get("packed_at")
        self.store_created_at = data.get("store_created_at")
        self.episodes = [int(e) for e in data["episodes"]]
        self.covered = set(self.episodes)
        self.markers = {int(e): m for e, m in data["markers"].items()}
        self.attrs = {int(e): a for e, a in data["attrs"].items()}
        if set(self.markers) != self.covered or set(self.attrs) != self.covered:
            raise ValueError("markers and attrs must cover exactly the pack's episodes")
        self.arrays = {n: PackedArrayInfo(i, self.covered) for n, i in data["arrays"].items()}
        self._arrays_of: dict[int, dict] = {}

    def arrays_of(self, ep: int) -> dict:
        """Episode ``ep``'s arrays as its commit marker describes them (parsed on first use; shared)."""
        arrays = self._arrays_of.get(ep)
        if arrays is None:
            arrays = self._arrays_of[ep] = marker_arrays(self.markers[ep])
        return arrays

    def rows(self, ep: int, name: str) -> tuple[int, int] | None:
        """The rows ``[start, stop)`` of episode ``ep``'s array ``name`` in this pack, None if not packed."""
        info = self.arrays.get(name)
        i = info.position.get(ep) if info is not None else None
        return None if i is None else (int(info.offsets[i]), int(info.offsets[i + 1]))


class PackIndex:
    """The packs of one store as one reader sees them, and the packed chunks it has read (read-only)."""

    def __init__(self, backend, created_at):
        self._backend = backend
        self._created_at = created_at  # the manifest's: packs of a store since overwritten are ignored
        self._lock = threading.RLock()
        self.packs: dict[str, Pack] = {}
        self._bad: set[str] = set()  # pack.json unreadable, of another store, or data unreadable: not used
        self._names: list[str] = []  # listed in packs/, sorted; pack.json read on first need (`get`)
        self._blocks: dict[tuple[str, str, int], np.ndarray] = {}
        self._zarrs: dict[tuple[str, str], zarr.Array] = {}  # opened packed arrays
        self._listed = False

    def _list(self) -> None:
        """List ``packs/`` again and forget deleted packs (reads no ``pack.json``)."""
        names = sorted(self._backend.list_packs())
        with self._lock:
            for name in (set(self.packs) | self._bad) - set(names):
                self.forget(name)
            self._names = names
            self._listed = True

    def refresh(self) -> None:
        """List ``packs/`` again: forget deleted packs, read the ``pack.json`` of new ones."""
        self._list()
        for name in self._names:
            if name not in self.packs and name not in self._bad:
                self.get(name)

    def get(self, name: str) -> Pack | None:
        """The pack ``name`` (its ``pack.json`` read once), None while it has none or if it is unreadable."""
        with self._lock:
            if name in self.packs or name in self._bad:
                return self.packs.get(name)
            try:
                raw = self._backend.read_bytes(f"{PACKS_DIR}/{name}/{PACK_INDEX}")
            except FileNotFoundError:
                return None  # unfinished (or deleted): not a pack yet
            except OSError:
                return None
            try:
                pack = Pack(name, json.loads(raw))
            except _META_ERRORS:
                pack = None
            if pack is None or pack.store_created_at != self._created_at:
                self._bad.add(name)
                return None
            self.packs[name] = pack
            return pack

    def unusable(self) -> list[str]:
        """Packs whose ``pack.json`` is unreadable or from before the store was overwritten."""
        return sorted(self._bad)

    def forget(self, name: str) -> None:
        with self._lock:
            self.packs.pop(name, None)
            self._bad.discard(name)
            for cache in (self._blocks, self._zarrs):
                for key in [k for k in cache if k[0] == name]:
                    del cache[key]

    def pack_of(self, ep: int) -> Pack | None:
        """The first pack (by name) covering episode ``ep``. Only the packs whose names' episode range holds
        ``ep`` have their ``pack.json`` read, so opening one episode of a large store reads one small file."""
        if not self._listed:
            self._list()
        for name in list(self._names):
            span = parse_pack_name(name)
            if span is not None and not span[0] <= ep <= span[1]:
                continue
            pack = self.get(name)
            if pack is not None and ep in pack.covered:
                return pack
        return None

    def alive(self, pack: Pack) -> bool:
        """Whether ``pack.json`` of ``pack`` is still there (else the pack is forgotten)."""
        if self._backend.pack_exists(pack.name):
            return True
        self.forget(pack.name)
        return False

    def live_pack_of(self, ep: int) -> Pack | None:
        """`pack_of`, checked `alive`; a deleted pack makes the index list ``packs/`` again once."""
        pack = self.pack_of(ep)
        if pack is None or self.alive(pack):
            return pack
        self._list()
        pack = self.pack_of(ep)
        return pack if pack is None or self.alive(pack) else None

    def read(self, pack: Pack, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of the packed array ``name`` (read-only; chunks cached). `PackGoneError`."""
        info = pack.arrays[name]
        if stop <= start:
            return np.empty((0, *info.tail), info.dtype)
        rows = info.chunk_rows
        parts = []
        for c in range(start // rows, (stop - 1) // rows + 1):
            block, lo = self._block(pack, name, c), c * rows
            parts.append(block[max(start, lo) - lo : min(stop, lo + len(block)) - lo])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _block(self, pack: Pack, name: str, c: int) -> np.ndarray:
        key = (pack.name, name, c)
        block = self._blocks.get(key)
        if block is not None:
            return block
        info = pack.arrays[name]
        lo = c * info.chunk_rows
        try:
            arr = self._zarrs.get((pack.name, name))
            if arr is None:
                arr = zarr.open_array(store=self._backend.zarr_root(), path=f"{PACKS_DIR}/{pack.name}/{name}",
                                      mode="r", zarr_format=3)
                if tuple(arr.shape) != (info.total, *info.tail) or arr.dtype != info.dtype:
                    raise ValueError(f"zarr.json says {arr.dtype}{list(arr.shape)}, pack.json "
                                     f"{info.dtype}{[info.total, *info.tail]}")
                self._zarrs[(pack.name, name)] = arr
            block = np.asarray(arr[lo : min(lo + info.chunk_rows, info.total)])
        except _META_ERRORS as e:
            if self.alive(pack):  # not deleted meanwhile: damaged
                warnings.warn(
                    f"The pack {pack.name} of the trace store at {self._backend.url} cannot be read ({type(e).__name__}:"
                    f" {e}); its episodes are read one by one instead (slower, same data). Rebuild the packs with "
                    f"`memlens store pack {self._backend.url} --consolidate`.", stacklevel=4)
                with self._lock:
                    self.forget(pack.name)
                    self._bad.add(pack.name)
            raise PackGoneError(pack.name) from e
        if not self.alive(pack):  # deleted while reading: a missing chunk reads as zeros
            raise PackGoneError(pack.name)
        block.flags.writeable = False
        with self._lock:
            self._blocks[key] = block
        return block


class PackedArray:
    """An array of a packed episode, served from its pack's cached chunks: the `LazyArray` interface
    (``shape``, ``dtype``, ``ndim``, ``chunks`` (the episode's own), ``len``, slicing, ``np.asarray``).
    Slices are fresh numpy arrays; ``.zarr`` is the episode's own ``zarr.Array``."""

    def __init__(self, trace, name: str, pack: Pack, rows: tuple[int, int]):
        self._trace = trace
        self._pack = pack
        self._rows = rows
        self.episode = trace.index
        self.name = name
        info = trace._arrays[name]
        self.shape, self.dtype, self.chunks = info["shape"], info["dtype"], info["chunks"]

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape, dtype=np.int64)))
    nbytes = property(lambda self: self.size * self.dtype.itemsize)

    @property
    def zarr(self) -> zarr.Array:
        return self._trace._lazy(self.name).zarr

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __getitem__(self, selection) -> np.ndarray:
        try:
            data = self._trace._store._pack_index().read(self._pack, self.name, *self._rows)
        except PackGoneError:
            return self._trace._lazy(self.name)[selection]
        return np.array(data[selection])

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"PackedArray({self.name!r}, episode={self.episode}, shape={self.shape}, dtype={self.dtype}, " \
               f"pack={self._pack.name!r})"


def check_marker(trace, pack: Pack) -> None:
    """`EpisodeTrace.verify` of a packed episode: its own commit marker must be the one its pack recorded."""
    from memlens.store.errors import CorruptEpisodeError
    from memlens.store.store import _corrupt

    store = trace._store
    try:
        marker = json.loads(store._backend.read_bytes(f"{EPISODES_DIR}/{episode_name(trace.index)}/{COMMIT_MARKER}"))
    except _META_ERRORS as e:
        raise _corrupt(store, trace.index, None, e) from e
    if marker != pack.markers[trace.index]:
        raise CorruptEpisodeError(
            f"Episode {trace.index} of the trace store at {store.url} differs from its copy in the pack {pack.name} "
            "(the commit markers differ: the episode was replaced by a memlens without packs). Run `memlens store "
            f"pack {store.url}`: it deletes stale packs and packs again.", episode=trace.index)


def summary(store) -> dict[str, dict]:
    """`TraceStore.packs`."""
    index = store._pack_index()
    index.refresh()
    return {p.name: {"episodes": list(p.episodes), "packed_at": p.packed_at,
                     "arrays": {n: {"episodes": len(a.episodes), "rows": a.total,
                                    "nbytes": a.total * int(np.prod(a.tail, dtype=np.int64)) * a.dtype.itemsize}
                                for n, a in p.arrays.items()}}
            for p in sorted(index.packs.values(), key=lambda p: p.name)}


# --- reading episodes' own arrays, many at once ------------------------------------------------------

def read_episode_arrays(store, items: list[tuple[int, str, dict]]) -> list[np.ndarray]:
    """The whole arrays ``(episode, name, marker info)`` from the episodes' own Zarr groups, read concurrently
    (zarr's async API: about half the per-array cost of one-by-one reads). Errors as `LazyArray` raises them."""
    from zarr.api.asynchronous import open_array
    from zarr.core.sync import sync

    from memlens.store.errors import EpisodeNotFoundError
    from memlens.store.store import _corrupt

    root = store._backend.zarr_root()

    async def one(ep: int, name: str, info: dict):
        try:
            arr = await open_array(store=root, path=f"{EPISODES_DIR}/{episode_name(ep)}/{name}", mode="r",
                                   zarr_format=3)
            if tuple(arr.shape) != tuple(info["shape"]) or arr.dtype != info["dtype"]:
                raise ValueError(f"zarr.json says {arr.dtype}{list(arr.shape)}, the commit marker {info}")
            return np.asarray(await arr.getitem(...))
        except _META_ERRORS as e:
            return e

    async def batch(part):
        return await asyncio.gather(*(one(*item) for item in part))

    out: list[np.ndarray] = []
    for start in range(0, len(items), _BATCH):
        part = items[start : start + _BATCH]
        for (ep, name, _), result in zip(part, sync(batch(part)), strict=True):
            if isinstance(result, BaseException):
                if not store._backend.is_committed(episode_name(ep)):
                    raise EpisodeNotFoundError(
                        f"Episode {ep} of the trace store at {store.url} was deleted while it was being read; read "
                        "again (TraceStore.episodes() lists the episodes committed now).") from result
                raise _corrupt(store, ep, name, result) from result
            out.append(result)
    return out


def gather(store, name: str, episodes=None) -> tuple[np.ndarray, np.ndarray]:
    """Array ``name`` of ``episodes`` (default: every committed one) concatenated along axis 0, in the order
    given, and the row offsets ``[N + 1]`` (episode ``episodes[i]`` is rows ``offsets[i]:offsets[i + 1]``).

    Packed (episode, array) pairs come from the packs' cached chunks, the rest from the episodes (read
    concurrently). `EpisodeNotFoundError` for an episode not committed, `KeyError` for one lacking ``name``.
    """
    from memlens.store.store import _index, _not_found

    committed = store.episodes()
    eps = committed if episodes is None else [_index(e) for e in episodes]
    have = set(committed)
    absent = [e for e in eps if e not in have]
    if absent:
        raise _not_found(store, absent[0], committed)
    index = store._pack_index()
    index.refresh()
    parts: list[np.ndarray | None] = [None] * len(eps)
    alive: dict[str, bool] = {}
    rest = []
    for i, ep in enumerate(eps):
        pack = index.pack_of(ep)
        rows = pack.rows(ep, name) if pack is not None else None
        if rows is not None:
            if pack.name not in alive:
                alive[pack.name] = index.alive(pack)
            if alive[pack.name]:
                try:
                    parts[i] = index.read(pack, name, *rows)
                    continue
                except PackGoneError:
                    alive[pack.name] = False
        rest.append(i)
    if rest:
        traces = []
        for i in rest:
            traces.append(store._episode(eps[i]))
            if name not in traces[-1]:
                traces[-1][name]  # the KeyError naming what the episode has
        for i, data in zip(rest, read_episode_arrays(store, [(t.index, name, t._arrays[name]) for t in traces]),
                           strict=True):
            parts[i] = data
    if not parts:
        return np.zeros((0,)), np.zeros(1, np.int64)
    if any(p.ndim == 0 for p in parts):
        raise ValueError(f"gather concatenates along the first axis, but {name!r} is 0-d (one value per episode); "
                         "read it with store.episode(ep).load(name).")
    tails = {p.shape[1:] for p in parts}
    if len(tails) > 1:
        raise ValueError(f"gather concatenates along the first axis, but {name!r} has other trailing shapes in some of "
                         f"these episodes ({', '.join(map(str, sorted(tails)))}); gather episodes of one shape at a time.")
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return np.concatenate(parts), offsets


# --- writing ------------------------------------------------------------------------------------------

def _read_meta(backend, eps, *, attrs: bool) -> dict[int, tuple[dict, dict | None]]:
    """(marker, attrs or None) of each readable episode; unreadable or deleted ones are left out."""
    out = {}
    for ep in eps:
        try:
            marker = json.loads(backend.read_bytes(f"{EPISODES_DIR}/{episode_name(ep)}/{COMMIT_MARKER}"))
            group = json.loads(backend.read_bytes(f"{EPISODES_DIR}/{episode_name(ep)}/{ZARR_JSON}")) if attrs else None
            marker_arrays(marker)
            out[ep] = (marker, dict(group["attributes"]) if attrs else None)
        except _META_ERRORS:
            continue  # corrupt or deleted: read per episode, which reports it
    return out


def invalidate(store, eps) -> list[str]:
    """Delete every pack covering one of ``eps`` (before an episode is deleted or replaced)."""
    eps = sorted(set(eps))
    backend, index = store._backend, store._pack_index()
    deleted = []
    for name in backend.list_packs():
        first, last = parse_pack_name(name)
        if not any(first <= e <= last for e in eps):
            continue
        pack = index.get(name)
        if pack is None and not backend.pack_exists(name):
            continue  # unfinished: an fsspec packer's, which checks the markers after committing
        if pack is None or not pack.covered.isdisjoint(eps):
            backend.delete_pack(name)
            index.forget(name)
            deleted.append(name)
    return deleted


def write_pack(store, *, consolidate: bool = False) -> str | None:
    """`TraceStore.pack`: see its docstring."""
    backend = store._backend
    if consolidate or backend.is_local:
        backend.remove_incomplete_packs()
    before = backend.list_packs()
    index = store._pack_index()
    index.refresh()
    for name in index.unusable():  # derived data: written by an older or newer memlens, or damaged
        backend.delete_pack(name)
        index.forget(name)
    committed = backend.committed()
    markers = {e: m for e, (m, _) in _read_meta(backend, committed, attrs=False).items()}
    valid = []
    for name in sorted(index.packs):
        pack = index.packs[name]
        if all(markers.get(e) == pack.markers[e] for e in pack.episodes):
            valid.append(pack)
        else:  # an episode deleted or replaced behind its back (a memlens without packs)
            backend.delete_pack(name)
            index.forget(name)
    if consolidate:
        todo = sorted(markers)
        if before == [p.name for p in valid] and len(valid) == 1 and sorted(valid[0].episodes) == todo:
            return None
    else:
        covered = set().union(*(p.covered for p in valid))
        todo = [e for e in sorted(markers) if e not in covered]
    meta = _read_meta(backend, todo, attrs=True)
    todo = [e for e in todo if e in meta and meta[e][0] == markers[e]]
    if not todo:
        return None
    name = None
    for start in range(0, len(todo), PACK_EPISODES):  # packs of at most PACK_EPISODES: a reader of one
        part = todo[start:start + PACK_EPISODES]      # episode parses one small pack.json
        built = _build(store, part, meta)
        # A writer replacing a packed episode deletes the packs covering it before and after; it may have
        # looked before this pack existed, so check the markers once more now that it is visible.
        again = _read_meta(backend, part, attrs=False)
        if len(again) != len(part) or any(again[e][0] != meta[e][0] for e in part):
            backend.delete_pack(built)
            index.forget(built)
            continue
        name = built
    if name is None:
        return None
    if consolidate:
        for old in before:  # also those this memlens cannot read
            backend.delete_pack(old)
            index.forget(old)
    index.refresh()
    return name


def _build(store, todo: list[int], meta: dict[int, tuple[dict, dict]]) -> str:
    from memlens import __version__
    from memlens.store.backends import _HOST
    from memlens.store.store import _COMPRESSORS, _now

    plans: dict[str, dict] = {}
    for ep in todo:
        for n, i in marker_arrays(meta[ep][0]).items():
            if not packable(n, i["shape"], i["dtype"]):
                continue
            plan = plans.setdefault(n, {"tail": i["shape"][1:], "dtype": i["dtype"], "episodes": [], "infos": []})
            if plan["tail"] == i["shape"][1:] and plan["dtype"] == i["dtype"]:  # else: per-episode only
                plan["episodes"].append(ep)
                plan["infos"].append(i)
    name = pack_name(todo[0], todo[-1], uuid.uuid4().hex[:8])
    backend = store._backend
    zstore, token = backend.begin_pack(name)
    try:
        group = zarr.create_group(store=zstore, attributes={}, zarr_format=3)
        arrays = {}
        for n in sorted(plans):
            plan = plans[n]
            offsets = np.zeros(len(plan["episodes"]) + 1, np.int64)
            np.cumsum([i["shape"][0] for i in plan["infos"]], out=offsets[1:])
            total, tail, dtype = int(offsets[-1]), plan["tail"], plan["dtype"]
            rows = pack_chunk_rows(tail, dtype.itemsize, total)
            arr = group.create_array(n, shape=(total, *tail), dtype=dtype, chunks=(rows, *(max(1, d) for d in tail)),
                                     compressors=_COMPRESSORS, config={"write_empty_chunks": True})
            _fill(store, arr, n, plan, rows)
            arrays[n] = {"episodes": plan["episodes"], "offsets": offsets.tolist(), "shape_tail": list(tail),
                         "dtype": dtype.name, "chunk_rows": rows}
        index = {"format": PACK_FORMAT, "pack_version": PACK_VERSION, "episodes": todo, "arrays": arrays,
                 "store_created_at": store._manifest.get("created_at"),
                 "markers": {str(e): meta[e][0] for e in todo}, "attrs": {str(e): meta[e][1] for e in todo},
                 "packed_at": _now(), "writer": {"host": _HOST, "pid": os.getpid(), "memlens": __version__}}
        backend.commit_pack(name, token, json.dumps(index, separators=(",", ":"), allow_nan=False).encode())
    except BaseException:
        backend.abort_pack(token)
        raise
    return name


def _fill(store, arr: zarr.Array, name: str, plan: dict, rows: int) -> None:
    """Write the episodes' arrays into ``arr`` in whole chunks, reading a batch of episodes at a time."""
    eps, infos = plan["episodes"], plan["infos"]
    pending: list[np.ndarray] = []
    written, i = 0, 0
    while i < len(eps):
        j, batch_rows = i, 0
        while j < len(eps) and (j == i or batch_rows < rows) and j - i < _BATCH:
            batch_rows += infos[j]["shape"][0]
            j += 1
        pending += read_episode_arrays(store, [(eps[k], name, infos[k]) for k in range(i, j)])
        i = j
        buffered = sum(len(p) for p in pending)
        if buffered >= rows or i == len(eps):
            buf = pending[0] if len(pending) == 1 else np.concatenate(pending)
            n = len(buf) if i == len(eps) else len(buf) // rows * rows
            if n:
                arr[written : written + n] = buf[:n]
                written += n
            pending = [buf[n:]]
