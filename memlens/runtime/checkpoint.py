"""Load a LeRobot policy checkpoint with its pre/post-processors, as every memlens job runs it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LoadedPolicy:
    policy: object  # a lerobot PreTrainedPolicy (SmolVLARMTPolicy for memory checkpoints)
    preprocessor: object
    postprocessor: object
    path: Path

    @property
    def config(self):
        return self.policy.config


def load_policy(ckpt: str | os.PathLike | LoadedPolicy, *, device: str = "cpu") -> LoadedPolicy:
    """Load a lerobot policy checkpoint (local directory or Hub id) with its pre/post-processors.

    A `LoadedPolicy` is returned as it is. A path that holds no checkpoint raises
    `CheckpointNotFoundError` (a `UserError`, and a `FileNotFoundError`)."""
    if isinstance(ckpt, LoadedPolicy):
        return ckpt
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


def weights_sha256(loaded: LoadedPolicy, block: int = 1 << 22) -> str | None:
    """sha256 of the checkpoint's `model.safetensors` (None when the file is not there)."""
    import hashlib

    weights = Path(loaded.path) / "model.safetensors"
    if not weights.is_file():
        return None
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()
