#!/usr/bin/env python
"""What does a MIKASA-trained memory hold? Probes on replayed demonstrations and a live memory swap.

For a memory checkpoint trained by ``memlens experiment --tasks mikasa_remember_color3`` (or any MIKASA
RememberColor checkpoint):

1. ``memlens capture`` replays ``--episodes`` expert episodes of the task dataset and of its cue-visible control
   into trace stores (``OUT/replay_cue``, ``OUT/replay_control``);
2. probes the cue colour, grouped by episode with a control task, only from the updates made once the cue
   was gone (``after_cue=True``), from the memory, from the current observation's embedding and from the
   initial memory (the floor), on both stores;
3. swaps memory between live episodes with different cues (``intervene_env`` ``mode="swap"``) and counts how
   many reach their own cue's cube, the donor's, another, or none;
4. captures ``--live-episodes`` closed-loop rollouts of the task (``OUT/live_cue``) and probes them as in 2.

``--stages`` picks among ``replay swap live`` (default: all); each stage adds to ``OUT/report.json``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/mikasa_analyses.py --ckpt RUN/checkpoints/last/pretrained_model \\
        --data artifacts/mikasa_experiment/mikasa_remember_color3/parts --out artifacts/mikasa_analyses
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder with cue-seed0/ and control-seed0/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--env", default="mikasa_remember_color3")
    parser.add_argument("--episodes", type=int, default=50, help="replayed episodes per dataset")
    parser.add_argument("--swap-episodes", type=int, default=20)
    parser.add_argument("--from-update", type=int, default=1, help="swap at this memory update (frame 5)")
    parser.add_argument("--live-episodes", type=int, default=30)
    parser.add_argument("--stages", nargs="+", default=["replay", "swap", "live"], choices=["replay", "swap", "live"])
    args = parser.parse_args()

    import torch

    from memlens.analysis import probe_baselines
    from memlens.capture.dataset import capture
    from memlens.capture.live import capture_env
    from memlens.interventions import intervene_env

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "report.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    report.update(ckpt=args.ckpt)
    report.setdefault("probes", {})

    def probes(name: str, store: Path) -> None:
        results, table, _ = probe_baselines(str(store), "cue", after_cue=True, n_splits=5)
        report["probes"][name] = table.to_dict(orient="records")
        print(f"{name}: cue probe after the cue is gone (accuracy; chance = most common class)\n"
              f"{table.to_string(index=False)}", flush=True)

    if "replay" in args.stages:
        for variant in ("cue", "control"):
            store = args.out / f"replay_{variant}"
            t = time.perf_counter()
            capture(args.ckpt, str(args.data / f"{variant}-seed0"), str(store), episodes=list(range(args.episodes)))
            print(f"{variant}: captured {args.episodes} replayed episodes in {time.perf_counter() - t:.0f} s", flush=True)
            probes(f"replay_{variant}", store)
    if "swap" in args.stages:
        t = time.perf_counter()
        swap = intervene_env(args.ckpt, args.env, mode="swap", from_update=args.from_update,
                             n_episodes=args.swap_episodes)
        report["swap"] = {"summary": swap.summary, "episodes": swap.episodes, "seconds": time.perf_counter() - t}
        print(f"swap at update {args.from_update} ({args.swap_episodes} live episodes, {time.perf_counter() - t:.0f} s):",
              flush=True)
        for key, value in swap.summary.items():
            print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}", flush=True)
    if "live" in args.stages:
        store = args.out / "live_cue"
        t = time.perf_counter()
        live = capture_env(args.ckpt, args.env, str(store), n_episodes=args.live_episodes)
        success = sum(live.episode(e).attrs["success"] for e in live.episodes())
        report["live"] = {"episodes": args.live_episodes, "success": int(success), "seconds": time.perf_counter() - t}
        print(f"live: captured {args.live_episodes} rollouts ({success} successful) in {time.perf_counter() - t:.0f} s",
              flush=True)
        probes("live_cue", store)
    path.write_text(json.dumps(report, indent=2, default=str))

if __name__ == "__main__":
    main()
