"""Memory states and labels gathered from a trace store: the table every analysis starts from.

One row per memory update (chunk computation) of every selected episode:

    >>> from memlens.analysis import memory_states
    >>> ms = memory_states("traces/cue")                      # doctest: +SKIP
    >>> ms.X.shape, ms.episode.shape, sorted(ms.labels)        # doctest: +SKIP
    ((180, 4, 64), (180,), ['cue', 'delay_steps', 'n_targets', 'phase'])

Labels are the store's per-frame `label/<name>` arrays read at each update's frame, so a probe at
update `u` is asked what was true when memory `u` was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memlens.errors import UserError
from memlens.store import EpisodeNotFoundError, TraceStore

MEMORY_SITES = ("memory/write", "memory/read")
CLASSIFICATION, REGRESSION = "classification", "regression"  # the two kinds of probe


class AnalysisInputError(UserError):
    """Analysis input (store, label, episodes) that cannot give a meaningful answer."""


class FeaturesUnavailableError(AnalysisInputError):
    """The probe features asked for are not in this trace store (e.g. hidden states were not captured)."""


def as_store(store) -> TraceStore:
    """A `TraceStore`, opening a path or URL if given one."""
    return store if isinstance(store, TraceStore) else TraceStore.open(store)


@dataclass
class MemoryStates:
    """Memory states of many episodes, flattened to rows (one per memory update)."""

    X: np.ndarray  # [N, M, H] float32
    episode: np.ndarray  # [N] episode index of each row
    update: np.ndarray  # [N] update index within its episode
    frame: np.ndarray  # [N] frame index at which the update happened
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [N]
    site: str = "memory/write"

    @property
    def n_tokens(self) -> int:
        return int(self.X.shape[1])

    def features(self, token: int | None = None) -> np.ndarray:
        """`[N, H]` for one token, `[N, M*H]` for all tokens (the default)."""
        return self.X[:, token] if token is not None else self.X.reshape(len(self.X), -1)

    def label(self, name: str) -> np.ndarray:
        if name not in self.labels:
            raise AnalysisInputError(
                f"label {name!r} is not in this trace store. Expected one of the labels captured from the "
                f"dataset's label.* columns; found {sorted(self.labels) or 'none'}. Pick one of those, or record "
                "the dataset with that label (memlens record writes cue, phase, n_targets, delay_steps).")
        return self.labels[name]


def available_labels(store) -> list[str]:
    """Per-frame labels stored with the episodes (from the dataset's `label.*` columns)."""
    store = as_store(store)
    eps = store.episodes()
    if not eps:
        return []
    return sorted(n.removeprefix("label/") for n in store.episode(eps[0]).names if n.startswith("label/"))


def select_episodes(store: TraceStore, episodes=None) -> list[int]:
    have = store.episodes()
    if not have:
        raise AnalysisInputError(f"the trace store at {store.url} holds no episodes yet. Run `memlens capture` "
                                 "into it first.")
    if episodes is None:
        return have
    episodes = [int(e) for e in episodes]
    committed = set(have)
    missing = [e for e in episodes if e not in committed]
    if missing:
        raise AnalysisInputError(f"episodes {missing} are not in the trace store at {store.url}; it holds "
                                 f"{len(have)} episodes ({have[:10]}{' ...' if len(have) > 10 else ''}).")
    return episodes


def memory_states(store, episodes=None, *, site: str = "memory/write") -> MemoryStates:
    """All memory states (`site`: `memory/write`, the default, or `memory/read`) of `episodes`.

    Labels are those every selected episode holds. Arrays come from `TraceStore.gather` (one read per
    array from the store's packs, when it is packed: `memlens store pack`)."""
    store = as_store(store)
    if site not in MEMORY_SITES:
        raise AnalysisInputError(f"site {site!r} is not a memory site; expected one of {MEMORY_SITES}.")
    eps = select_episodes(store, episodes)
    first = store.episode(eps[0])
    if site not in first:
        raise AnalysisInputError(
            f"the trace store at {store.url} has no {site!r} arrays (captured with a checkpoint without memory, "
            f"or with --attention-only); it holds {first.names}. Capture a memory checkpoint to analyse memory.")
    x, offsets = store.gather(site, eps)
    at, at_offsets = store.gather("memory/update_frame", eps)
    counts = np.diff(offsets)
    labels = {}
    for name in (n for n in first.names if n.startswith("label/") and len(at) == len(x)):
        try:
            values, frame_offsets = store.gather(name, eps)
        except EpisodeNotFoundError:
            raise
        except KeyError:  # an episode without this label: dropped
            continue
        labels[name.removeprefix("label/")] = values[_frame_rows(at, np.diff(at_offsets), frame_offsets)]
    return MemoryStates(x.astype(np.float32, copy=False), np.repeat(np.asarray(eps), counts),
                        np.arange(len(x)) - np.repeat(offsets[:-1], counts), at, labels, site)


def _frame_rows(at: np.ndarray, counts: np.ndarray, frame_offsets: np.ndarray) -> np.ndarray:
    """Rows of a gathered per-frame array at each update's frame (`label[update_frame]` per episode;
    `counts`: updates per episode)."""
    lengths = np.repeat(np.diff(frame_offsets), counts)
    local = np.where(at < 0, at + lengths, at)
    bad = np.flatnonzero((local < 0) | (local >= lengths))
    if len(bad):
        raise IndexError(f"index {at[bad[0]]} is out of bounds for axis 0 with size {lengths[bad[0]]}")
    return np.repeat(frame_offsets[:-1], counts) + local


def checkpoint_of(store) -> str:
    """The checkpoint a store was captured with (its path and weights hash, as recorded at capture)."""
    prov = as_store(store).provenance
    ckpt, sha = prov.get("checkpoint"), prov.get("checkpoint_sha256")
    return f"{ckpt} (sha256 {sha[:12]})" if sha else str(ckpt)


def check_same_checkpoint(*stores, allow_mixed: bool = False) -> None:
    """Refuse to pool stores captured with different checkpoints unless `allow_mixed=True` says so."""
    stores = [as_store(s) for s in stores]
    ckpts = {checkpoint_of(s) for s in stores}
    if len(ckpts) > 1 and not allow_mixed:
        raise AnalysisInputError(
            "these trace stores were captured with different checkpoints: "
            + "; ".join(f"{s.url}: {checkpoint_of(s)}" for s in stores)
            + ". Pooling them would mix memories of different policies. Expected stores from one checkpoint; "
            "to compare checkpoints use memlens.analysis.compare_checkpoints, or pass allow_mixed=True if you "
            "mean to pool them.")


def store_name(store) -> str:
    return Path(str(as_store(store).url)).name


def token_norms(x: np.ndarray) -> np.ndarray:
    """L2 norm of each memory token: `[..., M, H]` -> `[..., M]` (the guide's heat-map value)."""
    return np.linalg.norm(np.asarray(x, dtype=np.float32), axis=-1)
