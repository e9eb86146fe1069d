"""Replay dataset episodes through a policy exactly as at deployment: one replay for every job.

`replay` calls `select_action` on every frame in order, after `reset()` at the start, so the memory
evolves once per segment (per chunk by default) as on the robot. Several episodes replay together as one
batch (rows are independent; a shorter episode repeats its last frame, and its steps after the end are
marked not `live`). `memlens inspect`, capture, interventions, the offline comparison and the demo all
replay through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from memlens.errors import UserError
from memlens.runtime.checkpoint import LoadedPolicy


def open_dataset(repo_id_or_path: str | os.PathLike, *, root: str | os.PathLike | None = None, episodes=None):
    """A LeRobotDataset from a local path (repo id taken from the folder name) or a repo id + root."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    path = Path(repo_id_or_path)
    if root is None and path.is_dir():
        repo_id, root = f"local/{path.name}", path
    else:
        repo_id = str(repo_id_or_path)
    return LeRobotDataset(repo_id, root=root, episodes=episodes)


def check_dataset_matches_policy(loaded: LoadedPolicy, dataset) -> None:
    """Raise UserError naming the keys when the dataset lacks inputs the policy needs."""
    features = dataset.meta.features
    expected = [k for k in loaded.config.input_features if not k.startswith("observation.images.empty")]
    missing = [k for k in expected if k not in features]
    if missing:
        found = sorted(k for k in features if k.startswith("observation."))
        raise UserError(
            f"the dataset lacks inputs the policy needs: {missing}. The policy expects {sorted(expected)}; the "
            f"dataset has {found}. Use the dataset the checkpoint was trained on (or one with the same camera "
            "and state keys)."
        )


def open_matching_dataset(loaded: LoadedPolicy, dataset, root=None):
    """The dataset to replay, opened (any lerobot failure becomes one UserError) and checked against the policy."""
    try:
        ds = open_dataset(dataset, root=root)
    except Exception as exc:  # noqa: BLE001 - lerobot raises many kinds here
        raise UserError(f"cannot open dataset {dataset!r} (root {root}): {type(exc).__name__}: {exc}") from exc
    check_dataset_matches_policy(loaded, ds)
    return ds


def check_episodes(dataset, episodes: list[int] | None) -> list[int]:
    """`episodes` (all of the dataset's when None), refused with a UserError when empty or out of range."""
    total = dataset.meta.total_episodes
    episodes = list(range(total)) if episodes is None else [int(e) for e in episodes]
    bad = [e for e in episodes if not 0 <= e < total]
    if bad or not episodes:
        raise UserError(f"episodes {bad or '(none)'} are out of range: the dataset has episodes 0..{total - 1}.")
    return episodes


def episode_frames(dataset, episode: int) -> Iterator[dict]:
    """Frames of one episode in order (dicts as `dataset[i]` returns them)."""
    ep = dataset.meta.episodes[episode]
    start, stop = int(ep["dataset_from_index"]), int(ep["dataset_to_index"])
    index_of = {int(g): i for i, g in enumerate(dataset.hf_dataset["index"])} if dataset.episodes else None
    for global_index in range(start, stop):
        yield dataset[index_of[global_index] if index_of is not None else global_index]


def observation_from_frame(frame: dict, input_features) -> dict:
    """The raw observation (what a robot would send) for the policy's input features, plus the task text."""
    obs = {key: frame[key] for key in input_features if key in frame}
    missing = [key for key in input_features if key not in frame and not key.startswith("observation.images.empty")]
    if missing:
        raise KeyError(
            f"the dataset frame lacks policy inputs {missing}; the policy expects {sorted(input_features)}, "
            f"the dataset has {sorted(k for k in frame if k.startswith('observation.'))}."
        )
    obs["task"] = frame["task"]
    return obs


@dataclass
class ReplayStep:
    """One step of a replay: frame `t` of every episode replayed together."""

    t: int
    frames: list[dict]  # episode b's frame t (its last frame again once it has ended)
    live: list[bool]  # whether episode b has a frame t
    action: torch.Tensor  # the postprocessed actions `[B, action_dim]`


def episode_lengths(dataset, episodes: list[int]) -> list[int]:
    return [int(dataset.meta.episodes[ep]["length"]) for ep in episodes]


@torch.no_grad()
def replay(loaded: LoadedPolicy, dataset, episodes: list[int]) -> Iterator[ReplayStep]:
    """Replay `episodes` together, one `select_action` per frame; yields a `ReplayStep` after each."""
    policy, cfg = loaded.policy, loaded.config
    streams = [episode_frames(dataset, ep) for ep in episodes]
    lengths = episode_lengths(dataset, episodes)
    last: list[dict | None] = [None] * len(episodes)
    policy.reset()
    for t in range(max(lengths)):
        for b, stream in enumerate(streams):
            if t < lengths[b]:
                last[b] = next(stream)
        obs = [observation_from_frame(f, cfg.input_features) for f in last]
        batch = {k: torch.stack([o[k] for o in obs]) for k in obs[0] if k != "task"}
        batch["task"] = [o["task"] for o in obs]
        action = loaded.postprocessor(policy.select_action(loaded.preprocessor(batch)))
        yield ReplayStep(t, list(last), [t < n for n in lengths], action)


def replay_episode(
    loaded: LoadedPolicy, dataset, episode: int, *, on_step: Callable[[int, dict, torch.Tensor], None] | None = None
) -> list[torch.Tensor]:
    """`select_action` on every frame of `episode`; returns the (postprocessed) actions `[1, A]`, one per frame.

    `on_step(frame_index, frame, action)` is called after each step (the policy's memory is then
    `loaded.policy.memory`)."""
    actions = []
    for step in replay(loaded, dataset, [episode]):
        actions.append(step.action)
        if on_step is not None:
            on_step(step.t, step.frames[0], step.action)
    return actions


def replay_actions(loaded: LoadedPolicy, dataset, episodes: list[int]) -> list[dict[str, np.ndarray]]:
    """Replay `episodes` together; per episode `{"predicted": [T, A], "recorded": [T, A]}` float32 arrays
    (the policy's postprocessed actions and the dataset's)."""
    predicted: list[list] = [[] for _ in episodes]
    recorded: list[list] = [[] for _ in episodes]
    for step in replay(loaded, dataset, episodes):
        for b, frame in enumerate(step.frames):
            if step.live[b]:
                predicted[b].append(step.action[b].float().cpu().numpy())
                recorded[b].append(frame["action"].float().numpy())
    return [{"predicted": np.stack(p).astype(np.float32), "recorded": np.stack(r).astype(np.float32)}
            for p, r in zip(predicted, recorded, strict=True)]
