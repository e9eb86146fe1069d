"""Where a checkpoint heads in its first action chunk after `go`, on seeded episodes (memlens env, closed loop).

Success says whether a policy reached the right target; this says what it did at the moment it had to
choose: the mean action over the first chunk of the go phase either stays still (norm < 0.2) or points at a
target (the nearest in angle), counted as the episode's cue target, order's distractor (`second`), or
another. A policy that knows the target heads to the cue; one that guesses spreads over all targets; one
that hesitates stays still. Used in docs/experiment.md on order's baseline, which failed run 4's control
(a border it could not read).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python bench/first_move.py CKPT --env memlens_order --variant control
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np


def first_moves(ckpt: str, env_name: str, variant: str, n_episodes: int = 50,
                seed: int = 100_000) -> tuple[Counter, float]:
    import torch

    from memlens.runtime import load_policy
    from memlens.runtime.rollout import rollout, single_env
    from memlens.tasks.envs import make_env_config
    from memlens.tasks.worlds import MemoryWorld, target_positions

    loaded = load_policy(ckpt)
    cfg = make_env_config(env_name, variant=variant)
    env = single_env(loaded, cfg, 10)
    targets = target_positions(cfg._spec.task, cfg._spec.n_targets)
    go, chunk = cfg._spec.go_start, loaded.config.n_action_steps  # the first go frames, one chunk long
    world = MemoryWorld(cfg._spec)  # the env auto-resets after an episode: replay each seed's labels here
    counts, successes = Counter(), []
    torch.manual_seed(seed)  # once: each batch draws its own flow-matching noise
    try:
        for b in range(0, n_episodes, 10):
            seeds = [seed + i for i in range(b, min(b + 10, n_episodes))]
            seeds += [seeds[-1]] * (10 - len(seeds))  # pad the batch; padded rows are not counted
            data = rollout(loaded, env, seeds)
            for row in range(min(10, n_episodes - b)):
                world.reset(seed=seeds[row])
                labels = world.labels
                successes.append(bool(data["success"][row].any()))
                move = data["action"][row, go : go + chunk, :2].float().numpy().mean(0)
                if np.linalg.norm(move) < 0.2:
                    counts["still"] += 1
                    continue
                k = int(np.argmax(targets @ move))
                counts["cue" if k == labels["cue"] else "second" if k == labels.get("second") else "other"] += 1
    finally:
        env.close()
    return counts, float(np.mean(successes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--env", default="memlens_order")
    parser.add_argument("--variant", default="control")
    parser.add_argument("--n-episodes", type=int, default=50)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    counts, success = first_moves(args.ckpt, args.env, args.variant, args.n_episodes)
    n = sum(counts.values())
    shares = ", ".join(f"{k} {counts[k]}/{n}" for k in ("cue", "second", "other", "still"))
    print(f"{args.env} {args.variant}: first go chunk heads to {shares}; success {success:.0%}")


if __name__ == "__main__":
    main()
