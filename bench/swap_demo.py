"""Does the trained cue-recall policy act on what its memory holds? Swap, zero and reset the memory mid-episode.

    OMP_NUM_THREADS=1 python bench/swap_demo.py                       # the checkpoint memlens experiment trains
    OMP_NUM_THREADS=1 python bench/swap_demo.py --ckpt CKPT --n-episodes 40 --variant medium

Closed-loop rollouts in `memlens_cue_recall` (episode i seeded 100000 + i, the same seeds with and
without the intervention, same denoising noise). For `swap`, episodes are paired with partners whose
cue differs and exchange memories at update K; the table says which target each swapped episode
reached: its own cue's, its donor's, another, or none. With the medium variant (cue frames 0-9, delay
10-39, go from 40, one update every 10 frames) update 0 is the first cue frame (every episode starts
from the same learned memory, so swapping there exchanges identical memories), updates 1-3 fall in
the delay, update 4 is the first go frame.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

CKPT = "artifacts/exp-cue/cue_recall/memory/checkpoints/last/pretrained_model"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=CKPT)
    parser.add_argument("--variant", default="medium")
    parser.add_argument("--n-episodes", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--swap-updates", default="0,1,2,3,4", help="updates at which to swap")
    parser.add_argument("--ablate-update", type=int, default=2, help="update at which to zero / reset")
    parser.add_argument("--output", type=Path, default=None, help="also write every result as JSON")
    args = parser.parse_args()
    import torch

    from memlens.interventions import intervene_env
    from memlens.runtime import load_policy

    torch.set_num_threads(1)
    loaded = load_policy(args.ckpt)
    runs = [("swap", int(u)) for u in args.swap_updates.split(",")]
    runs += [("zero", args.ablate_update), ("reset", args.ablate_update), ("shuffle", args.ablate_update)]
    results = []
    print(f"{args.ckpt}, memlens_cue_recall {args.variant}, {args.n_episodes} episodes per run\n")
    print("| intervention | success (reference -> intervened) | own target | donor's target | other | none | s |")
    print("|---|---|---|---|---|---|---|")
    for mode, update in runs:
        t = time.perf_counter()
        res = intervene_env(loaded, "memlens_cue_recall", mode=mode, from_update=update, n_episodes=args.n_episodes,
                            variant=args.variant, batch_size=args.batch_size)
        s = res.summary
        rates = ["", "", "", ""]
        if "n_swapped" in s:
            rates = [f"{s[f'{k}_target_rate_intervened']:.2f}" for k in ("own", "donor", "other", "none")]
        print(f"| {mode} at update {update} | {s['success_reference']:.2f} -> {s['success_intervened']:.2f} | "
              + " | ".join(rates) + f" | {time.perf_counter() - t:.0f} |", flush=True)
        results.append(res.to_dict())
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
