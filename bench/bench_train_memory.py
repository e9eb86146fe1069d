#!/usr/bin/env python
"""Training memory and time against K, with and without per-segment activation checkpointing.

One training step (forward + backward) of `smolvla_rmt` at M=4 for K in {1, 2, 4, 8} unrolled segments,
`mem_checkpoint_segments` off and on, on the tiny architecture (batch 8) and the full-size one
(SmolVLM2-500M shapes, random weights, lerobot's defaults: frozen vision encoder, `train_expert_only`;
batch 1). All in ONE process with one torch thread; repetitions are interleaved (every repetition visits
every configuration once, the order rotated by one each time) and the figure is the median.

- time: wall and thread-CPU time of the step;
- peak memory of the step above the level before it (activations, the gradients the backward pass
  allocates, temporaries; parameters excluded, gradient bytes printed so they can be told apart). On CUDA
  `max_memory_allocated`. On CPU the process's peak resident set (`VmHWM`, reset through
  `/proc/self/clear_refs` before the step, after `malloc_trim`), with glibc's mmap threshold fixed at
  128 KiB (`MALLOC_MMAP_THRESHOLD_`, set by this script) so that every tensor of any size goes back to the
  system when freed. (The profiler's allocation events, `bench_policy.cpu_peak_bytes`, were tried first:
  they gave 381.8 and 274.0 MiB for two identical K=1 steps at full size, because frees of blocks
  allocated before profiling are not reported.)

Ratios are to K=1 of the same row set (memory) and to the option off at the same K (time).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/bench_train_memory.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

if os.environ.get("MALLOC_MMAP_THRESHOLD_") != "131072":  # glibc reads it at start: restart with it set
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import ctypes  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_policy import command_line, elapsed_log, make_policy, sync, train_batch  # noqa: E402

KS = (1, 2, 4, 8)
M = 4
BATCH = {"tiny": 8, "full": 1}


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def peak_bytes(fn, device: torch.device) -> int:
    """Peak memory while `fn()` runs above the level at its start (see the module docstring)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    base = _status_bytes("VmRSS:")
    fn()
    return _status_bytes("VmHWM:") - base


def grad_bytes(policy) -> int:
    return sum(p.numel() * p.element_size() for p in policy.parameters() if p.requires_grad)


def bench(size: str, device: torch.device, reps: int, log, ks=KS) -> dict:
    policy = make_policy(size, device, num_mem_tokens=M, n_mem_segments=max(ks)).train()
    batches = {}
    for k in ks:
        policy.config.n_mem_segments = policy.config.mem_bptt_segments = k
        batches[k] = train_batch(policy, size, device, BATCH[size])
    cfg = policy.config
    gen = torch.Generator().manual_seed(7)
    noise = torch.randn(BATCH[size], cfg.chunk_size, cfg.max_action_dim, generator=gen).to(device)
    t = torch.full((BATCH[size],), 0.5, device=device)

    def step(k, ckpt):
        cfg.n_mem_segments = cfg.mem_bptt_segments = k
        cfg.mem_checkpoint_segments = ckpt
        policy.zero_grad(set_to_none=True)
        loss, _ = policy.forward(dict(batches[k]), noise=noise, time=t)
        loss.backward()

    cases = [(k, ckpt) for k in ks for ckpt in (False, True)]
    for case in cases:  # warm-up
        step(*case)
    log(f"[{size}] warm")
    times = {case: [] for case in cases}
    for rep in range(reps):
        for case in cases[rep % len(cases):] + cases[: rep % len(cases)]:
            sync(device)
            c0, w0 = time.thread_time(), time.perf_counter()
            step(*case)
            sync(device)
            times[case].append((time.perf_counter() - w0, time.thread_time() - c0))
        log(f"[{size}] rep {rep + 1}/{reps}")
    peaks = {case: [] for case in cases}
    for rep in range(2):  # twice each, interleaved; the larger is reported (its spread is printed)
        for case in cases:
            policy.zero_grad(set_to_none=True)  # the step's own gradients are inside its peak
            peaks[case].append(peak_bytes(lambda case=case: step(*case), device))
    log(f"[{size}] memory done")
    out = {"grad_bytes": grad_bytes(policy), "batch": BATCH[size], "ks": ks, "cases": {}}
    for case in cases:
        out["cases"][case] = {
            "wall": statistics.median(w for w, _ in times[case]),
            "cpu": statistics.median(c for _, c in times[case]),
            "peak": max(peaks[case]), "peaks": peaks[case],
        }
    return out


def report(size: str, res: dict, reps: int) -> None:
    c = res["cases"]
    print(f"\n### {size} architecture, batch {res['batch']}, M={M}, median of {reps} interleaved reps "
          f"(gradients: {res['grad_bytes'] / 2**20:.1f} MiB, inside every peak)\n")
    print("| K | peak MiB off | vs first K off | peak MiB on | vs first K on | on / off (memory) | wall s off | wall s on "
          "| on / off (wall) | on / off (CPU) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ks = res["ks"]
    off1, on1 = c[(ks[0], False)]["peak"], c[(ks[0], True)]["peak"]
    for k in ks:
        off, on = c[(k, False)], c[(k, True)]
        print(f"| {k} | {off['peak'] / 2**20:.1f} | {off['peak'] / off1:.2f}x | {on['peak'] / 2**20:.1f} | "
              f"{on['peak'] / on1:.2f}x | {on['peak'] / off['peak']:.2f} | {off['wall']:.3f} | {on['wall']:.3f} | "
              f"{on['wall'] / off['wall']:.2f}x | {on['cpu'] / off['cpu']:.2f}x |")
    print("\npeak samples MiB (two interleaved): " + "; ".join(
        f"K={k} {'on' if ck else 'off'}: " + ", ".join(f"{p / 2**20:.0f}" for p in r["peaks"])
        for (k, ck), r in c.items()))
    k8 = c[(max(ks), True)]
    print(f"\ntarget: peak at K={max(ks)} with the option on <= 1.5x K={ks[0]}: {k8['peak'] / on1:.2f}x; "
          f"time <= 1.35x the option off: {k8['cpu'] / c[(max(ks), False)]['cpu']:.2f}x (CPU time), "
          f"{k8['wall'] / c[(max(ks), False)]['wall']:.2f}x (wall)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="tiny,full")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions, full size (default 3)")
    ap.add_argument("--tiny-reps", type=int, default=9, help="interleaved repetitions, tiny (default 9)")
    ap.add_argument("--ks", default=",".join(map(str, KS)), help="comma-separated K values (default 1,2,4,8)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    log = elapsed_log(start)
    print(command_line())
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}; {platform.machine()}, {os.cpu_count()} "
          f"CPUs; device: {device}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        reps = args.reps if size == "full" else args.tiny_reps
        ks = tuple(sorted(int(k) for k in args.ks.split(",")))
        report(size, bench(size, device, reps, log, ks), reps)
        sys.stdout.flush()
    print(f"\ntotal run time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
