"""The demo's shipped checkpoints: a memory policy and its same-budget baseline on cue recall.

    python -m memlens.workflows.demo_checkpoints --out artifacts/demo_checkpoints [--only memory|baseline]

They are the warm-up stage of `memlens experiment` for cue recall (docs/experiment.md): 60 expert episodes
each of the short, medium and control variants (seeds 0, 10000, 20000), the tiny model (frozen random
VLM), K=9 segments, 1500 steps at batch 16, AdamW lr 3e-4, seed 0; the memory policy has 4 memory tokens,
the baseline none. `--install` copies the two `pretrained_model` folders (weights, config, processors:
about 5 MB each) into `memlens/demo_assets/cue_recall/`, where `memlens demo` finds them.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from memlens.workflows.experiment import WARMUP_SEGMENTS, WARMUP_VARIANTS, ExperimentConfig, record_training_data

TASK = "cue_recall"
STEPS = 1500
ASSETS = Path(__file__).resolve().parents[1] / "demo_assets" / TASK
POLICIES = {"memory": 4, "baseline": 0}


def demo_checkpoint(name: str) -> Path:
    """The shipped `pretrained_model` folder of `name` ("memory" or "baseline")."""
    return ASSETS / name


def train_demo_checkpoints(out: Path, only: tuple[str, ...] = tuple(POLICIES)) -> dict[str, Path]:
    from memlens.models import install_vlm
    from memlens.workflows.experiment import train_policy

    install_vlm("tiny")
    cfg = ExperimentConfig(tasks=(TASK,))
    data = record_training_data(TASK, WARMUP_VARIANTS[TASK], cfg, Path(out), "train_warmup")
    return {name: train_policy(data, Path(out) / TASK / name, cfg, num_mem_tokens=POLICIES[name],
                               segments=WARMUP_SEGMENTS[TASK], steps=STEPS) for name in only}


def install(ckpts: dict[str, Path]) -> None:
    for name, ckpt in ckpts.items():
        dest = demo_checkpoint(name)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(ckpt, dest, ignore=shutil.ignore_patterns("train_config.json"))  # (this machine's paths)
        print(f"{name}: {ckpt} -> {dest}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("artifacts/demo_checkpoints"))
    p.add_argument("--only", choices=tuple(POLICIES), action="append")
    p.add_argument("--install", action="store_true", help="copy the trained checkpoints into memlens/demo_assets")
    a = p.parse_args(argv)
    ckpts = train_demo_checkpoints(a.out, tuple(a.only or POLICIES))
    if a.install:
        install(ckpts)


if __name__ == "__main__":
    main()
