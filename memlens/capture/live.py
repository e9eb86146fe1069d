"""`memlens capture CKPT --env NAME --n-episodes N`: capture live rollouts in a simulator.

Episodes run through lerobot's own `rollout` (as `lerobot-eval` runs them) with the capture hooks
attached; the rendered camera frames are stored with the trace (`frames/<camera>` [T, H, W, 3] uint8),
since there is no dataset to read them from. Episode i uses seed `seed + i`, so the memory tasks'
labels (the cue) are known and stored like a dataset's.
"""

from __future__ import annotations

import math
from importlib.metadata import version

import numpy as np
import torch

from memlens.capture.recorder import CaptureHooks
from memlens.capture.run import chunk_arrays, load_for_capture
from memlens.capture.sites import Site, active_sites, label_site
from memlens.errors import UserError


def frame_site(camera: str) -> Site:
    return Site(f"frames/{camera}", "frame", ("T", "height", "width", "3"), "rendered env observation",
                "camera image at each frame of a live rollout")


@torch.no_grad()
def capture_env(ckpt: str, env_name: str, out: str, *, n_episodes: int, variant: str = "short", seed: int = 0,
                attention: bool = False, hidden: bool = False, batch_episodes: int = 1, device: str = "cpu",
                overwrite: bool = False, attention_only: bool = False, progress=None):
    from lerobot.envs.factory import make_env, make_env_pre_post_processors
    from lerobot.scripts.lerobot_eval import rollout

    from memlens.evaluate import check_policy_matches_env
    from memlens.store import TraceStore
    from memlens.tasks.envs import KNOWN_ENVS, make_env_config
    from memlens.tasks.worlds import MemoryWorld

    if n_episodes < 1:
        raise UserError(f"--n-episodes must be at least 1, got {n_episodes}.")
    if env_name not in KNOWN_ENVS:
        raise UserError(f"unknown env {env_name!r}; known envs: {', '.join(sorted(KNOWN_ENVS))}.")
    loaded = load_for_capture(ckpt, device=device, attention_only=attention_only)
    cfg = loaded.config
    attention = attention or attention_only
    env_cfg = make_env_config(env_name, variant=variant)
    check_policy_matches_env(loaded, env_cfg)
    cameras = [k.removeprefix("observation.images.") for k in cfg.image_features]
    sites = {n: s.to_json() for n, s in active_sites(attention=attention, hidden=hidden).items()
             if n != "action/dataset"}
    # per-frame copies of the world's episode labels (cue; order: second), except its constant settings
    episode_labels = [k for k in MemoryWorld(env_cfg._spec).labels if k not in ("n_targets", "delay_steps")]
    for label in (*episode_labels, "phase"):
        sites[f"label/{label}"] = label_site(label).to_json()
    for cam in cameras:
        sites[f"frames/{cam}"] = frame_site(cam).to_json()
    manifest = {"provenance": {"checkpoint": str(loaded.path), "env": {"name": env_name, "variant": variant, "seed": seed},
                               "memlens_version": version("memlens"), "lerobot_version": version("lerobot"),
                               "capture_options": {"attention": attention, "hidden": hidden, "live": True}},
                "sites": sites}
    store = TraceStore.create(out, manifest=manifest, overwrite=overwrite)
    todo = [e for e in range(n_episodes) if not store.has_episode(e)]
    envs = make_env(env_cfg, n_envs=min(batch_episodes, len(todo) or 1), use_async_envs=False)
    env = next(iter(next(iter(envs.values())).values()))
    env_pre, env_post = make_env_pre_post_processors(env_cfg, cfg)
    spec = env.envs[0].unwrapped.task_spec
    try:
        for start in range(0, len(todo), env.num_envs):
            group = todo[start : start + env.num_envs]
            seeds = [seed + e for e in group] + [seed + group[-1]] * (env.num_envs - len(group))
            with CaptureHooks(loaded.policy, attention=attention, hidden=hidden) as hooks:
                data = rollout(env, loaded.policy, env_pre, env_post, loaded.preprocessor, loaded.postprocessor,
                               seeds=seeds, return_observations=True)
            done = data["done"].to(int)
            for b, ep in enumerate(group):
                length = int(torch.argmax(done[b])) + 1 if done[b].any() else done.shape[1]
                n_updates = math.ceil(length / cfg.n_action_steps)
                world = MemoryWorld(spec)
                world.reset(seed=seeds[b])
                arrays = {
                    "frame/index": np.arange(length, dtype=np.int32),
                    "frame/timestamp": (np.arange(length) / env_cfg.fps).astype(np.float32),
                    "frame/update": (np.arange(length) // cfg.n_action_steps).astype(np.int32),
                    "action/predicted": data["action"][b, :length].float().numpy(),
                    "memory/update_frame": (np.arange(n_updates) * cfg.n_action_steps).astype(np.int32),
                    **{f"label/{k}": np.full(length, world.labels[k], dtype=np.int64) for k in episode_labels},
                    "label/phase": np.asarray([spec.phase(t) for t in range(length)], dtype=np.int64),
                }
                for cam in cameras:
                    img = data["observation"][f"observation.images.{cam}"][b, :length]
                    arrays[f"frames/{cam}"] = (img.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                arrays.update(chunk_arrays(hooks, b, n_updates))
                attrs = {"episode": ep, "length": length, "n_updates": n_updates, "seed": seeds[b],
                         "success": bool(data["success"][b, :length].any()), "task": env.envs[b].unwrapped.task_description,
                         "labels": {k: int(v) for k, v in world.labels.items()}, "attention_groups": hooks.chunks[0]["groups"]}
                store.write_episode(ep, arrays, attrs)
                if progress is not None:
                    progress("episode", n_episodes - len(todo) + start + b + 1, n_episodes)
    finally:
        env.close()
    return store
