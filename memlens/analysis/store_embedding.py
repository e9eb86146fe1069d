"""The embedding of a store's memory states, computed once and kept beside the traces.

    >>> from memlens.analysis.store_embedding import cached_umap, pca_points, umap_points
    >>> pts = cached_umap("traces/cue")       # EmbeddedStates, or None if not computed yet  # doctest: +SKIP
    >>> pts = umap_points("traces/cue")       # fits (tens of seconds) and saves it           # doctest: +SKIP
    >>> pts = pca_points(memory_states(...))  # a 2-D PCA in milliseconds: what the app shows first  # doctest: +SKIP

The UMAP of every memory state is written to `<store>/derived/umap-memory_write.npz` (plain arrays,
`save_embedding_points`; no pickle) with a fingerprint of the store: its creation time, its committed
episodes and, on a local disk, the modification time of `episodes/` (changed by every commit and
deletion). A store that changed since is fitted again. A store on a read-only disk keeps its embedding
in `~/.cache/memlens/embeddings/` instead. `memlens capture --embed` computes it at the end of a
capture; the app fits it in the background when it is missing (and saves it) and shows a PCA until then.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from memlens.analysis.data import AnalysisInputError, MemoryStates, as_store, memory_states
from memlens.analysis.embedding import (
    EmbeddedStates,
    fit_map,
    load_embedding_points,
    save_embedding_points,
)

DERIVED_DIR = "derived"


def store_fingerprint(store, site: str = "memory/write") -> str:
    """A hash that changes whenever the store's committed episodes change."""
    store = as_store(store)
    parts = {"created_at": store.manifest.get("created_at"), "episodes": store.episodes(), "site": site}
    episodes_dir = Path(str(store.url)) / "episodes"
    if episodes_dir.is_dir():
        parts["episodes_mtime_ns"] = os.stat(episodes_dir).st_mtime_ns
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _files(store, site: str) -> list[Path]:
    name = f"umap-{site.replace('/', '_')}.npz"
    key = hashlib.sha1(str(store.url).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "memlens" / "embeddings"
    return [Path(str(store.url)) / DERIVED_DIR / name, cache / f"{key}-{name}"]


def cached_umap(store, site: str = "memory/write") -> EmbeddedStates | None:
    """The saved UMAP of the store, if one was saved for exactly its current episodes."""
    store = as_store(store)
    fingerprint = store_fingerprint(store, site)
    for file in _files(store, site):
        if not file.is_file():
            continue
        try:
            with np.load(file, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
            if meta.get("params", {}).get("fingerprint") == fingerprint:
                return load_embedding_points(file)
        except (OSError, ValueError, KeyError):  # a damaged cache is fitted again
            continue
    return None


def save_umap(store, points: EmbeddedStates, site: str = "memory/write") -> Path | None:
    """Write `points` beside the store (or to the user cache if the store's disk is read-only)."""
    store = as_store(store)
    params = {"fingerprint": store_fingerprint(store, site), "site": site, "method": "umap"}
    for file in _files(store, site):
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.stem}-{os.getpid()}.tmp.npz")
            save_embedding_points(points, tmp, params=params)
            os.replace(tmp, file)
            return file
        except OSError:
            continue
    return None


def _tasks(store, episodes: np.ndarray) -> np.ndarray:
    tasks = {int(e): str(store.episode(int(e)).attrs.get("task", "")) for e in np.unique(episodes)}
    return np.array([tasks[int(e)] for e in episodes])


def umap_points(store, ms: MemoryStates | None = None, *, site: str = "memory/write", save: bool = True,
                **params) -> EmbeddedStates:
    """Fit the UMAP of every memory state of the store (`ms`, if already gathered) and save it."""
    store = as_store(store)
    ms = ms if ms is not None else memory_states(store, site=site)
    points = fit_map(ms, random_state=0, **params).points
    points.task = _tasks(store, points.episode)
    points.source = str(store.url)
    if save:
        save_umap(store, points, site)
    return points


def pca_points(ms: MemoryStates, store=None, *, max_rows: int = 20_000) -> tuple[EmbeddedStates, np.ndarray]:
    """The first two principal components of every memory state (all tokens concatenated), and the share of
    variance each explains: the map the app shows while the UMAP is computed.

    The basis is fitted on at most `max_rows` rows by a randomized SVD in numpy (four power iterations; signs
    fixed so that each component's largest loading is positive): the app's first page draws this map, and
    importing scikit-learn (scipy.stats with it) costs 3.6 s on the 2-core test machine, more than half of
    the page's 5 s budget, for a 0.2 s computation."""
    x = np.asarray(ms.features(), dtype=np.float32)
    rng = np.random.default_rng(0)
    rows = x if len(x) <= max_rows else x[np.sort(rng.choice(len(x), max_rows, replace=False))]
    mean = rows.mean(0)
    centred = rows - mean
    k = min(2, *centred.shape)
    basis = _top_components(centred, k, rng)
    total = float((centred.astype(np.float64) ** 2).sum())
    var = ((centred @ basis.T).astype(np.float64) ** 2).sum(0) / total if total > 0 else np.zeros(k)
    coords = (x @ basis.T - mean @ basis.T).astype(np.float32)
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        var = np.pad(var, (0, 2 - len(var)))
    task = _tasks(as_store(store), ms.episode) if store is not None else None
    return EmbeddedStates(coords, ms.episode, ms.update, ms.frame, dict(ms.labels), task), np.asarray(var)


def _top_components(centred: np.ndarray, k: int, rng, oversample: int = 8, power: int = 4) -> np.ndarray:
    """[k, D] orthonormal principal directions of centred rows (Halko, Martinsson & Tropp's randomized SVD)."""
    if k == 0:
        return np.zeros((0, centred.shape[1]), np.float32)
    width = min(k + oversample, *centred.shape)
    q, _ = np.linalg.qr(centred @ rng.standard_normal((centred.shape[1], width)).astype(np.float32))
    for _ in range(power):
        q, _ = np.linalg.qr(centred @ (centred.T @ q))
    _, _, vt = np.linalg.svd(q.T @ centred, full_matrices=False)
    vt = vt[:k]
    signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(1)])
    return (vt * np.where(signs == 0, 1, signs)[:, None]).astype(np.float32)


def embed_store(store) -> str:
    """Fit and save the store's UMAP unless it is saved already; a line saying what was done."""
    import time

    store = as_store(store)
    if cached_umap(store) is not None:
        return f"UMAP of {store.url} already saved for its {len(store.episodes())} episodes"
    t0 = time.perf_counter()
    try:
        points = umap_points(store, save=False)
    except AnalysisInputError as exc:
        return f"no UMAP saved: {exc}"
    file = save_umap(store, points)
    return f"UMAP of {len(points)} memory states fitted in {time.perf_counter() - t0:.1f} s, saved to {file}"
