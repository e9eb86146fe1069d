#!/usr/bin/env python
"""How far a reduced-precision memory drifts from the float32 one over a long episode.

The memory is a recurrence: each update reads the last memory and writes the next, so rounding can
accumulate. This runs the memory-writing prefix pass of `smolvla_rmt` (`model.write_memory`, what every
chunk computation runs) for `--updates` consecutive segments of one episode (a new observation each
segment, the same ones for every stream), from the same initial memory: a float32 reference and the
streams of `STREAMS` side by side (`use_amp` is torch autocast: bfloat16 on CPU).

After 1, 10, 50 and 200 updates (those reached): cosine similarity to the reference (mean over the M
tokens) and relative error ||m - m_ref|| / ||m_ref||. Also the median time of one memory write per setting
and the latency of a whole new chunk (`select_action`: vision encoder, prefix pass, denoising).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/bench_precision.py
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_policy import command_line, elapsed_log, make_policy, obs_batch  # noqa: E402
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS  # noqa: E402

from memlens.policy.precision import amp_context, autocast_dtype  # noqa: E402

CHECKPOINTS = (1, 10, 50, 200)
M = 4
STREAMS = {
    "amp, fp32 memory pass (default)": "the memlens default: `use_amp` with `amp_memory_fp32=true`",
    "amp, bf16 memory pass": "`use_amp` with `amp_memory_fp32=false`, memory state kept float32",
    "amp, bf16 memory pass, bf16 state": "the same, state rounded to bfloat16 after every update",
    "amp, bf16 memory pass, one step": "one bf16 update from the reference memory: no accumulation",
    "fp32, start perturbed": "float32 from the first bf16 write: how much the recurrence amplifies one error",
}


def compare(mem: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    cos = torch.nn.functional.cosine_similarity(mem.double(), ref.double(), dim=-1).mean().item()
    rel = ((mem.double() - ref.double()).norm() / ref.double().norm()).item()
    return cos, rel


def run(size: str, updates: int, chunk_reps: int, log) -> dict:
    device = torch.device("cpu")
    policy = make_policy(size, device, num_mem_tokens=M, n_mem_segments=2, use_amp=True).eval()
    cfg = policy.config
    dtype = autocast_dtype(device.type)

    @torch.no_grad()
    def write(mem, batch, mode: str):
        """mode: fp32 | amp_fp32_pass | amp_bf16_pass"""
        cfg.use_amp = mode != "fp32"
        cfg.amp_memory_fp32 = mode == "amp_fp32_pass"
        images, img_masks = policy.prepare_images(batch)
        state = policy.prepare_state(batch)
        with amp_context(cfg, device):
            out, _ = policy.model.write_memory(images, img_masks, batch[OBS_LANGUAGE_TOKENS],
                                               batch[OBS_LANGUAGE_ATTENTION_MASK], state, mem=mem)
        return out

    initial = policy.model.initial_memory(1).detach().float()
    ref = initial
    state = {name: initial for name in STREAMS}
    times = {"fp32": [], "amp_fp32_pass": [], "amp_bf16_pass": []}
    rows = {}
    for n in range(1, updates + 1):
        batch = obs_batch(size, device, 1, seed=1000 + n)  # a new observation each segment

        def timed(mode, mem):
            t0 = time.perf_counter()
            out = write(mem, batch, mode)
            times[mode].append(time.perf_counter() - t0)
            return out

        one = write(ref, batch, "amp_bf16_pass")
        state["amp, fp32 memory pass (default)"] = timed("amp_fp32_pass", state["amp, fp32 memory pass (default)"])
        state["amp, bf16 memory pass"] = timed("amp_bf16_pass", state["amp, bf16 memory pass"])
        state["amp, bf16 memory pass, bf16 state"] = write(state["amp, bf16 memory pass, bf16 state"], batch,
                                                           "amp_bf16_pass").to(dtype).float()
        state["amp, bf16 memory pass, one step"] = one
        state["fp32, start perturbed"] = one if n == 1 else write(state["fp32, start perturbed"], batch, "fp32")
        ref = timed("fp32", ref)
        if n in CHECKPOINTS:
            rows[n] = {name: compare(state[name], ref) for name in STREAMS}
            log(f"[{size}] {n} updates")

    # latency of a whole new chunk (vision, prefix pass, denoising), the three settings interleaved
    chunk = {"fp32": [], "amp_fp32_pass": [], "amp_bf16_pass": []}
    batch = obs_batch(size, device, 1, seed=7)
    noise = torch.randn(1, cfg.chunk_size, cfg.max_action_dim, generator=torch.Generator().manual_seed(7))
    modes = list(chunk)
    for rep in range(chunk_reps + 1):
        for mode in modes[rep % 3:] + modes[: rep % 3]:
            cfg.use_amp, cfg.amp_memory_fp32 = mode != "fp32", mode == "amp_fp32_pass"
            policy.reset()
            t0 = time.perf_counter()
            policy.select_action(dict(batch), noise=noise)
            if rep:  # the first round warms up
                chunk[mode].append(time.perf_counter() - t0)
    log(f"[{size}] chunk latency done")
    return {"dtype": str(dtype).removeprefix("torch."), "rows": rows, "hidden": policy.model.hidden_size,
            "write": {k: statistics.median(v) for k, v in times.items()},
            "chunk": {k: statistics.median(v) for k, v in chunk.items()}}


def report(size: str, res: dict, updates: int, chunk_reps: int) -> None:
    print(f"\n### {size} architecture, M={M}, hidden {res['hidden']}, `use_amp` computes in {res['dtype']}, "
          f"{updates} updates\n")
    ns = list(res["rows"])
    print("| stream | " + " | ".join(f"after {n}: cosine / rel. error" for n in ns) + " | what it is |")
    print("|---|" + "---:|" * len(ns) + "---|")
    for name, what in STREAMS.items():
        cells = " | ".join(f"{res['rows'][n][name][0]:.6f} / {res['rows'][n][name][1]:.1e}" for n in ns)
        print(f"| {name} | {cells} | {what} |")
    w, c = res["write"], res["chunk"]
    print(f"\nmedian time of one memory write: fp32 {w['fp32'] * 1e3:.1f} ms, amp with fp32 memory pass "
          f"{w['amp_fp32_pass'] * 1e3:.1f} ms ({w['amp_fp32_pass'] / w['fp32']:.2f}x), amp with bf16 memory pass "
          f"{w['amp_bf16_pass'] * 1e3:.1f} ms ({w['amp_bf16_pass'] / w['fp32']:.2f}x)")
    print(f"median latency of a new chunk (select_action, median of {chunk_reps} interleaved): fp32 "
          f"{c['fp32'] * 1e3:.0f} ms, amp with fp32 memory pass {c['amp_fp32_pass'] * 1e3:.0f} ms "
          f"({c['amp_fp32_pass'] / c['fp32']:.2f}x), amp with bf16 memory pass {c['amp_bf16_pass'] * 1e3:.0f} ms "
          f"({c['amp_bf16_pass'] / c['fp32']:.2f}x)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="tiny,full")
    ap.add_argument("--updates", type=int, default=200, help="updates on the tiny model (default 200)")
    ap.add_argument("--full-updates", type=int, default=200, help="updates on the full-size model (default 200)")
    ap.add_argument("--chunk-reps", type=int, default=5, help="interleaved chunk-latency repetitions (default 5)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    start = time.perf_counter()
    log = elapsed_log(start)
    print(command_line())
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}; {platform.machine()}, {os.cpu_count()} "
          f"CPUs; torch {torch.__version__}, {torch.get_num_threads()} thread(s); random weights")
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        updates = args.updates if size == "tiny" else args.full_updates
        report(size, run(size, updates, args.chunk_reps, log), updates, args.chunk_reps)
        sys.stdout.flush()
    print(f"\ntotal run time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
