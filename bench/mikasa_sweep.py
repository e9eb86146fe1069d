#!/usr/bin/env python
"""Can the tiny backbone learn MIKASA-Robo's manipulation on this CPU? A sweep on the cue-visible control.

Trains baseline policies (``num_mem_tokens=0``) with ``memlens train`` (lerobot-train) on a recorded
``mikasa_remember_color3_visible`` dataset, one per setting below, with the same seed and data, then rolls
each out with ``bench/bench_mikasa.py policy`` (success, TCP reach of the target vs of another cube,
per-episode cost) at ``n_action_steps`` 10 (open loop over the chunk, the tiny default) and 1 (closed loop).
Settings (``--settings``): ``frozen`` (the tiny default: the random VLM frozen, the action expert and state
projection trained), ``trained_vlm`` (the VLM's vision and text layers trained too), ``half_data`` (frozen,
the first half of the episodes), ``tiny128`` (frozen, the 128-px tiny VLM: MIKASA's frames at full
resolution instead of resized to 64 px, the same 16 tokens per camera). Results: one JSON line per run and evaluation in ``OUT/results.jsonl``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/mikasa_sweep.py --dataset artifacts/mikasa/rc3_visible \\
        --out artifacts/mikasa/sweep --steps 4000 --episodes 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {
    "frozen": {},
    "trained_vlm": {"freeze_vision_encoder": False, "train_expert_only": False},
    "half_data": {},
    "tiny128": {},
}


def train(name: str, dataset: Path, out: Path, steps: int, batch_size: int) -> tuple[Path, float]:
    from memlens.models.vlm_builder import install_vlm, tiny128_smolvla_kwargs
    from memlens.workflows.train import tiny_train_args

    run = out / name
    ckpt = run / "checkpoints" / "last" / "pretrained_model"
    if (ckpt / "model.safetensors").is_file():
        return ckpt, float("nan")
    settings = dict(SETTINGS[name])
    if name == "tiny128":
        install_vlm("tiny128")
        kwargs = tiny128_smolvla_kwargs()
        settings.update(vlm_model_name=kwargs["vlm_model_name"], resize_imgs_with_padding=kwargs["resize_imgs_with_padding"])
    args = tiny_train_args(dataset_root=dataset, output_dir=run, steps=steps, batch_size=batch_size,
                           num_mem_tokens=0, max_state_dim=32, max_action_dim=32, **settings)
    if name == "half_data":
        episodes = json.loads((dataset / "meta" / "info.json").read_text())["total_episodes"]
        args.append(f"--dataset.episodes=[{','.join(str(i) for i in range(episodes // 2))}]")
    t = time.perf_counter()
    with open(out / f"{name}.train.log", "w") as log:
        subprocess.run([sys.executable, "-m", "memlens.cli", "train", *args], check=True, stdout=log,
                       stderr=subprocess.STDOUT)
    return ckpt, time.perf_counter() - t


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny backbones are built locally; the Hub is not asked
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--env", default="mikasa_remember_color3_visible")
    parser.add_argument("--n-action-steps", type=int, nargs="+", default=[10, 1])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Path(__file__).with_name("bench_mikasa.py")
    for name in args.settings:
        ckpt, seconds = train(name, args.dataset, args.out, args.steps, args.batch_size)
        with open(args.out / "results.jsonl", "a") as f:
            f.write(json.dumps({"setting": name, "trained_s": seconds, "steps": args.steps,
                                "batch_size": args.batch_size}) + "\n")
        print(f"{name}: trained in {seconds:.0f} s", flush=True)
        for n in args.n_action_steps:
            subprocess.run([sys.executable, str(bench), "policy", "--ckpt", str(ckpt), "--envs", args.env,
                            "--episodes", str(args.episodes), "--n-action-steps", str(n),
                            "--json", str(args.out / "results.jsonl")], check=True)


if __name__ == "__main__":
    main()
