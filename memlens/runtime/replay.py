"""Load a policy checkpoint with its processors, and replay dataset episodes as at deployment.

Replay calls `select_action` on every frame in order, after `reset()` at the episode start, so the
memory evolves once per segment (per chunk by default) exactly as on the robot. Used by `memlens inspect`, the demo and capture.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class LoadedPolicy:
    policy: object  # a lerobot PreTrainedPolicy (SmolVLARMTPolicy for memory checkpoints)
    preprocessor: object
    postprocessor: object
    path: Path

    @property
    def config(self):
        return self.policy.config


def load_policy(ckpt: str | os.PathLike, *, device: str = "cpu") -> LoadedPolicy:
    """Load a lerobot policy checkpoint (local directory or Hub id) with its pre/post-processors."""
    import memlens.plugin  # noqa: F401  (registers smolvla_rmt)
    from lerobot.configs import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    from memlens.policy.finetune import checkpoint_type, resolve_checkpoint_dir

    path = resolve_checkpoint_dir(ckpt)
    kind = checkpoint_type(path)
    config = PreTrainedConfig.from_pretrained(path)
    config.device = device
    policy = get_policy_class(kind).from_pretrained(path, config=config)
    policy.eval()
    pre, post = make_pre_post_processors(
        config, pretrained_path=str(path), preprocessor_overrides={"device_processor": {"device": device}}
    )
    return LoadedPolicy(policy, pre, post, path)


def open_dataset(repo_id_or_path: str | os.PathLike, *, root: str | os.PathLike | None = None, episodes=None):
    """A LeRobotDataset from a local path (repo id taken from the folder name) or a repo id + root."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    path = Path(repo_id_or_path)
    if root is None and path.is_dir():
        repo_id, root = f"local/{path.name}", path
    else:
        repo_id = str(repo_id_or_path)
    return LeRobotDataset(repo_id, root=root, episodes=episodes)


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


@torch.no_grad()
def replay_episode(
    loaded: LoadedPolicy, dataset, episode: int, *, on_step: Callable[[int, dict, torch.Tensor], None] | None = None
) -> list[torch.Tensor]:
    """`select_action` on every frame of `episode`; returns the (postprocessed) actions, one per frame.

    `on_step(frame_index, frame, action)` is called after each step (the policy's memory is then
    `loaded.policy.memory`: `.state` `[M, B, H]`, `.segments` written so far).
    """
    policy = loaded.policy
    policy.reset()
    actions = []
    for t, frame in enumerate(episode_frames(dataset, episode)):
        batch = loaded.preprocessor(observation_from_frame(frame, policy.config.input_features))
        action = loaded.postprocessor(policy.select_action(batch))
        actions.append(action)
        if on_step is not None:
            on_step(t, frame, action)
    return actions
