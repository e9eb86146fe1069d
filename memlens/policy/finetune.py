"""Start a memory policy from a plain SmolVLA checkpoint (for example `lerobot/smolvla_base`).

`lerobot-train --policy.path=CKPT` reads CKPT's `config.json` and builds that type, so a `smolvla`
checkpoint cannot take `--policy.num_mem_tokens`. `as_memory_checkpoint` writes a view of it whose
config says `smolvla_rmt` (weights and processor files are linked, not copied); loading it fills every
SmolVLA weight and leaves the memory parameters at their fresh initialisation (lerobot loads
non-strictly and logs them as missing keys).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import fields
from pathlib import Path

from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

from memlens.errors import CheckpointNotFoundError

from .configuration_smolvla_rmt import SmolVLARMTConfig

CONVERTIBLE_TYPES = ("smolvla", "smolvla_rmt")
# Training options smolvla_rmt adds that say nothing about memory (they do not turn a SmolVLA checkpoint
# into a memory one).
TRAINING_FIELDS = ("batch_chunk", "mem_checkpoint_segments", "amp_memory_fp32")
MEMORY_FIELDS = tuple(
    f.name for f in fields(SmolVLARMTConfig)
    if f.name not in {g.name for g in fields(SmolVLAConfig)} and f.name not in TRAINING_FIELDS
)


def resolve_checkpoint_dir(path_or_repo_id: str | os.PathLike) -> Path:
    """A local checkpoint directory, or a Hub id resolved through the Hub cache (offline works)."""
    path = Path(path_or_repo_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointNotFoundError(
            f"Expected a checkpoint directory (holding config.json and model.safetensors), found a file: {path}."
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(path_or_repo_id)))
    except Exception as exc:  # noqa: BLE001 - any Hub/cache failure gets the same explanation
        raise CheckpointNotFoundError(
            f"Checkpoint {str(path_or_repo_id)!r} is neither a local directory nor a Hub repo id available "
            f"(online or in the Hub cache): {type(exc).__name__}: {exc}. Pass the directory that holds "
            "config.json and model.safetensors (for lerobot-train runs: OUTPUT/checkpoints/NNNNNN/pretrained_model)."
        ) from exc


def checkpoint_type(ckpt_dir: Path) -> str:
    config_file = ckpt_dir / "config.json"
    if not config_file.is_file():
        raise CheckpointNotFoundError(
            f"{ckpt_dir} has no config.json: expected a LeRobot policy checkpoint directory "
            "(for lerobot-train runs: OUTPUT/checkpoints/NNNNNN/pretrained_model)."
        )
    return json.loads(config_file.read_text()).get("type", "<missing>")


def as_memory_checkpoint(path_or_repo_id: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return a checkpoint directory of type `smolvla_rmt` for a `smolvla` or `smolvla_rmt` checkpoint.

    A `smolvla_rmt` checkpoint is returned as is. A `smolvla` one gets a converted view under
    `cache_dir` (default `~/.cache/memlens/converted/<hash>`). Any other type raises ValueError.
    """
    src = resolve_checkpoint_dir(path_or_repo_id)
    kind = checkpoint_type(src)
    if kind == "smolvla_rmt":
        return src
    if kind not in CONVERTIBLE_TYPES:
        raise ValueError(
            f"Cannot add memory to {src}: it is a {kind!r} checkpoint, and memory tokens can be added only to "
            f"one of {CONVERTIBLE_TYPES}. Pass a SmolVLA checkpoint (for example lerobot/smolvla_base), or "
            "train from scratch with --policy.type=smolvla_rmt."
        )
    config = json.loads((src / "config.json").read_text())
    config["type"] = "smolvla_rmt"
    digest = hashlib.sha256(f"{src.resolve()}:{(src / 'config.json').stat().st_mtime_ns}".encode()).hexdigest()[:16]
    root = Path(cache_dir or Path.home() / ".cache" / "memlens" / "converted")
    dst = root / digest
    tmp = root / f".{digest}.tmp{os.getpid()}"
    if not (dst / "config.json").is_file():
        tmp.mkdir(parents=True, exist_ok=True)
        for item in src.iterdir():
            if item.name != "config.json":
                (tmp / item.name).symlink_to(item.resolve())
        (tmp / "config.json").write_text(json.dumps(config, indent=4))
        try:
            tmp.rename(dst)
        except OSError:  # another process converted it first
            pass
    return dst


def new_memory_parameters(config: SmolVLARMTConfig, hidden_size: int) -> dict[str, tuple[int, ...]]:
    """Parameters a `smolvla` checkpoint lacks, with their shapes (they start fresh)."""
    if config.num_mem_tokens == 0:
        return {}
    return {"model.mem_tokens": (config.num_mem_tokens, 1, hidden_size)}
