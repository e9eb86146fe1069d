"""Capture overhead against plain replay, and batched replay speed-up, measured side by side.

    python bench/bench_capture.py [--sizes tiny,full] [--reps 3] [--episodes 4]

One process, one torch thread, repetitions interleaved round-robin over the configurations; the
median per configuration is reported with its ratio to plain replay of the same episodes:

- plain:      the same replay loop without any hook (dataset decode, preprocess, select_action, postprocess)
- memory:     capture of the memory sites (memory read/write, actions, frame bookkeeping)
- attention:  + attention summaries per prefix group (recomputes attention probabilities)
- batched B:  capture with B episodes replayed as one batch (time per episode)

Both sizes replay the same 64-px dataset; the full-size policy resizes frames to 512 px, so its
compute is that of the real architecture.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


def build(size: str, workdir: Path, device: str = "cpu"):
    """A random-weight memory checkpoint (M=4) of the given size and a small cue-recall dataset."""
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.factory import make_pre_post_processors

    from memlens.models import full_size_smolvla_kwargs, install_vlm, tiny_smolvla_kwargs
    from memlens.policy import SmolVLARMTConfig, SmolVLARMTPolicy
    from memlens.runtime import LoadedPolicy
    from memlens.tasks.record import record_dataset

    install_vlm("tiny" if size == "tiny" else "full")
    data = workdir / "data"
    if not data.exists():
        record_dataset(root=data, repo_id="local/data", variant="short", n_episodes=8, progress=False)
    from memlens.runtime.replay import open_dataset

    ds = open_dataset(data)
    kwargs = tiny_smolvla_kwargs() if size == "tiny" else {**full_size_smolvla_kwargs(), "chunk_size": 10, "n_action_steps": 10}
    torch.manual_seed(0)
    cfg = SmolVLARMTConfig(
        **kwargs, num_mem_tokens=4, device=device,
        input_features={"observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 64, 64)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (4,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (2,))},
    )
    policy = SmolVLARMTPolicy(cfg).to(device).eval()
    pre, post = make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)
    return LoadedPolicy(policy, pre, post, workdir), ds


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,full")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args(argv)
    print("command: python " + " ".join([sys.argv[0], *sys.argv[1:]]))
    from memlens.capture.config import CaptureConfig
    from memlens.capture.dataset import replay_batch

    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            loaded, ds = build(size, Path(tmp), args.device)
            eps = list(range(args.episodes))
            configs = {
                "plain replay": lambda: [replay_batch(loaded, ds, [e], record=False) for e in eps],
                "capture: memory": lambda: [replay_batch(loaded, ds, [e]) for e in eps],
                "capture: + attention summaries": lambda: [replay_batch(loaded, ds, [e], config=CaptureConfig(attention=True)) for e in eps],
                f"capture: memory, batch {args.batch}": lambda: [replay_batch(loaded, ds, eps[i:i + args.batch])
                                                                 for i in range(0, len(eps), args.batch)],
            }
            configs["plain replay"]()  # warm-up (decoder, allocator)
            times = {name: [] for name in configs}
            for _ in range(args.reps):
                for name, fn in configs.items():
                    times[name].append(timed(fn))
            base = statistics.median(times["plain replay"])
            frames = sum(int(ds.meta.episodes[e]["length"]) for e in eps)
            print(f"\n{size} on {args.device}: {len(eps)} episodes, {frames} frames, median of {args.reps} "
                  "interleaved repetitions")
            print(f"{'configuration':36s} {'s total':>9s} {'ms/frame':>9s} {'ratio':>7s}")
            for name, ts in times.items():
                med = statistics.median(ts)
                print(f"{name:36s} {med:9.2f} {1000 * med / frames:9.1f} {med / base:7.3f}")


if __name__ == "__main__":
    main()
