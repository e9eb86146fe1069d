"""`memlens capture CKPT --env NAME --n-episodes N`: capture live rollouts in a simulator.

Episodes run through lerobot's own `rollout` (as `lerobot-eval` runs them) with the capture hooks
attached; the rendered camera frames are stored with the trace (`frames/<camera>` [T, H, W, 3] uint8),
since there is no dataset to read them from. Episode i uses seed `seed + i`, so the memory tasks'
labels (the cue) are known and stored like a dataset's.
"""

from __future__ import annotations

import math
from contextlib import ExitStack

import numpy as np
import torch

from memlens.capture.config import CaptureConfig
from memlens.capture.dataset import chunk_arrays, pack_store
from memlens.capture.sites import Site, label_site
from memlens.errors import UserError
from memlens.runtime.rollout import action_dim, check_policy_matches_env, episode_length, rollout, single_env


def frame_site(camera: str) -> Site:
    return Site(f"frames/{camera}", "frame", ("T", "height", "width", "3"), "rendered env observation",
                "camera image at each frame of a live rollout")


@torch.no_grad()
def capture_env(ckpt, env_name: str, out: str, *, n_episodes: int, variant: str | None = None, seed: int = 0,
                config: CaptureConfig | None = None, overwrite: bool = False, progress=None, **options):
    """Capture `n_episodes` live rollouts of `env_name` (episode i seeded `seed + i`) into the trace store at
    `out`. What is recorded: `config` (a `CaptureConfig`) or its fields as keyword options; full attention
    maps are a dataset capture's option."""
    from memlens.store import TraceStore
    from memlens.tasks.catalog import (check_variants, env_config, is_mikasa, label_keys, task_description,
                                       variant_of_config, watch_episode)

    config = CaptureConfig.of(config, options)
    if config.full_attention:
        raise UserError("--full-attention is recorded for dataset captures only; capture live rollouts with "
                        "--attention (per-group summaries), or replay a dataset for full attention maps.")
    if n_episodes < 1:
        raise UserError(f"--n-episodes must be at least 1, got {n_episodes}.")
    check_variants(env_name, [variant] if variant else [])  # before loading: InvalidInputError names them
    loaded = config.load(ckpt)
    cfg = loaded.config
    env_cfg = env_config(env_name, variant, action_dim=action_dim(loaded))  # a MIKASA task: the policy's controller
    check_policy_matches_env(loaded, env_cfg)
    cameras = [k.removeprefix("observation.images.") for k in cfg.image_features]
    sites = {n: s.to_json() for n, s in config.sites().items() if n != "action/dataset"}
    # per-frame copies of the episode's labels (cue; order: second; MIKASA: cue or cue_0..2), and the phase
    keys = label_keys(env_cfg)
    for label in (*keys, "phase"):
        sites[f"label/{label}"] = label_site(label).to_json()
    for cam in cameras:
        sites[f"frames/{cam}"] = frame_site(cam).to_json()
    source = {"env": {"name": env_name, "variant": variant_of_config(env_cfg), "seed": seed}}
    store = TraceStore.create(out, manifest={"provenance": config.provenance(loaded, source), "sites": sites},
                              overwrite=overwrite)
    todo = [e for e in range(n_episodes) if not store.has_episode(e)]
    # MIKASA: one simulator (its labels are read from it after each episode, before the next reset)
    env = single_env(loaded, env_cfg, 1 if is_mikasa(env_cfg.type) else min(config.batch_episodes, len(todo) or 1))
    try:
        for start in range(0, len(todo), env.env.num_envs):
            group = todo[start : start + env.env.num_envs]
            seeds = [seed + e for e in group] + [seed + group[-1]] * (env.env.num_envs - len(group))
            with config.hooks(loaded.policy) as hooks, ExitStack() as watching:
                labels_of = [watching.enter_context(watch_episode(env_cfg, sub)) for sub in env.env.envs]
                data = rollout(loaded, env, seeds)
            for b, ep in enumerate(group):
                length = episode_length(data["done"][b])
                n_updates = math.ceil(length / cfg.n_action_steps)
                labels, phases = labels_of[b](seeds[b], length)
                arrays = {
                    "frame/index": np.arange(length, dtype=np.int32),
                    "frame/timestamp": (np.arange(length) / env_cfg.fps).astype(np.float32),
                    "frame/update": (np.arange(length) // cfg.n_action_steps).astype(np.int32),
                    "action/predicted": data["action"][b, :length].float().numpy(),
                    "memory/update_frame": (np.arange(n_updates) * cfg.n_action_steps).astype(np.int32),
                    **{f"label/{k}": np.full(length, labels[k], dtype=np.int64) for k in keys},
                    "label/phase": np.asarray(phases, dtype=np.int64),
                }
                for cam in cameras:
                    img = data["observation"][f"observation.images.{cam}"][b, :length]
                    arrays[f"frames/{cam}"] = (img.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                arrays.update(chunk_arrays(hooks, b, n_updates))
                attrs = {"episode": ep, "length": length, "n_updates": n_updates, "seed": seeds[b],
                         "success": bool(data["success"][b, :length].any()),
                         "task": task_description(env.env.envs[b]),
                         "labels": {k: int(v) for k, v in labels.items()}, "attention_groups": hooks.chunks[0]["groups"]}
                store.write_episode(ep, arrays, attrs)
                if progress is not None:
                    progress("episode", n_episodes - len(todo) + start + b + 1, n_episodes)
    finally:
        env.close()
    if todo:
        pack_store(store)
    return store
