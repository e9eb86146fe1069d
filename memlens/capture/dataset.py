"""`memlens capture`: replay dataset episodes through a checkpoint and record every step into a trace store.

Each episode replays in frame order as at deployment: `reset()` at the start, `select_action` on every
frame, memory updated once per chunk. `batch_episodes` episodes replay together as one batch (rows
are independent; shorter episodes repeat their last frame, and what follows their end is dropped).
Committed episodes are skipped, so rerunning the same command resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from memlens.capture.recorder import CaptureHooks
from memlens.capture.sites import active_sites, label_site
from memlens.errors import UserError
from memlens.policy import memory_tokens
from memlens.replay import LoadedPolicy, episode_frames, load_policy, observation_from_frame, open_dataset


def file_sha256(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def check_dataset_matches_policy(loaded: LoadedPolicy, dataset) -> None:
    features = dataset.meta.features
    expected = {k: tuple(v.shape) for k, v in loaded.config.input_features.items() if not k.startswith("observation.images.empty")}
    missing = [k for k in expected if k not in features]
    if missing:
        found = sorted(k for k in features if k.startswith("observation."))
        raise UserError(
            f"the dataset lacks inputs the policy needs: {missing}. The policy expects {sorted(expected)}; the "
            f"dataset has {found}. Capture with the dataset the checkpoint was trained on (or one with the same "
            "camera and state keys)."
        )


def load_for_capture(ckpt: str, *, device: str, attention_only: bool) -> LoadedPolicy:
    """Load a checkpoint to capture; one without memory is refused unless `attention_only`."""
    try:
        loaded = load_policy(ckpt, device=device)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from exc
    if not memory_tokens(loaded.config) and not attention_only:
        raise UserError(
            f"checkpoint {loaded.path} has no memory tokens (type {loaded.config.type}, num_mem_tokens=0): there is "
            "no memory state to capture. Capture a memory checkpoint, or pass --attention-only to record the "
            "attention summaries and actions of this one (for example as a baseline)."
        )
    return loaded


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


def _chunks(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]


@torch.no_grad()
def replay_batch(loaded: LoadedPolicy, dataset, episodes: list[int], *, attention=False, full_attention=False,
                 hidden=False, record: bool = True, on_frame: Callable[[], None] | None = None) -> list[tuple[dict, dict]]:
    """Replay `episodes` together; return per episode (arrays, attrs) ready for the trace store.

    `record=False` replays the same way without any hook (the reference for capture overhead)."""
    policy, cfg = loaded.policy, loaded.config
    streams = [episode_frames(dataset, ep) for ep in episodes]
    lengths = [int(dataset.meta.episodes[ep]["length"]) for ep in episodes]
    last = [None] * len(episodes)
    per_ep = [{"predicted": [], "dataset": [], "index": [], "timestamp": [], "update": [], "labels": {}} for _ in episodes]
    update_frames: list[int] = []
    policy.reset()
    hooks = CaptureHooks(policy, attention=attention, full_attention=full_attention, hidden=hidden)
    with hooks if record else contextlib.nullcontext():
        for t in range(max(lengths)):
            for b, stream in enumerate(streams):
                if t < lengths[b]:
                    last[b] = next(stream)
            obs = [observation_from_frame(f, cfg.input_features) for f in last]
            batch = {k: torch.stack([o[k] for o in obs]) for k in obs[0] if k != "task"}
            batch["task"] = [o["task"] for o in obs]
            if t % cfg.n_action_steps == 0:
                update_frames.append(t)
            action = loaded.postprocessor(policy.select_action(loaded.preprocessor(batch)))
            for b, frame in enumerate(last):
                if t >= lengths[b]:
                    continue
                rec = per_ep[b]
                rec["predicted"].append(action[b].float().cpu().numpy())
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


def open_matching_dataset(loaded, dataset, root=None):
    """The dataset to replay, opened (any lerobot failure becomes one UserError) and checked against the policy."""
    try:
        ds = open_dataset(dataset, root=root)
    except Exception as exc:  # noqa: BLE001 - lerobot raises many kinds here
        raise UserError(f"cannot open dataset {dataset!r} (root {root}): {type(exc).__name__}: {exc}") from exc
    check_dataset_matches_policy(loaded, ds)
    return ds


def capture(ckpt: str, dataset: str, out: str, *, root: str | None = None, episodes: list[int] | None = None,
            attention: bool = False, full_attention: bool = False, hidden: bool = False, batch_episodes: int = 1,
            device: str = "cpu", overwrite: bool = False, attention_only: bool = False,
            progress: Callable[[str, int, int], None] | None = None):
    """Capture `episodes` of `dataset` replayed through `ckpt` into the trace store at `out`."""
    from memlens.store import NotATraceStoreError, ProvenanceMismatchError, SchemaVersionError, TraceStore

    if batch_episodes < 1:
        raise UserError(f"--batch-episodes must be at least 1, got {batch_episodes}.")
    loaded = load_for_capture(ckpt, device=device, attention_only=attention_only)
    if attention_only:
        attention = True
    ds = open_matching_dataset(loaded, dataset, root)
    total = ds.meta.total_episodes
    episodes = list(range(total)) if episodes is None else list(episodes)
    bad = [e for e in episodes if not 0 <= e < total]
    if bad or not episodes:
        raise UserError(f"episodes {bad or '(none)'} are out of range: the dataset has episodes 0..{total - 1}.")
    weights = loaded.path / "model.safetensors"
    manifest = {
        "provenance": {
            "checkpoint": str(loaded.path),
            "checkpoint_sha256": file_sha256(weights) if weights.is_file() else None,
            "policy_config": loaded.config.__class__.__name__,
            "policy": {k: v for k, v in vars(loaded.config).items() if isinstance(v, int | float | str | bool | type(None))},
            "dataset": {"repo_id": ds.repo_id, "root": str(Path(ds.root).resolve()), "revision": getattr(ds, "revision", None)},
            "memlens_version": version("memlens"),
            "lerobot_version": version("lerobot"),
            "capture_options": {"attention": attention, "full_attention": full_attention, "hidden": hidden,
                                "attention_only": attention_only},
        },
        "sites": {n: s.to_json() for n, s in active_sites(attention=attention, full_attention=full_attention, hidden=hidden).items()},
    }
    for key in ds.meta.features:
        if key.startswith("label."):
            site = label_site(key.removeprefix("label."))
            manifest["sites"][site.name] = site.to_json()
    try:
        store = TraceStore.create(out, manifest=manifest, overwrite=overwrite)
    except (NotATraceStoreError, ProvenanceMismatchError, SchemaVersionError) as exc:
        raise UserError(str(exc)) from exc
    rank, world = shard()
    todo = [e for e in episodes[rank::world] if not store.has_episode(e)]
    done = len(episodes[rank::world]) - len(todo)
    if progress is not None:
        progress("skip", done, len(episodes[rank::world]))
    for group in _chunks(todo, batch_episodes):
        results = replay_batch(loaded, ds, group, attention=attention, full_attention=full_attention, hidden=hidden)
        for ep, (arrays, attrs) in zip(group, results, strict=True):
            store.write_episode(ep, arrays, attrs)
            done += 1
            if progress is not None:
                progress("episode", done, len(episodes[rank::world]))
    return store
