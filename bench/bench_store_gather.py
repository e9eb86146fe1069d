#!/usr/bin/env python
"""Gathering one array of every episode of a trace store, without and with packs (`TraceStore.pack`).

What it measures (local filesystem, warm page cache; one thread):

1. A synthetic store of `--episodes` (1,000) episodes, built once under `--workdir` and reused: U = 10..20
   memory updates per episode (15.5 on average), T = 10 U frames; `memory/write` [U, 4, 128] float32,
   `memory/update_frame` [U] int32, `frame/update` [T] int32, `label/cue` [T] int64, `action/predicted`
   [T, 6] float32. A reused store has its packs removed first (they are derived data).
2. `memlens.analysis.data.memory_states(TraceStore.open(root))`, each in a fresh process (imports not
   counted): the old per-episode loop (`episode(e).load(...)`, what memory_states did before packs), then
   today's memory_states on the store without packs (`gather` reading episodes concurrently), and with packs.
   Target: 0.5 s with packs (the median of `--fresh-reps` fresh processes).
3. `store.pack()` on the unpacked store (what `memlens store pack` and the end of a capture do).
4. `TraceStore.open(root)` + `.episodes()`: first call in a fresh process, and the median of `--reps` in one
   process. Target: 100 ms (bench/bench_store.py measures it at 10,000 episodes).

Usage:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_store_gather.py               # 1,000 episodes
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_store_gather.py --episodes 200
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from memlens.store import TraceStore  # noqa: E402

SITES = {
    "memory/write": {"kind": "memory", "shape": ["U", 4, 128], "dtype": "float32", "description": "memory written"},
    "memory/update_frame": {"kind": "memory", "shape": ["U"], "dtype": "int32", "description": "frame of each update"},
    "frame/update": {"kind": "frame", "shape": ["T"], "dtype": "int32", "description": "update of each frame"},
    "label/cue": {"kind": "label", "shape": ["T"], "dtype": "int64", "description": "cue"},
    "action/predicted": {"kind": "action", "shape": ["T", 6], "dtype": "float32", "description": "actions"},
}
STEPS = 10
GATHER_TARGET_S, OPEN_TARGET_S = 0.5, 0.1


def build(root: Path, n: int) -> float:
    if root.exists():
        shutil.rmtree(root)
    start = time.perf_counter()
    store = TraceStore.create(root, manifest={"provenance": {"bench": "bench_store_gather.py", "episodes": n},
                                              "sites": SITES})
    rng = np.random.default_rng(0)
    for ep in range(n):
        u = int(rng.integers(10, 21))
        t = u * STEPS
        store.write_episode(ep, {
            "memory/write": rng.standard_normal((u, 4, 128)).astype(np.float32),
            "memory/update_frame": (np.arange(u) * STEPS).astype(np.int32),
            "frame/update": (np.arange(t) // STEPS).astype(np.int32),
            "label/cue": np.full(t, ep % 4, np.int64),
            "action/predicted": rng.standard_normal((t, 6)).astype(np.float32),
        }, {"length": t, "task": "bench"})
        if (ep + 1) % 200 == 0:
            print(f"  built {ep + 1}/{n} episodes ({time.perf_counter() - start:.0f} s)", flush=True)
    return time.perf_counter() - start


def reusable(root: Path, n: int) -> bool:
    try:
        store = TraceStore.open(root)
    except Exception:
        return False
    return store.provenance.get("episodes") == n and store.episodes() == list(range(n))


def old_memory_states(store):
    """memory_states as it was before packs: every array of every episode read one by one."""
    xs, eps, upd, frames, labels = [], [], [], [], {}
    for e in store.episodes():
        trace = store.episode(e)
        x, at = trace.load("memory/write"), trace.load("memory/update_frame")
        xs.append(x)
        eps.append(np.full(len(x), e))
        upd.append(np.arange(len(x)))
        frames.append(at)
        for name in trace.names:
            if name.startswith("label/"):
                labels.setdefault(name.removeprefix("label/"), []).append(trace.load(name)[at])
    return np.concatenate(xs), {k: np.concatenate(v) for k, v in labels.items()}


def child(kind: str, root: str) -> None:
    """One measurement in this fresh process; prints JSON."""
    from memlens.analysis.data import memory_states

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    start = time.perf_counter()
    if kind == "open":
        n = len(TraceStore.open(root).episodes())
        print(json.dumps({"seconds": time.perf_counter() - start, "episodes": n}))
        return
    if kind == "loop":
        x, labels = old_memory_states(TraceStore.open(root))
    else:
        ms = memory_states(TraceStore.open(root))
        x, labels = ms.X, ms.labels
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rows": len(x), "mb": x.nbytes / 1e6,
                      "checksum": [float(x.astype(np.float64).sum()), int(labels["cue"].sum())]}))


def in_child(kind: str, root: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(root)], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/memlens-bench-gather"))
    parser.add_argument("--reps", type=int, default=20, help="repetitions of open + episodes()")
    parser.add_argument("--fresh-reps", type=int, default=3, help="fresh processes measuring the packed store")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)

    root = args.workdir / f"store-{args.episodes}"
    if reusable(root, args.episodes):
        shutil.rmtree(root / "packs", ignore_errors=True)  # derived data: measure the unpacked store
        print(f"reusing {root} ({args.episodes} episodes; packs removed)")
    else:
        print(f"building {root} ({args.episodes} episodes)")
        print(f"  built in {build(root, args.episodes):.1f} s")

    loop = in_child("loop", root)
    unpacked = in_child("gather", root)
    writer = TraceStore.create(root, manifest=TraceStore.open(root).manifest)
    start = time.perf_counter()
    name = writer.pack()
    pack_s = time.perf_counter() - start
    runs = [in_child("gather", root) for _ in range(args.fresh_reps)]
    packed = runs[0]
    assert all(loop["checksum"] == unpacked["checksum"] == r["checksum"] for r in runs), (loop, unpacked, runs)
    packed_s = statistics.median(r["seconds"] for r in runs)
    first_open = in_child("open", root)
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        TraceStore.open(root).episodes()
        times.append(time.perf_counter() - start)

    info = writer.packs()[name]
    raw = sum(a["nbytes"] for a in info["arrays"].values())
    disk = sum(f.stat().st_size for f in (root / "packs" / name).rglob("*") if f.is_file())
    print(f"\n{args.episodes} episodes, {packed['rows']:,} memory updates ({packed['mb']:.1f} MB of memory/write); "
          f"pack {name}: {len(info['arrays'])} arrays, {raw / 1e6:.1f} MB raw, {disk / 1e6:.1f} MB on disk\n")
    rows = [
        ("memory_states, old per-episode loop (fresh process)", loop["seconds"], None),
        ("memory_states, no packs (fresh process)", unpacked["seconds"], None),
        ("store.pack()", pack_s, None),
        (f"memory_states, packed (fresh process, median of {len(runs)})", packed_s, GATHER_TARGET_S),
        ("TraceStore.open + episodes(), first call (fresh process)", first_open["seconds"], OPEN_TARGET_S),
        (f"TraceStore.open + episodes(), median of {args.reps}", statistics.median(times), OPEN_TARGET_S),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'time':>9}  target")
    for label, seconds, target in rows:
        verdict = "" if target is None else f"<= {target * 1000:.0f} ms  {'ok' if seconds <= target else 'MISSED'}"
        print(f"{label:<{width}}  {seconds * 1000:7.0f} ms  {verdict}")
    print(f"(packed runs: {', '.join(f'{r['seconds'] * 1000:.0f}' for r in runs)} ms)")


if __name__ == "__main__":
    main()
