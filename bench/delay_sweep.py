"""Success of one checkpoint against the delay, in frames, on seeded episodes (memlens env, closed loop).

Separates "the memory lost the cue" from "the policy acted at the wrong time": a tiny policy computes an
action chunk every 10 frames, so a delay that ends inside a chunk (3 or 7 frames: `go` starts at frame 13
or 17) makes the chunk computed before it guess whether to move, while a delay ending on a chunk boundary
(10, 20 frames) does not. That is what run 3's checkpoints showed; since run 4 the scripted expert commands
the goal from the first delay frame on, so no chunk has to guess, and success no longer depends on where
the delay ends (it does fall past twice the longest trained delay). Results in docs/experiment.md.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python bench/delay_sweep.py CKPT --env memlens_cue_recall --delays 3 7 10 20
"""

from __future__ import annotations

import argparse

import numpy as np


def sweep(ckpt: str, env_name: str, delays: list[int], n_episodes: int = 50, seed: int = 100_000) -> dict[int, float]:
    from memlens.interventions.env import _rollout
    from memlens.runtime import load_policy
    from memlens.runtime.rollout import single_env
    from memlens.tasks.envs import make_env_config

    loaded = load_policy(ckpt)
    out = {}
    for delay in delays:
        cfg = make_env_config(env_name, variant="short", delay_steps=delay)
        env = single_env(loaded, cfg, 10)
        success = []
        try:
            for b in range(0, n_episodes, 10):
                seeds = [seed + i for i in range(b, min(b + 10, n_episodes))]
                seeds += [seeds[-1]] * (10 - len(seeds))  # pad the batch; padded rows are not counted
                rows = _rollout(loaded, env, seeds, seed)
                success += [r["success"] for r in rows[: min(10, n_episodes - b)]]
        finally:
            env.close()
        out[delay] = float(np.mean(success))
        print(f"delay {delay:3d} frames (go at frame {cfg._spec.go_start:3d}): success {out[delay]:.0%} "
              f"of {len(success)}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--env", default="memlens_cue_recall")
    parser.add_argument("--delays", type=int, nargs="+", default=[3, 7, 10, 20])
    parser.add_argument("--n-episodes", type=int, default=50)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    sweep(args.ckpt, args.env, args.delays, args.n_episodes)


if __name__ == "__main__":
    main()
