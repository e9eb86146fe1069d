"""`memlens capture CKPT DATASET`: replay dataset episodes through a checkpoint and record every step into a trace store.

Each episode replays in frame order as at deployment (`memlens.runtime.replay`): `reset()` at the start,
`select_action` on every frame, memory updated once per chunk. `batch_episodes` episodes replay together
as one batch (rows are independent; what follows a shorter episode's end is dropped). Committed episodes
are skipped, so rerunning the same command resumes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from memlens.capture.config import CaptureConfig
from memlens.capture.hooks import CaptureHooks
from memlens.capture.sites import label_site
from memlens.errors import UserError
from memlens.runtime.checkpoint import LoadedPolicy
from memlens.runtime.replay import check_episodes, episode_lengths, open_matching_dataset, replay


def chunk_arrays(hooks: CaptureHooks, row: int, n_updates: int) -> dict[str, np.ndarray]:
    """Per-update arrays of batch row `row` from the hooks' records, first `n_updates` updates: [U, ...]."""
    names = [n for n in (hooks.chunks[0] if hooks.chunks else ()) if n != "groups"]
    return {n: torch.stack([c[n][row] for c in hooks.chunks[:n_updates]]).numpy() for n in names}


def shard() -> tuple[int, int]:
    """(rank, world size) under torchrun or accelerate (RANK / WORLD_SIZE), else (0, 1).

    Each process captures every world-th episode; all write into the same store, which commits each
    episode atomically, so `torchrun --nproc_per_node=N --no-python memlens capture ...` scales out."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if not 0 <= rank < world:
        raise UserError(f"RANK={rank} is outside WORLD_SIZE={world}; launch with torchrun or accelerate.")
    return rank, world


@torch.no_grad()
def replay_batch(loaded: LoadedPolicy, dataset, episodes: list[int], *, config: CaptureConfig | None = None,
                 record: bool = True, on_frame: Callable[[], None] | None = None) -> list[tuple[dict, dict]]:
    """Replay `episodes` together; return per episode (arrays, attrs) ready for the trace store.

    `record=False` replays the same way without any hook (the reference for capture overhead)."""
    config = config or CaptureConfig()
    cfg = loaded.config
    lengths = episode_lengths(dataset, episodes)
    per_ep = [{"predicted": [], "dataset": [], "index": [], "timestamp": [], "update": [], "labels": {}} for _ in episodes]
    update_frames: list[int] = []
    hooks = config.hooks(loaded.policy)
    last = None
    with hooks if record else contextlib.nullcontext():
        for step in replay(loaded, dataset, episodes):
            if step.t % cfg.n_action_steps == 0:
                update_frames.append(step.t)
            last = step.frames
            for b, frame in enumerate(step.frames):
                if not step.live[b]:
                    continue
                rec = per_ep[b]
                rec["predicted"].append(step.action[b].float().cpu().numpy())
                rec["dataset"].append(frame["action"].float().numpy())
                rec["index"].append(int(frame["frame_index"]))
                rec["timestamp"].append(float(frame["timestamp"]))
                rec["update"].append(len(update_frames) - 1)
                for key, value in frame.items():
                    if key.startswith("label."):
                        rec["labels"].setdefault(key.removeprefix("label."), []).append(int(torch.as_tensor(value).reshape(-1)[0]))
            if on_frame is not None:
                on_frame()
    if record and len(hooks.chunks) != len(update_frames):
        raise RuntimeError(f"expected a chunk computation every {cfg.n_action_steps} frames ({len(update_frames)} in all), "
                           f"saw {len(hooks.chunks)}; the policy's action queue no longer behaves as lerobot's SmolVLA.")
    out = []
    for b, ep in enumerate(episodes):
        rec, n_updates = per_ep[b], math.ceil(lengths[b] / cfg.n_action_steps)
        arrays = {
            "frame/index": np.asarray(rec["index"], dtype=np.int32),
            "frame/timestamp": np.asarray(rec["timestamp"], dtype=np.float32),
            "frame/update": np.asarray(rec["update"], dtype=np.int32),
            "action/predicted": np.stack(rec["predicted"]).astype(np.float32),
            "action/dataset": np.stack(rec["dataset"]).astype(np.float32),
            "memory/update_frame": np.asarray(update_frames[:n_updates], dtype=np.int32),
        }
        arrays.update(chunk_arrays(hooks, b, n_updates))
        for label, values in rec["labels"].items():
            arrays[f"label/{label}"] = np.asarray(values, dtype=np.int64)
        constant = {k: v[0] for k, v in rec["labels"].items() if len(set(v)) == 1}
        attrs = {"episode": ep, "length": lengths[b], "n_updates": n_updates, "task": last[b]["task"],
                 "labels": constant, "attention_groups": hooks.chunks[0]["groups"] if hooks.chunks else []}
        out.append((arrays, attrs))
    return out


def capture(ckpt, dataset: str, out: str, *, root: str | None = None, episodes: list[int] | None = None,
            config: CaptureConfig | None = None, overwrite: bool = False,
            progress: Callable[[str, int, int], None] | None = None, **options):
    """Capture `episodes` of `dataset` replayed through `ckpt` into the trace store at `out`.

    What is recorded: `config` (a `CaptureConfig`), or its fields as keyword options
    (`attention=True, batch_episodes=4, ...`)."""
    from memlens.store import TraceStore

    config = CaptureConfig.of(config, options)
    loaded = config.load(ckpt)
    ds = open_matching_dataset(loaded, dataset, root)
    episodes = check_episodes(ds, episodes)
    source = {"dataset": {"repo_id": ds.repo_id, "root": str(Path(ds.root).resolve()),
                          "revision": getattr(ds, "revision", None)}}
    sites = {n: s.to_json() for n, s in config.sites().items()}
    for key in ds.meta.features:
        if key.startswith("label."):
            site = label_site(key.removeprefix("label."))
            sites[site.name] = site.to_json()
    store = TraceStore.create(out, manifest={"provenance": config.provenance(loaded, source), "sites": sites},
                              overwrite=overwrite)
    rank, world = shard()
    mine = episodes[rank::world]
    todo = [e for e in mine if not store.has_episode(e)]
    done = len(mine) - len(todo)
    if progress is not None:
        progress("skip", done, len(mine))
    for start in range(0, len(todo), config.batch_episodes):
        group = todo[start : start + config.batch_episodes]
        for ep, (arrays, attrs) in zip(group, replay_batch(loaded, ds, group, config=config), strict=True):
            store.write_episode(ep, arrays, attrs)
            done += 1
            if progress is not None:
                progress("episode", done, len(mine))
    if todo:
        pack_store(store)
    return store


def pack_store(store) -> None:
    """Pack the episodes just captured (fast whole-store reads); a failure only warns: they are committed."""
    import warnings

    try:
        store.pack()
    except OSError as e:  # ReadOnlyStoreError included
        warnings.warn(f"the captured episodes are committed, but packing them failed ({e}); the trace store reads "
                      f"episode by episode (slower) until `memlens store pack {store.url}` succeeds.", stacklevel=2)
