"""The on-disk format of a memlens trace: constants, layout, manifest schema, checks. No I/O here.

Layout (schema version 1; ``<ep>`` is the episode index zero-padded to 6 digits, e.g. ``000012``)::

    <root>/
      manifest.json                  {"format": "memlens.trace", "schema_version": 1, "created_at": ...,
                                      "provenance": {...caller's...}, "sites": {name: {kind, shape, ...}}}
      zarr.json                      empty Zarr v3 group, so plain `zarr.open_group(root)` can browse
      episodes/
        zarr.json                    empty Zarr v3 group
        <ep>/                        one Zarr v3 group per episode
          zarr.json                  group metadata; "attributes" = the episode attrs (episode_index, ...)
          .committed                 commit marker, written last: {"episode_index", "arrays": {name:
                                     {shape, dtype, chunks}}, "committed_at", "writer": {host, pid}}
          memory/write/zarr.json     one Zarr array per name; "/" in a name is a nested group
          memory/write/c/0/0/0       chunk files: zstd (level 3, with checksum), time axis in 256-step chunks
      packs/                         optional, derived: consolidated copies of committed episodes (below)
        zarr.json                    empty Zarr v3 group
        p-<first>-<last>-<uuid8>/    one pack: a Zarr v3 group, first/last = its lowest/highest episode
          pack.json                  its index, written last: {"format": "memlens.trace.pack", "pack_version",
                                     "episodes", "arrays": {name: {"episodes", "offsets", "shape_tail", "dtype",
                                     "chunk_rows"}}, "markers": {ep: .committed}, "attrs": {ep: attrs},
                                     "store_created_at": manifest's created_at, "packed_at", "writer"}
          memory/write/...           one Zarr array per name: the covered episodes' arrays concatenated on axis 0
      .staging/                      local stores only: episodes and packs being written, trash being deleted

Commit protocol. Local filesystem: an episode is written under ``.staging/<ep>-<host>-<pid>-<uuid>/``
(marker included) and ``os.rename``d into ``episodes/<ep>``; the rename is the commit, so readers list
the directories of ``episodes/`` and never see half an episode. Other fsspec URLs (``s3://``,
``memory://``...): the group is written in place and ``.committed`` is written last; readers list only
episodes holding the marker. The marker is written in both cases, so a local store copied to an object
store stays valid.

Packs (`memlens.store.packs`) are additive and optional, so they need no schema bump: a store without
``packs/`` reads as before, and deleting ``packs/`` is always safe. A pack holds, for every array name of
its episodes except camera frames (``frames/...``), 0-d arrays and arrays over ``PACK_MAX_EPISODE_BYTES``
in one episode, one array concatenated along axis 0; ``arrays[name]["episodes"]`` lists the episodes it
holds (those with that name and the first holder's trailing shape and dtype, in pack order) and
``offsets`` their first rows (plus the total). Everything else is read from the episode. A pack is
committed like an episode: staged and renamed into ``packs/`` locally, ``pack.json`` written last on
other URLs; readers ignore a pack without ``pack.json``.

Why Zarr v3 (and not Parquet, HDF5 or .npz): traces are n-d tensors (``[U, M, H]`` memory,
``[U, L, NH, M, G]`` attention) read by time slices. Zarr stores each one as a chunked, compressed n-d
array; a slice reads only its chunks (lazy); every chunk is its own file/object, so writes append without
rewriting, a crash loses at most the episode being written, and the same code reads local paths and
fsspec URLs. Parquet is columnar and tabular: a ``[T, M, H]`` tensor becomes nested lists or
``M*H`` columns, with no chunking along the other axes. HDF5 is one file (a crash mid-write can corrupt
the whole trace, concurrent writers need locking) and does not live on object stores. ``.npz`` per episode
is not lazy (the whole array is read) and not readable in pieces from remote storage.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

FORMAT_NAME = "memlens.trace"
SCHEMA_VERSION = 1

MANIFEST_NAME = "manifest.json"
EPISODES_DIR = "episodes"
STAGING_DIR = ".staging"
COMMIT_MARKER = ".committed"
ZARR_JSON = "zarr.json"
EMPTY_GROUP_JSON = b'{\n  "zarr_format": 3,\n  "node_type": "group",\n  "attributes": {}\n}'

PACKS_DIR = "packs"
PACK_INDEX = "pack.json"
PACK_FORMAT = "memlens.trace.pack"
PACK_VERSION = 1
PACK_MAX_EPISODE_BYTES = 4 * 2**20  # larger arrays of an episode stay per-episode only
PACK_CHUNK_BYTES = 16 * 2**20  # rows per chunk of a packed array: about this many bytes
FRAMES_PREFIX = "frames/"  # camera frames are never packed

EPISODE_NAME_WIDTH = 6
CHUNK_STEPS = 256  # time steps per chunk along the first axis
MAX_CHUNK_BYTES = 8 * 2**20  # chunks are split further along the other axes above this
ZSTD_LEVEL = 3
STALE_STAGING_SECONDS = 24 * 3600  # staging dirs of other hosts are removed after this long

# Provenance keys that may differ between writers of one store: the episode selection of a resumed or
# sharded capture (each episode's attrs record what it is). Everything else must match to append.
PROVENANCE_KEYS_ALLOWED_TO_DIFFER = frozenset({"episodes"})

_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def episode_name(ep: int) -> str:
    """``12 -> "000012"`` (more digits past 999999)."""
    return f"{ep:0{EPISODE_NAME_WIDTH}d}"


def parse_episode_name(name: str) -> int | None:
    """The episode index of a directory name of ``episodes/``, or None if it is not one."""
    return int(name) if name.isascii() and name.isdigit() else None


_PACK_NAME = re.compile(r"^p-(\d+)-(\d+)-([0-9a-f]{8})$")


def pack_name(first: int, last: int, uid: str) -> str:
    """``(0, 999, "1a2b3c4d") -> "p-000000-000999-1a2b3c4d"``."""
    return f"p-{episode_name(first)}-{episode_name(last)}-{uid}"


def parse_pack_name(name: str) -> tuple[int, int] | None:
    """The (first, last) episode of a directory name of ``packs/``, or None if it is not one."""
    m = _PACK_NAME.match(name) if isinstance(name, str) else None
    return (int(m[1]), int(m[2])) if m else None


def packable(name: str, shape, dtype) -> bool:
    """Whether a pack holds this array of an episode: not a camera frame, not 0-d, at most 4 MiB."""
    return (not name.startswith(FRAMES_PREFIX) and len(shape) > 0
            and math.prod(shape) * np.dtype(dtype).itemsize <= PACK_MAX_EPISODE_BYTES)


def pack_chunk_rows(tail, itemsize: int, total: int) -> int:
    """Rows per chunk of a packed array: whole up to about `PACK_CHUNK_BYTES`, at least 1."""
    row = max(1, math.prod(tail) * itemsize)
    return max(1, min(total, PACK_CHUNK_BYTES // row))


def check_array_name(name: str) -> None:
    """Names are ``/``-separated parts of ``[A-Za-z0-9_.-]`` not starting with ``.`` or ``-``."""
    parts = name.split("/") if isinstance(name, str) else [None]
    if not all(isinstance(p, str) and _NAME_PART.match(p) and p != ZARR_JSON for p in parts):
        raise ValueError(
            f"Array name {name!r} is not valid: expected '/'-separated parts made of letters, digits, '_', '.'"
            " and '-', not starting with '.' or '-', e.g. 'memory/write' or 'attention/mem_to_groups'. Rename it.")


def check_name_set(names: list[str]) -> None:
    """No name may be a group of another (``memory`` and ``memory/write`` cannot both be arrays)."""
    taken = set(names)
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in taken:
                raise ValueError(f"Array names {prefix!r} and {name!r} clash: {prefix!r} would have to be both an"
                                 f" array and the group holding {name!r}. Rename one of them.")


def choose_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """``CHUNK_STEPS`` along the first (time) axis, whole along the others unless over ``MAX_CHUNK_BYTES``."""
    if not shape:
        return ()
    chunks = [max(1, min(shape[0], CHUNK_STEPS))] + [max(1, s) for s in shape[1:]]
    while math.prod(chunks) * itemsize > MAX_CHUNK_BYTES:
        if chunks[0] > 1:
            chunks[0] = max(1, chunks[0] // 2)
        else:
            axis = max(range(1, len(chunks)), key=lambda i: chunks[i])
            if chunks[axis] == 1:
                break
            chunks[axis] = (chunks[axis] + 1) // 2
    return tuple(chunks)


def _json_default(where: str):
    def default(obj: Any):
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, PurePath):
            return str(obj)
        if isinstance(obj, (set, frozenset)):
            return sorted(obj)
        raise TypeError(f"{where} holds a {type(obj).__name__} ({obj!r:.80}), which has no JSON form; pass plain"
                        " str/int/float/bool/None, lists and dicts (numpy scalars and paths are converted).")
    return default


def to_json(obj: Any, where: str) -> Any:
    """``obj`` as it will read back from JSON (tuples become lists, numpy scalars Python numbers)."""
    try:
        return json.loads(json.dumps(obj, default=_json_default(where), allow_nan=False))
    except ValueError as e:  # NaN / inf
        raise ValueError(f"{where} holds NaN or infinity, which strict JSON cannot store ({e}); use None or a"
                         " string instead.") from None


def build_manifest(manifest: Mapping, *, created_at: str) -> dict:
    """Validate the caller's ``{"provenance": {...}, "sites": {...}}`` and return the manifest to store."""
    if not isinstance(manifest, Mapping):
        raise TypeError(f"manifest must be a dict with 'provenance' and 'sites', got {type(manifest).__name__}.")
    allowed = {"provenance", "sites", "format", "schema_version", "created_at"}
    unknown = sorted(set(manifest) - allowed)
    missing = [k for k in ("provenance", "sites") if k not in manifest]
    if unknown or missing:
        raise ValueError(f"manifest must hold 'provenance' (dict) and 'sites' (name -> site dict); missing "
                         f"{missing}, unknown keys {unknown}. Put capture details inside 'provenance'.")
    if manifest.get("format", FORMAT_NAME) != FORMAT_NAME or manifest.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise ValueError(f"manifest declares format {manifest.get('format')!r} schema {manifest.get('schema_version')!r};"
                         f" this memlens writes {FORMAT_NAME!r} schema {SCHEMA_VERSION}. Leave both keys out.")
    if not isinstance(manifest["provenance"], Mapping):
        raise TypeError(f"manifest['provenance'] must be a dict, got {type(manifest['provenance']).__name__}.")
    sites = manifest["sites"]
    if not isinstance(sites, Mapping):
        raise TypeError(f"manifest['sites'] must be a dict name -> site, got {type(sites).__name__}.")
    for name, site in sites.items():
        check_array_name(name)
        problem = None
        if not isinstance(site, Mapping):
            problem = f"is a {type(site).__name__}, not a dict"
        elif not isinstance(site.get("kind"), str):
            problem = "has no 'kind' string"
        elif not isinstance(site.get("shape"), (list, tuple)) or not all(
                isinstance(d, str) or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)) for d in site["shape"]):
            problem = f"has shape {site.get('shape')!r}, expected a list of ints and symbolic dims (str)"
        elif "dtype" in site:
            try:
                np.dtype(site["dtype"])
            except TypeError:
                problem = f"has dtype {site['dtype']!r}, which numpy does not know"
        if problem:
            raise ValueError(f"Capture site {name!r} in manifest['sites'] {problem}. Each site is "
                             "{'kind': str, 'shape': [int | str, ...], 'dtype': str (optional), 'description': str}.")
    check_name_set(list(sites))
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "created_at": created_at,
        "provenance": to_json(dict(manifest["provenance"]), "manifest['provenance']"),
        "sites": to_json(dict(sites), "manifest['sites']"),
    }


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a:
                out.append(f"{path}.{key} is absent in the store, {b[key]!r:.100} now")
            elif key not in b:
                out.append(f"{path}.{key} is {a[key]!r:.100} in the store, absent now")
            else:
                _diff(a[key], b[key], f"{path}.{key}", out)
    elif a != b:
        out.append(f"{path} is {a!r:.100} in the store, {b!r:.100} now")


