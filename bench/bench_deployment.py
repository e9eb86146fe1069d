#!/usr/bin/env python
"""Latency of a memory chunk against a no-memory chunk under each of lerobot's inference engines.

One process, tiny architecture, two policies with identical weights apart from the memory tokens
(`num_mem_tokens` 4 and 0; random init, saved as checkpoints with their processors), each driven on
`memlens_fake_robot` through lerobot's `SyncInferenceEngine`, its RTC engine (`MemoryRTCInferenceEngine`)
and its async gRPC server/client on 127.0.0.1 (`memlens serve` / `memlens robot-client` classes),
interleaved for `--reps` repetitions. Reported per engine: median policy time per chunk computation
(memory / no memory and the ratio), the number of chunks, and the prefix-only memory writes RTC and
async add on boundaries no chunk was computed on (count, median time).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/bench_deployment.py [--frames 60 --reps 2]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from pathlib import Path

import torch


def build_checkpoints(root: Path) -> dict[str, Path]:
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.factory import make_pre_post_processors

    from memlens.models import install_vlm, tiny_smolvla_kwargs
    from memlens.policy import SmolVLARMTConfig, SmolVLARMTPolicy

    install_vlm("tiny")
    features = dict(
        input_features={"observation.images.top": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 64, 64)),
                        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(4,))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(2,))},
    )
    out, state = {}, None
    for name, m in (("memory", 4), ("no memory", 0)):
        torch.manual_seed(0)
        cfg = SmolVLARMTConfig(**tiny_smolvla_kwargs(), **features, device="cpu", num_mem_tokens=m)
        policy = SmolVLARMTPolicy(cfg)
        if state is not None:  # the same weights; only mem_tokens differ
            policy.load_state_dict({k: v for k, v in state.items() if k in policy.state_dict()}, strict=False)
        state = policy.state_dict()
        path = root / name.replace(" ", "_")
        policy.save_pretrained(path)
        for proc in make_pre_post_processors(cfg, None):
            proc.save_pretrained(path)
        out[name] = path
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)  # lerobot's per-chunk info lines and RTC queue warnings

    from memlens.deploy.drive import drive_async, drive_rtc, drive_sync

    drives = {"sync (select_action)": lambda c: drive_sync(c, n_frames=args.frames),
              "RTC (lerobot.rollout.inference)": lambda c: drive_rtc(c, n_frames=args.frames),
              "async (gRPC server + client)": lambda c: drive_async(c, n_frames=args.frames, chunk_size_threshold=0.3)}
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = build_checkpoints(Path(tmp))
        runs = {(e, p): [] for e in drives for p in ckpts}
        for rep in range(args.reps):
            order = list(ckpts) if rep % 2 == 0 else list(ckpts)[::-1]
            for engine, drive in drives.items():
                for name in order:
                    runs[(engine, name)].append(drive(ckpts[name]))
            print(f"repetition {rep + 1}/{args.reps} done", flush=True)
    print(f"\n{args.frames} frames per run, {args.reps} runs per policy and engine (tiny model, 1 thread)\n")
    print("| engine | memory ms/chunk | no memory ms/chunk | ratio | chunks per run | boundary-only writes per run (ms each) |")
    print("|---|---|---|---|---|---|")
    for engine in drives:
        med = {}
        for name in ckpts:
            times = [t for r in runs[(engine, name)] for t in r.chunk_s[1:]]  # first chunk: warm-up
            med[name] = statistics.median(times) * 1e3
        mem_runs = runs[(engine, "memory")]
        chunks = statistics.mean(len(r.chunk_s) for r in mem_runs)
        writes = [t for r in mem_runs for t in r.write_s]
        w = f"{len(writes) / len(mem_runs):.1f} ({statistics.median(writes) * 1e3:.0f})" if writes else "0"
        print(f"| {engine} | {med['memory']:.1f} | {med['no memory']:.1f} | {med['memory'] / med['no memory']:.3f} | "
              f"{chunks:.1f} | {w} |")


if __name__ == "__main__":
    main()
