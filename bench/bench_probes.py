"""Probe cross-validation time on 100,000 memory states of realistic width (full size: 4 tokens x 960).

    OMP_NUM_THREADS=1 python bench/bench_probes.py            # 1,000 episodes x 100 updates x 3,840
    OMP_NUM_THREADS=1 python bench/bench_probes.py --rows 20000 --width 512

Synthetic rows stand in for a trace store (loading is the store's cost, see bench_store.py): 48 latent
factors with a decaying spectrum mixed into the memory width under isotropic noise, and a cue (4 classes,
one per episode) that shifts the factors, so the probe is good but not perfect. Times `probe_on` with the default `MemoryProbe` (PCA to 128
components fitted on 5,000 rows of each training fold, then logistic regression), 5 grouped folds, the
control task, by-step scores: the same code path as `memlens.analysis.probe` after loading.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def synthetic(rows: int, width: int, updates: int, seed: int = 0):
    from memlens.analysis.probes import ProbeData

    rng = np.random.default_rng(seed)
    n_eps = rows // updates
    cue = rng.integers(0, 4, n_eps)
    # Low-rank structure under isotropic noise, as activations have: 48 latent factors with a decaying
    # spectrum, mixed into `width` dimensions; the cue shifts the latent factors (1.5 SDs per class).
    latent = rng.standard_normal((n_eps * updates, 48), dtype=np.float32)
    latent *= 3 / np.sqrt(np.arange(1, 49))  # in place: stays float32
    shift = rng.standard_normal((4, 48))
    latent += 1.5 * (shift / np.linalg.norm(shift, axis=1, keepdims=True))[np.repeat(cue, updates)]
    mixing = rng.standard_normal((48, width), dtype=np.float32)
    mixing /= np.sqrt(48)
    X = latent @ mixing
    X += 0.5 * rng.standard_normal(X.shape, dtype=np.float32)
    episode = np.repeat(np.arange(n_eps), updates)
    update = np.tile(np.arange(updates), n_eps)
    return ProbeData(X=X, y=cue[episode], kind="classification", groups=episode, store=np.zeros_like(episode),
                     episode=episode, update=update, frame=update * 10, since_cue=(update * 10 - 10).astype(float),
                     label="cue", features="memory (synthetic)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=4 * 960)
    parser.add_argument("--updates", type=int, default=100, help="updates per episode")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    import torch

    from memlens.analysis.probes import probe_on

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = synthetic(args.rows, args.width, args.updates)
    assert data.X.dtype == np.float32
    print(f"data: {data.X.shape} float32 ({data.X.nbytes / 2**30:.2f} GiB), {len(np.unique(data.groups))} episodes, "
          f"built in {time.perf_counter() - t0:.1f} s; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for rep in range(args.reps):
        t = time.perf_counter()
        res = probe_on(data, n_splits=5, control=True, by_step=True)
        dt = time.perf_counter() - t
        print(f"rep {rep}: {dt:.1f} s  {res.summary()}")
    t = time.perf_counter()
    res = probe_on(data, n_splits=5, control=False, by_step=False)
    print(f"without control or steps: {time.perf_counter() - t:.1f} s")
    # Where one fold's time goes (the default probe, PCA path).
    from memlens.analysis.probes import MemoryProbe, grouped_folds

    train, test = grouped_folds(data.groups, data.y, n_splits=5)[0]
    est = MemoryProbe()
    reducer = est.make_reducer(len(train), data.X.shape[1])
    sub = np.sort(np.random.default_rng(0).choice(train, reducer.max_rows, replace=False))
    t = time.perf_counter()
    reducer.fit(data.X[sub])
    t_fit = time.perf_counter() - t
    t = time.perf_counter()
    Z = reducer.transform(data.X)
    t_proj = time.perf_counter() - t
    t = time.perf_counter()
    est.fit_heads(Z[train], [data.y[train], data.y[train]], reducer)
    t_heads = time.perf_counter() - t
    print(f"one fold: PCA fit on {reducer.max_rows} rows {t_fit:.1f} s, projecting all rows {t_proj:.1f} s, "
          f"two logistic regressions (task + control) on {Z.shape[1]} components {t_heads:.1f} s")


if __name__ == "__main__":
    main()
