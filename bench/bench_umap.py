#!/usr/bin/env python
"""Time of a UMAP fit on many memory states (`memlens.analysis.MemoryEmbedding`): target <= 60 s for
100,000 states after PCA to 50 dimensions, on one CPU thread.

What it measures:

1. numba's JIT compile: two short `MemoryEmbedding` fits on 5,000 random states (spectral and PCA init)
   in a fresh process. UMAP and pynndescent compile their kernels on first use (the nearest-neighbour
   descent only above 4,096 rows); part of that is cached on disk by numba after the first run ever.
   Reported separately, and *not* included in the fit times below, which run after it in the same process.
2. For each configuration (`--configs`), a fit on `--n` synthetic states of the full-size shape
   (M=4 tokens x H=960, all tokens concatenated: 3,840 features, float32): PCA to 50 dimensions
   (randomized SVD fitted on at most 20,000 rows, then applied to all rows), then UMAP to 2-D; the PCA
   part and the total are timed. The states are not white noise: each of n/50 "episodes" is a 50-step
   random walk in an 8-D latent space around one of 4 cue centres, mapped linearly to 3,840
   dimensions, with noise, and RMS-normalised per token (like the RMSNorm outputs memlens stores).
   Wall time and this process's CPU time are both printed: on a machine shared with other jobs the CPU
   time is closer to what an idle core would take.

Usage (one thread; the machine's other load changes the numbers, so compare configurations within a run):

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python bench/bench_umap.py                 # 100,000 states
    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python bench/bench_umap.py --n 20000 --configs default
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from memlens.analysis.estimators import MemoryEmbedding  # noqa: E402

M, H, LATENT, STEPS = 4, 960, 8, 50

# name -> MemoryEmbedding keyword arguments (all with PCA to 50 dims and random_state=0)
CONFIGS = {
    "memlens-default": {},  # above 10,000 states: PCA init, 100 epochs
    "umap-default": {"init": "spectral", "n_epochs": 200},  # umap-learn's defaults at this size
    "pca-init-200ep": {"init": "pca", "n_epochs": 200},
    "spectral-100ep": {"init": "spectral", "n_epochs": 100},
}


def synthetic_states(n: int, seed: int = 0) -> np.ndarray:
    """`[n, M*H]` float32 memory-like states (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_eps = -(-n // STEPS)
    centres = rng.normal(size=(4, LATENT)) * 3
    cue = rng.integers(0, 4, n_eps)
    walk = np.cumsum(rng.normal(scale=0.3, size=(n_eps, STEPS, LATENT)), axis=1) + centres[cue][:, None]
    lift = rng.normal(size=(LATENT, M * H)).astype(np.float32) / np.sqrt(LATENT)
    out = np.empty((n, M * H), dtype=np.float32)
    z = walk.reshape(-1, LATENT)[:n].astype(np.float32)
    for lo in range(0, n, 10_000):  # in blocks: bounded temporary memory
        x = z[lo:lo + 10_000] @ lift + rng.normal(scale=0.5, size=(len(z[lo:lo + 10_000]), M * H)).astype(np.float32)
        x = x.reshape(len(x), M, H)
        x /= np.sqrt((x ** 2).mean(-1, keepdims=True))  # RMSNorm per token
        out[lo:lo + len(x)] = x.reshape(len(x), -1)
    return out


def timed_fit(x: np.ndarray, **kw) -> tuple[float, float, float, MemoryEmbedding]:
    """(seconds of the PCA part, wall seconds of the whole fit, CPU seconds of this process, fitted embedding)."""
    emb = MemoryEmbedding(random_state=0, **kw)
    t0, c0 = time.perf_counter(), time.process_time()
    emb.fit(x)
    return emb.fit_seconds_["pca"], time.perf_counter() - t0, time.process_time() - c0, emb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="memory states to embed")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {list(CONFIGS)}")
    args = ap.parse_args()

    t0 = time.perf_counter()  # 5,000 rows: above 4,096 UMAP switches to NN-descent, which compiles too
    warm = np.random.default_rng(1).normal(size=(5000, 50)).astype(np.float32)
    for init in ("spectral", "pca"):
        MemoryEmbedding(random_state=0, init=init, n_epochs=5).fit(warm)
    jit = time.perf_counter() - t0
    print(f"JIT warm-up (two 5-epoch fits on 5,000 states; numba compilation and imports): {jit:.1f} s")

    t0 = time.perf_counter()
    x = synthetic_states(args.n)
    print(f"synthetic states: {x.shape} float32 ({x.nbytes / 2**30:.2f} GiB) in {time.perf_counter() - t0:.1f} s "
          "(not counted)")
    print(f"{'config':<16} {'PCA 50 (s)':>10} {'fit wall (s)':>13} {'fit CPU (s)':>12} {'wall <= 60 s':>13}")
    for name in args.configs.split(","):
        pca_s, wall, cpu, emb = timed_fit(x, **CONFIGS[name])
        spread = np.ptp(emb.embedding_, axis=0)
        print(f"{name:<16} {pca_s:>10.1f} {wall:>13.1f} {cpu:>12.1f} {'yes' if wall <= 60 else 'no':>13}   "
              f"(init {emb.init_}, {emb.n_epochs_} epochs, n_neighbors {emb.n_neighbors_}, "
              f"map extent {spread[0]:.1f} x {spread[1]:.1f})", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other jobs share them)")


if __name__ == "__main__":
    main()