def manifest_differences(stored: dict, new: dict) -> list[str]:
    """Human-readable differences of provenance and sites (ignoring `PROVENANCE_KEYS_ALLOWED_TO_DIFFER`)."""
    out: list[str] = []
    drop = PROVENANCE_KEYS_ALLOWED_TO_DIFFER
    _diff({k: v for k, v in stored.get("provenance", {}).items() if k not in drop},
          {k: v for k, v in new["provenance"].items() if k not in drop}, "provenance", out)
    _diff(stored.get("sites", {}), new["sites"], "sites", out)
    return out


def check_against_sites(arrays: Mapping[str, np.ndarray], sites: Mapping[str, dict], *, episode: int) -> None:
    """Every array is a declared site, with its rank, fixed dims and dtype; a symbol (``T``) has one size."""
    undeclared = sorted(n for n in arrays if n not in sites)
    if undeclared:
        raise ValueError(f"Episode {episode}: arrays {undeclared} are not declared in the store's manifest['sites'] "
                         f"(declared: {sorted(sites)}). Declare every captured array as a site when creating the store.")
    bound: dict[str, tuple[int, str]] = {}
    for name, arr in arrays.items():
        site = sites[name]
        dims = site["shape"]
        if len(dims) != arr.ndim:
            raise ValueError(f"Episode {episode}: array {name!r} has shape {arr.shape}, but its site declares {len(dims)} "
                             f"dims {dims}. Fix the capture or the site declaration.")
        for axis, (dim, size) in enumerate(zip(dims, arr.shape)):
            if isinstance(dim, int) and dim != size:
                raise ValueError(f"Episode {episode}: array {name!r} has shape {arr.shape}, but its site declares "
                                 f"{dims} (axis {axis} must be {dim}).")
            if isinstance(dim, str) and _SYMBOL.match(dim):
                size0, name0 = bound.setdefault(dim, (size, name))
                if size0 != size:
                    raise ValueError(f"Episode {episode}: dim {dim!r} is {size0} in {name0!r} but {size} in {name!r} "
                                     f"(shape {arr.shape}); arrays sharing a symbolic dim must agree.")
        if "dtype" in site and np.dtype(site["dtype"]) != arr.dtype:
            raise ValueError(f"Episode {episode}: array {name!r} is {arr.dtype}, but its site declares {site['dtype']}. "
                             "Cast it before writing (the store never casts silently).")
