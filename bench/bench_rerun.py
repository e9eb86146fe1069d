#!/usr/bin/env python
"""Cost of `memlens rerun --save`: one episode of a trace store written to an .rrd file.

What it measures, for a 50-frame episode (cue recall, medium delay: the test fixture's episodes) and a
long one (cue recall, extra-long delay: ~180 frames), 64x64 camera frames, 4 memory tokens of H=128,
attention of 4 layers x 4 heads:

1. `memlens rerun STORE --episode 0 --save OUT.rrd` as a fresh process (what a user waits for), with the
   UMAP fitted (the default), with `--no-umap`, and with `--no-umap --images none`; wall and CPU seconds
   (on a shared machine the CPU time is the steadier figure). A fresh process pays the imports (lerobot
   and torch, to decode the dataset's video frames) and, for the UMAP, numba's compilation.
2. In one warm process (imports done, UMAP compiled): `save_rrd` with raw images, JPEG images, no images,
   and the UMAP fit alone; each the median of `--reps` runs; plus the file sizes.

The stores are built under `--workdir` on first use, as the test fixture builds them: a tiny memory
checkpoint (4 training steps; the numbers do not depend on what it learned), then `memlens capture
--attention --hidden` of 16 medium and 4 extra-long episodes. `--traces STORE` times an existing store
instead (its first episode).

Usage (one thread per process; the figures in docs/rerun.md came from this):

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_rerun.py --workdir /tmp/bench_rerun
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

BIN = Path(sys.executable).parent


def build_stores(workdir: Path) -> list[Path]:
    """The fixture's recipe: tiny memory checkpoint, then captured medium and extra-long cue-recall episodes."""
    from memlens.capture.dataset import capture
    from memlens.models import install_vlm
    from memlens.tasks.record import record_dataset
    from memlens.workflows.train import tiny_train_args

    os.environ.setdefault("HF_HOME", str(workdir / "hf"))
    install_vlm("tiny", hf_home=os.environ["HF_HOME"])
    ckpt = workdir / "runs" / "checkpoints" / "last" / "pretrained_model"
    if not ckpt.is_dir():
        data = record_dataset(root=workdir / "cue_short", repo_id="local/cue_short", task="cue_recall",
                              variant="short", n_episodes=6, seed=0, progress=False)
        subprocess.run([str(BIN / "lerobot-train"), *tiny_train_args(dataset_root=data, output_dir=workdir / "runs",
                                                                      steps=4, batch_size=4, num_mem_tokens=4,
                                                                      n_mem_segments=2)],
                       check=True, capture_output=True)
    stores = []
    for variant, n in [("medium", 16), ("extra_long", 4)]:
        store = workdir / f"traces_{variant}"
        if not store.is_dir():
            root = workdir / f"cue_{variant}"
            if not root.is_dir():
                record_dataset(root=root, repo_id=f"local/cue_{variant}", task="cue_recall", variant=variant,
                               n_episodes=n, seed=1, progress=False)
            capture(str(ckpt), str(root), str(store), attention=True, hidden=True, batch_episodes=4)
        stores.append(store)
    return stores


def cli_seconds(store: Path, out: Path, *extra: str) -> str:
    """Wall and CPU (user + system) seconds of `memlens rerun STORE --episode 0 --save OUT *extra`."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([str(BIN / "memlens"), "rerun", str(store), "--episode", "0", "--save", str(out), *extra],
                          capture_output=True, text=True, env={**os.environ})
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"memlens rerun failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return f"{wall:.1f} s ({after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime:.1f} s CPU)"


def median_seconds(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_rerun"))
    ap.add_argument("--traces", type=Path, action="append", help="Time this store instead (repeatable).")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    stores = args.traces or build_stores(args.workdir)

    from memlens.apps.rerun_viewer import fit_embedding, save_rrd
    from memlens.store import TraceStore

    out = args.workdir / "bench.rrd"
    print("| episode | frames | fresh: default (UMAP fit) | fresh: --no-umap | fresh: --no-umap --images none | "
          "warm: raw images | warm: JPEG | warm: no images | warm: UMAP fit | .rrd raw / JPEG |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for store in stores:
        length = int(TraceStore.open(store).episode(0).attrs["length"])
        fresh_umap = cli_seconds(store, out)
        fresh = cli_seconds(store, out, "--no-umap")
        bare = cli_seconds(store, out, "--no-umap", "--images", "none")
        save_rrd(store, out, 0, umap=False)  # warm the imports and the dataset
        fit_embedding(store)  # compile numba
        raw = median_seconds(lambda: save_rrd(store, out, 0, umap=False), args.reps)
        raw_mb = out.stat().st_size / 1e6
        jpeg = median_seconds(lambda: save_rrd(store, out, 0, umap=False, images="jpeg"), args.reps)
        jpeg_mb = out.stat().st_size / 1e6
        none = median_seconds(lambda: save_rrd(store, out, 0, umap=False, images="none"), args.reps)
        fit = median_seconds(lambda: fit_embedding(store), args.reps)
        print(f"| {store.name} ep 0 | {length} | {fresh_umap} | {fresh} | {bare} | {raw:.2f} s | {jpeg:.2f} s | "
              f"{none:.2f} s | {fit:.2f} s | {raw_mb:.1f} / {jpeg_mb:.1f} MB |", flush=True)


if __name__ == "__main__":
    main()
