#!/usr/bin/env python
"""Cost of RMT memory tokens in `smolvla_rmt`: inference latency, peak memory, training step vs K.

What it measures, all in ONE process, with interleaved repetitions (every repetition visits every
configuration once, in an order rotated by one each repetition; the figure reported is the median):

1. Latency of a NEW action chunk at batch 1 (`select_action` with an empty action queue, so it computes
   a chunk: prefix pass that fills the KV cache + `num_steps` denoising steps) for
   M = num_mem_tokens in {0, 2, 4, 8, 16} x mem_at_end in {False, True} (M=0 once), on the tiny and the
   full-size (SmolVLM2-500M shapes, random weights) architecture. Memory is carried across chunks (each
   configuration keeps its own written memory), so the memory read/write path is exercised. The same
   noise tensor is used for every call. Reported, per configuration:
   - end to end: wall time and the main thread's CPU time of the call (median of `--reps`);
   - where the time goes: vision encoder, prefix pass, denoising, from thin timing wrappers on the
     model's methods (present for every configuration alike);
   - the prefix part alone, paired: the same call with the vision-encoder output cached and stopped
     right after the prefix pass (`Probe.stop_after_prefix`), short calls in a tight round-robin; its
     ratio to M=0 is the median over rounds of the per-round ratio. Memory tokens act on this part, and
     it is short, so drifts of a shared machine cancel far better than in the end-to-end figures;
   - matmul FLOPs per part (`torch.utils.flop_counter.FlopCounterMode`), which are exact;
   - an estimate of the end-to-end overhead: measured prefix-part increase plus the M=0 denoising time
     scaled by the denoising FLOP ratio (the longer KV cache), over the M=0 end-to-end time.
2. Peak memory of one chunk computation per configuration: on CUDA `torch.cuda.max_memory_allocated`
   above the level at the call; on CPU the peak of torch's CPU-allocator bytes during the call, from the
   profiler's raw allocation/free events (see `cpu_peak_bytes`), plus the static parameter bytes.
3. Training step (forward + backward, batch 8) against the number of unrolled segments K in {1,2,4,8}
   at M=4, tiny model only (plus stock SmolVLA, M=0 K=1, as a reference), as time per step and as a
   ratio to K x (time at K=1), to check that "a K-segment step costs about K single steps".

To fit in RAM, ONE policy per size is built with `num_mem_tokens=0`; configurations are switched on that
instance by setting `config.num_mem_tokens`, `config.mem_at_end` and `model.mem_tokens` (the model
reads these dynamically). An assertion checks that the prefix grows by M (2M with `mem_at_end`).

Usage (one torch thread; the Hub is offline; the local SmolVLM configs are installed into the Hub cache):

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/bench_policy.py            # ~10 min on 2 CPU cores
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/bench_policy.py --quick    # tiny only, < 1 min
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

torch.set_num_threads(1)

from lerobot.configs import FeatureType, PolicyFeature  # noqa: E402
from lerobot.utils.constants import (  # noqa: E402
    ACTION,
    OBS_LANGUAGE_ATTENTION_MASK,
    OBS_LANGUAGE_TOKENS,
    OBS_STATE,
)

from memlens.models import full_size_smolvla_kwargs, install_vlm, tiny_smolvla_kwargs  # noqa: E402
from memlens.policy import SmolVLARMTConfig, SmolVLARMTPolicy  # noqa: E402

IMG = "observation.images.top"
STATE_DIM, ACTION_DIM, LANG_LEN = 6, 6, 16  # a typical SO-100 setup, one camera
IMAGE_SIDE = {"tiny": 64, "full": 512}  # the vision encoder's image size (`resize_imgs_with_padding`)
MEM_CONFIGS = [(0, False)] + [(m, end) for m in (2, 4, 8, 16) for end in (False, True)]
TRAIN_KS = (1, 2, 4, 8)
TRAIN_M, TRAIN_BATCH = 4, 8


# --------------------------------------------------------------------------------------------- setup
def features(side: int) -> dict:
    return dict(
        input_features={
            IMG: PolicyFeature(type=FeatureType.VISUAL, shape=(3, side, side)),
            OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
        },
        output_features={ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))},
    )


USE_AMP = [False]  # --amp-dtype: every policy is built with use_amp


def make_config(size: str, device: torch.device, **overrides) -> SmolVLARMTConfig:
    kw = tiny_smolvla_kwargs() if size == "tiny" else full_size_smolvla_kwargs()
    kw.update(features(IMAGE_SIDE[size]), device=device.type, use_amp=USE_AMP[0])
    kw.update(overrides)
    return SmolVLARMTConfig(**kw)


def make_policy(size: str, device: torch.device, seed: int = 0, **overrides) -> SmolVLARMTPolicy:
    install_vlm(size)  # config + tokenizer + processor into the Hub cache (no weights; idempotent)
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(sys.stderr):  # lerobot prints "Reducing the number of VLM layers ..."
        return SmolVLARMTPolicy(make_config(size, device, **overrides)).to(device)


def obs_batch(size: str, device: torch.device, batch_size: int = 1, k: int | None = None, seed: int = 0) -> dict:
    """Observations as the policy sees them after preprocessing (image in [0, 1]); with `k`, a K axis."""
    g = torch.Generator().manual_seed(seed)
    side = IMAGE_SIDE[size]
    lead = (batch_size,) if k is None else (batch_size, k)
    batch = {
        IMG: torch.rand(*lead, 3, side, side, generator=g),
        OBS_STATE: torch.randn(*lead, STATE_DIM, generator=g),
        OBS_LANGUAGE_TOKENS: torch.randint(10, 400, (batch_size, LANG_LEN), generator=g),
        OBS_LANGUAGE_ATTENTION_MASK: torch.ones(batch_size, LANG_LEN, dtype=torch.bool),
    }
    return {key: v.to(device) for key, v in batch.items()}


def train_batch(policy: SmolVLARMTPolicy, size: str, device: torch.device, batch_size: int, seed: int = 0) -> dict:
    """A K-segment training batch shaped like lerobot's dataset output (as tests/policy_helpers.py builds it)."""
    cfg = policy.config
    k = cfg.n_mem_segments
    batch = obs_batch(size, device, batch_size, k=k if k > 1 else None, seed=seed)
    n_actions = len(cfg.action_delta_indices)
    g = torch.Generator().manual_seed(seed + 1)
    batch[ACTION] = torch.randn(batch_size, n_actions, ACTION_DIM, generator=g).to(device)
    batch["action_is_pad"] = torch.zeros(batch_size, n_actions, dtype=torch.bool, device=device)
    if k > 1:
        batch[f"{OBS_STATE}_is_pad"] = torch.zeros(batch_size, k, dtype=torch.bool, device=device)
        batch[f"{IMG}_is_pad"] = torch.zeros(batch_size, k, dtype=torch.bool, device=device)
    return batch


def elapsed_log(start: float):
    """`log(msg)`: `msg` on stderr with the seconds since `start` (the benches' progress lines)."""
    def log(msg):
        print(f"  [{time.perf_counter() - start:6.1f} s] {msg}", file=sys.stderr, flush=True)
    return log


def command_line() -> str:
    """The line every bench prints first: the command that made its figures, with the environment it needs."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("HF_HUB_OFFLINE", "OMP_NUM_THREADS") if k in os.environ)
    return f"command: {env} {shlex.join([sys.executable, *sys.argv])}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------- memory
VISION_MARK = "bench::vision"  # record_function label around the vision encoder (see Probe)


def cpu_peak_bytes(fn) -> tuple[int, int | None]:
    """Peak of torch's CPU-allocator bytes while `fn()` runs, relative to the level at its start; and
    the peak after the last vision-encoder call ended (None when there was none).

    `torch.profiler.profile(profile_memory=True)` records one raw "[memory]" event per allocation
    (positive `nbytes`) and per free (negative `nbytes`) of the c10 CPU allocator. The aggregated
    `prof.events()` (FunctionEvent) view folds allocations made inside an operator into that operator's
    `cpu_memory_usage` and loses the order of allocations and frees, so a temporary that an op allocates
    and frees is invisible there. The raw Kineto events (`prof.profiler.kineto_results.events()`, torch
    2.11) keep every event with its timestamp: sorted by `start_ns`, their running sum is the live-byte
    curve and its maximum the peak. Frees of blocks allocated while no profiler ran are not reported
    (the allocator did not record their size), so the curve starts at 0 and the peak counts what the
    call allocated on top of the starting level. Frees of blocks allocated during an EARLIER profiling
    session are reported, though, and would lower the curve: the call before a profiled call must not
    be profiled (`bench_inference` keeps to that). Memory that bypasses the c10 allocator (oneDNN
    scratch, Python objects) is not counted. The `record_function(VISION_MARK)` ranges
    (see `Probe`) split the curve into the vision-encoder part and the rest (prefix pass + denoising).
    """
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    raw = prof.profiler.kineto_results.events()
    vision_end = max((e.end_ns() for e in raw if e.name() == VISION_MARK), default=None)
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in raw
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    )
    live = peak = 0
    peak_after = None
    for t, nbytes in events:
        live += nbytes
        peak = max(peak, live)
        if vision_end is not None and t > vision_end:
            peak_after = live if peak_after is None else max(peak_after, live)
    return peak, peak_after


def peak_bytes(fn, device: torch.device, probe: "Probe | None" = None) -> tuple[int, int | None]:
    """(peak bytes allocated by torch during `fn()` above the level at its start, the same peak after
    the vision encoder), on CUDA or CPU."""
    if device.type == "cuda":
        marks = []

        def after_vision():  # restart the peak counter once the vision encoder is done
            marks.append(torch.cuda.max_memory_allocated(device))
            torch.cuda.reset_peak_memory_stats(device)

        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        if probe is not None:
            probe.after_vision = after_vision
        try:
            fn()
            sync(device)
        finally:
            if probe is not None:
                probe.after_vision = None
        last = torch.cuda.max_memory_allocated(device) - base
        return max([last, *(m - base for m in marks)]), (last if marks else None)
    return cpu_peak_bytes(fn)


def param_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


# -------------------------------------------------------------------------------- instrumentation
class PrefixDone(Exception):
    """Raised by the probe right after the prefix pass when `stop_after_prefix` is on."""


class Probe:
    """Thin wrappers (instance attributes, installed once, identical for every configuration) on
    `embed_image` (vision encoder), `embed_prefix` (vision + language/state/memory embeddings) and
    `vlm_with_expert.forward` (split into the prefix pass, which has no suffix, and the denoising calls).

    They accumulate wall time per part, and matmul FLOPs per part when `flop_counter` (a
    `torch.utils.flop_counter.FlopCounterMode`) is active, and record the prefix length of the last
    `embed_prefix` call. Options for the paired prefix measurement: `cache_vision` reuses the first
    vision-encoder output (the bench always feeds the same image), which removes the vision encoder's
    cost and run-to-run noise; `stop_after_prefix` raises `PrefixDone` right after the prefix pass
    (the real code path up to there, then no denoising)."""

    def __init__(self, policy: SmolVLARMTPolicy, device: torch.device):
        self.device = device
        self.times: dict[str, float] = defaultdict(float)
        self.flops: dict[str, int] = defaultdict(int)
        self.flop_counter = None
        self.prefix_len: int | None = None
        self.cache_vision = False
        self.stop_after_prefix = False
        self.after_vision = None  # optional callback (CUDA peak-memory split)
        self._vision_out = None
        model, vwe = policy.model, policy.model.vlm_with_expert
        embed_image = vwe.embed_image

        def vision(*args, **kwargs):
            if self.cache_vision and self._vision_out is not None:
                return self._vision_out
            with torch.profiler.record_function(VISION_MARK):
                out = embed_image(*args, **kwargs)
            if self.cache_vision:
                self._vision_out = out
            if self.after_vision is not None:
                self.after_vision()
            return out

        vwe.embed_image = vision
        self._wrap(vwe, "embed_image", lambda args, kwargs, out: "vision")
        self._wrap(model, "embed_prefix", self._on_prefix)
        self._wrap(vwe, "forward", lambda args, kwargs, out: (
            "prefix_pass" if kwargs["inputs_embeds"][1] is None else "denoise_backbone"))

    def _on_prefix(self, args, kwargs, out):
        self.prefix_len = out[0].shape[1]
        return "embed_prefix"

    def _wrap(self, obj, name, key_of):
        orig = getattr(obj, name)

        def wrapper(*args, **kwargs):
            counter = self.flop_counter
            f0 = counter.get_total_flops() if counter is not None else 0
            sync(self.device)
            t0 = time.perf_counter()
            out = orig(*args, **kwargs)
            sync(self.device)
            key = key_of(args, kwargs, out)
            self.times[key] += time.perf_counter() - t0
            if counter is not None:
                self.flops[key] += counter.get_total_flops() - f0
            if key == "prefix_pass" and self.stop_after_prefix:
                raise PrefixDone
            return out

        setattr(obj, name, wrapper)

    def start(self):
        self.times.clear()
        self.flops.clear()


# ------------------------------------------------------------------------------------- inference
class Switcher:
    """Switches the memory configuration of one policy instance; each configuration keeps its own
    memory-token parameter and its own carried memory state."""

    def __init__(self, policy: SmolVLARMTPolicy, device: torch.device):
        self.policy, self.device = policy, device
        self.hidden = policy.model.hidden_size
        self.saved: dict[tuple[int, bool], tuple] = {}
        self.current: tuple[int, bool] | None = None

    def activate(self, m: int, at_end: bool) -> None:
        p = self.policy
        if self.current is not None:
            self.saved[self.current] = (p.model.mem_tokens, p.memory.state)
        key = (m, at_end)
        if key not in self.saved:
            g = torch.Generator().manual_seed(1000 + m)
            param = None if m == 0 else torch.nn.Parameter(torch.randn(m, 1, self.hidden, generator=g).mul_(0.02).to(self.device))
            self.saved[key] = (param, None)
        param, state = self.saved[key]
        p.config.num_mem_tokens = m
        p.config.mem_at_end = at_end
        p.model.mem_tokens = param
        p.reset()  # clears the action queue (and the memory, restored next)
        p.memory.set(None if state is None else state.transpose(0, 1))
        self.current = key


def label(m: int, at_end: bool) -> str:
    return "M=0 (stock)" if m == 0 else f"M={m}{' +end' if at_end else ''}"


def bench_inference(size: str, device: torch.device, reps: int, pair_reps: int, log) -> dict:
    t_build = time.perf_counter()
    policy = make_policy(size, device).eval()
    # Built with M=0, whose backbone is lerobot's own class; configurations with memory need the backbone that
    # reports its prefix pass (stock behaviour while no pass is attached), before the Probe wraps its forward.
    from memlens.policy.backbone import SmolVLMWithExpertMemory

    policy.model.vlm_with_expert.__class__ = SmolVLMWithExpertMemory
    log(f"[{size}] built policy in {time.perf_counter() - t_build:.1f} s: "
        f"{sum(p.numel() for p in policy.parameters()) / 1e6:.1f}M parameters, hidden {policy.model.hidden_size}")
    batch = obs_batch(size, device)
    g = torch.Generator().manual_seed(123)
    noise = torch.randn(1, policy.config.chunk_size, policy.config.max_action_dim, generator=g).to(device)
    probe = Probe(policy, device)
    switch = Switcher(policy, device)

    def chunk():
        policy.drop_queued_actions()  # empty queue: select_action computes a new chunk
        return policy.select_action(dict(batch), noise=noise)

    res = {cfg: defaultdict(list) for cfg in MEM_CONFIGS}
    # Per configuration: one chunk under a FLOP counter (it also writes the configuration's first
    # memory and checks the prefix length; the vision encoder, identical for every configuration, is
    # counted at M=0 and reused from the cache afterwards), then one profiled chunk for the peak memory.
    # The call before a profiled call must not be profiled itself: the CPU allocator reports the frees of
    # blocks it saw allocated while profiling was on, also in a later profiling session, so a leftover of
    # a profiled previous call (e.g. a previous memory state) would show up as a free and lower the curve.
    base_len = None
    for m, at_end in MEM_CONFIGS:
        switch.activate(m, at_end)
        r = res[(m, at_end)]
        probe.start()
        probe.cache_vision = True
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            probe.flop_counter = counter
            try:
                chunk()
            finally:
                probe.flop_counter = None
                probe.cache_vision = False
        if m == 0:
            base_len = probe.prefix_len
            assert policy.memory.state is None
        else:
            want = base_len + (2 * m if at_end else m)
            assert probe.prefix_len == want, f"{label(m, at_end)}: prefix {probe.prefix_len}, expected {want}"
            assert tuple(policy.memory.state.shape) == (m, 1, policy.model.hidden_size)
        r["prefix_len"] = probe.prefix_len
        vision_flops = probe.flops["vision"] if m == 0 else res[(0, False)]["flops_vision"]
        r["flops_total"] = counter.get_total_flops() + (vision_flops - probe.flops["vision"])
        r["flops_vision"] = vision_flops
        r["flops_prefix"] = probe.flops["prefix_pass"]
        r["flops_embed_other"] = probe.flops["embed_prefix"] - probe.flops["vision"]
        r["flops_denoise"] = counter.get_total_flops() - probe.flops["embed_prefix"] - probe.flops["prefix_pass"]
        with torch.no_grad():
            r["peak"], r["peak_lm"] = peak_bytes(chunk, device, probe)
        r["params"] = param_bytes(policy)
    log(f"[{size}] peak memory and FLOPs measured; prefix length {base_len} tokens at M=0, +M / +2M checked for every configuration")

    def timed(m, at_end):
        switch.activate(m, at_end)
        state_before = policy.memory.state
        probe.start()
        sync(device)
        c0, w0 = time.thread_time(), time.perf_counter()
        chunk()
        sync(device)
        w1, c1 = time.perf_counter(), time.thread_time()
        if m:
            assert policy.memory.state is not state_before  # memory was read and rewritten
        return w1 - w0, c1 - c0

    # 1) End to end, interleaved repetitions.
    n = len(MEM_CONFIGS)
    for rep in range(reps):
        for m, at_end in MEM_CONFIGS[rep % n:] + MEM_CONFIGS[: rep % n]:
            wall, cpu = timed(m, at_end)
            r = res[(m, at_end)]
            r["wall"].append(wall)
            r["cpu"].append(cpu)
            for key in ("vision", "embed_prefix", "prefix_pass"):
                r[key].append(probe.times[key])
            r["denoise"].append(wall - probe.times["embed_prefix"] - probe.times["prefix_pass"])
        log(f"[{size}] repetition {rep + 1}/{reps}: "
            + ", ".join(f"{label(*c)} {res[c]['wall'][-1] * 1e3:.0f}" for c in MEM_CONFIGS) + " ms")

    # 2) Paired prefix part: vision encoder output cached (same image every call), stopped right after
    # the prefix pass; short calls in a tight round-robin over all configurations. The ratio is the
    # median over rounds of (time / the same round's M=0 time), which cancels slow drifts of the machine.
    paired = defaultdict(list)
    probe.cache_vision = probe.stop_after_prefix = True
    try:
        for rep in range(pair_reps):
            round_ = {}
            for m, at_end in MEM_CONFIGS[rep % n:] + MEM_CONFIGS[: rep % n]:
                switch.activate(m, at_end)
                policy.drop_queued_actions()
                sync(device)
                w0 = time.perf_counter()
                try:
                    policy.select_action(dict(batch), noise=noise)
                except PrefixDone:
                    pass
                else:
                    raise AssertionError("the prefix pass did not run")
                sync(device)
                round_[(m, at_end)] = time.perf_counter() - w0
            for cfg in MEM_CONFIGS:
                paired[cfg].append((round_[cfg], round_[cfg] / round_[MEM_CONFIGS[0]]))
    finally:
        probe.cache_vision = probe.stop_after_prefix = False
        probe._vision_out = None
    log(f"[{size}] paired prefix-part measurement (vision cached) done, {pair_reps} rounds")

    out = {}
    for cfg, r in res.items():
        out[cfg] = {k: (statistics.median(v) if isinstance(v, list) else v) for k, v in r.items()}
        out[cfg]["raw_wall"] = r["wall"]
        out[cfg]["raw_cpu"] = r["cpu"]
        if cfg in paired:
            out[cfg]["paired_wall"] = statistics.median(t for t, _ in paired[cfg])
            out[cfg]["paired_ratio"] = statistics.median(q for _, q in paired[cfg])
            out[cfg]["raw_paired"] = paired[cfg]
    del policy, switch, probe
    return out


# -------------------------------------------------------------------------------------- training
def bench_training(device: torch.device, reps: int, log) -> dict:
    size = "tiny"
    cases = [("M=0 K=1 (stock)", 0, 1)] + [(f"M={TRAIN_M} K={k}", TRAIN_M, k) for k in TRAIN_KS]
    setups = {}
    for name, m, k in cases:
        policy = make_policy(size, device, num_mem_tokens=m, n_mem_segments=k).train()
        batch = train_batch(policy, size, device, TRAIN_BATCH)
        gen = torch.Generator().manual_seed(7)
        noise = torch.randn(TRAIN_BATCH, policy.config.chunk_size, policy.config.max_action_dim, generator=gen).to(device)
        t = torch.full((TRAIN_BATCH,), 0.5, device=device)
        setups[name] = (policy, batch, noise, t, k)

    def step(name):
        policy, batch, noise, t, _ = setups[name]
        policy.zero_grad(set_to_none=True)
        loss, _ = policy.forward(dict(batch), noise=noise, time=t)
        loss.backward()

    for name in setups:  # warm-up
        step(name)
    times = defaultdict(list)
    names = list(setups)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            sync(device)
            c0, w0 = time.thread_time(), time.perf_counter()
            step(name)
            sync(device)
            times[name].append((time.perf_counter() - w0, time.thread_time() - c0))
    out = {}
    for name, m, k in cases:
        out[name] = {
            "m": m, "k": k,
            "wall": statistics.median(w for w, _ in times[name]),
            "cpu": statistics.median(c for _, c in times[name]),
            "peak": peak_bytes(lambda name=name: step(name), device)[0],
        }
    log("[train] done")
    return out


# ------------------------------------------------------------------------------------------ report
def mib(b: float) -> str:
    return f"{b / 2**20:.2f}"


def pct(x: float) -> str:
    return f"{(x - 1) * 100:+.1f}%"


def print_inference(size: str, res: dict, reps: int, pair_reps: int) -> None:
    base = res[(0, False)]
    print(f"\n### Inference, {size} architecture, batch 1: time of one new chunk\n")
    print(f"End to end: `select_action` with an empty queue, median of {reps} interleaved reps (wall and the "
          f"thread's CPU time). Prefix part: the same call with the vision-encoder output cached, stopped after "
          f"the prefix pass, median of {pair_reps} rounds; its ratio is the median over rounds of time / the "
          f"same round's M=0 time. GFLOP: matmul FLOPs of one chunk (torch FlopCounterMode). Estimate: "
          f"(measured prefix-part increase + M=0 denoising time x denoising FLOP ratio) / M=0 end-to-end time.\n")
    print("| config | prefix tokens | wall ms | vs M=0 | thread CPU ms | vs M=0 | prefix part ms | vs M=0 "
          "| GFLOP | vs M=0 | estimate vs M=0 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cfg in MEM_CONFIGS:
        r = res[cfg]
        extra = (r["paired_ratio"] - 1) * base["paired_wall"]
        extra += base["denoise"] * (r["flops_denoise"] / base["flops_denoise"] - 1)
        print(f"| {label(*cfg)} | {r['prefix_len']} | {r['wall'] * 1e3:.1f} | {pct(r['wall'] / base['wall'])} "
              f"| {r['cpu'] * 1e3:.1f} | {pct(r['cpu'] / base['cpu'])} "
              f"| {r['paired_wall'] * 1e3:.1f} | {pct(r['paired_ratio'])} "
              f"| {r['flops_total'] / 1e9:.2f} | {pct(r['flops_total'] / base['flops_total'])} "
              f"| {pct(1 + extra / base['wall'])} |")

    print(f"\nPeak memory of one chunk ({size}): torch allocations above the level at the call "
          f"({'CUDA max_memory_allocated' if torch.cuda.is_available() else 'CPU allocator, profiler events'}); "
          "'after vision' = the peak once the vision encoder has finished (prefix pass, KV cache, denoising); "
          "params = parameters + buffers.\n")
    print("| config | peak MiB | vs M=0 | peak after vision MiB | vs M=0 | params MiB | params + peak MiB | vs M=0 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for cfg in MEM_CONFIGS:
        r = res[cfg]
        tot, tot0 = r["params"] + r["peak"], base["params"] + base["peak"]
        print(f"| {label(*cfg)} | {mib(r['peak'])} | {pct(r['peak'] / base['peak'])} "
              f"| {mib(r['peak_lm'])} | {pct(r['peak_lm'] / base['peak_lm'])} "
              f"| {mib(r['params'])} | {mib(tot)} | {pct(tot / tot0)} |")

    print(f"\nWhere the time goes ({size}; the end-to-end reps, medians, wall ms; 'other embed' = language/state/"
          "memory embedding in embed_prefix; 'denoise + rest' = the rest of the call: denoising steps, image "
          "resizing/normalisation, queue handling) and the matmul FLOPs per part:\n")
    print("| config | vision ms | other embed ms | prefix pass ms | denoise + rest ms | total ms | prefix pass share "
          "| vision GFLOP | prefix GFLOP | denoise GFLOP |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cfg in MEM_CONFIGS:
        r = res[cfg]
        print(f"| {label(*cfg)} | {r['vision'] * 1e3:.1f} | {(r['embed_prefix'] - r['vision']) * 1e3:.1f} "
              f"| {r['prefix_pass'] * 1e3:.1f} | {r['denoise'] * 1e3:.1f} | {r['wall'] * 1e3:.1f} "
              f"| {r['prefix_pass'] / r['wall'] * 100:.1f}% | {r['flops_vision'] / 1e9:.2f} "
              f"| {r['flops_prefix'] / 1e9:.2f} | {r['flops_denoise'] / 1e9:.2f} |")


def print_training(res: dict, reps: int) -> None:
    k1 = next(r for r in res.values() if r["m"] == TRAIN_M and r["k"] == 1)
    stock = next(r for r in res.values() if r["m"] == 0)
    print(f"\n### Training step (forward + backward), tiny architecture, batch {TRAIN_BATCH}, "
          f"median of {reps} interleaved reps\n")
    print("| config | wall ms | thread CPU ms | CPU / (K x CPU at K=1) | CPU vs stock x K | peak transient MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in res.items():
        print(f"| {name} | {r['wall'] * 1e3:.1f} | {r['cpu'] * 1e3:.1f} | {r['cpu'] / (r['k'] * k1['cpu']):.2f} "
              f"| {r['cpu'] / (r['k'] * stock['cpu']):.2f} | {mib(r['peak'])} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,full", help="comma-separated: tiny, full (default: tiny,full)")
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions for the full-size model (default 5)")
    ap.add_argument("--tiny-reps", type=int, default=40, help="interleaved repetitions for the tiny model (default 40)")
    ap.add_argument("--pair-reps", type=int, default=12,
                    help="rounds of the paired prefix-part measurement for the full-size model (default 12; "
                         "the tiny model uses --tiny-reps)")
    ap.add_argument("--train-reps", type=int, default=15, help="interleaved repetitions of the training steps (default 15)")
    ap.add_argument("--no-train", action="store_true", help="skip the training-step benchmark")
    ap.add_argument("--quick", action="store_true", help="tiny only, few repetitions (< 1 min)")
    ap.add_argument("--json", help="also write the raw results to this JSON file")
    ap.add_argument("--ms", help="comma-separated memory-token counts to measure (default 0,2,4,8,16), each with "
                                 "mem_at_end off and on; 0 is always measured (the reference)")
    ap.add_argument("--amp-dtype", choices=("bfloat16", "float16"),
                    help="measure under use_amp (torch autocast) in this dtype instead of float32")
    args = ap.parse_args(argv)
    if args.ms:
        ms = sorted({int(m) for m in args.ms.split(",") if int(m) > 0})
        MEM_CONFIGS[:] = [(0, False)] + [(m, end) for m in ms for end in (False, True)]
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if args.quick:
        sizes, args.tiny_reps, args.train_reps = ["tiny"], 8, 3
    for s in sizes:
        if s not in IMAGE_SIDE:
            ap.error(f"unknown size {s!r}; choose from tiny, full")

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.amp_dtype:  # use_amp computes in torch's autocast dtype for the device: set it to the one asked for
        torch.set_autocast_dtype(device.type, getattr(torch, args.amp_dtype))
        USE_AMP[0] = True
    t_start = time.perf_counter()
    log = elapsed_log(t_start)
    print(command_line())
    print(f"precision: {'use_amp, ' + args.amp_dtype + ' autocast' if args.amp_dtype else 'float32'}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}; host: {platform.node()}; "
          f"{platform.machine()}, {os.cpu_count()} CPUs; device: {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f"; torch {torch.__version__}, {torch.get_num_threads()} thread(s); python {platform.python_version()}")

    results = {"inference": {}, "training": None}
    for size in sizes:
        reps = args.reps if size == "full" else args.tiny_reps
        pair_reps = args.pair_reps if size == "full" else args.tiny_reps
        res = bench_inference(size, device, reps, pair_reps, log)
        results["inference"][size] = res
        print_inference(size, res, reps, pair_reps)
        sys.stdout.flush()
    if not args.no_train:
        results["training"] = bench_training(device, args.train_reps, log)
        print_training(results["training"], args.train_reps)
        print("\nFull-size training is not measured: a forward+backward of the 450M-parameter model at batch 8 "
              "takes tens of seconds per segment on this CPU, so K up to 8 does not fit the time budget.")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux
    print(f"\nprocess peak RSS: {rss:.0f} MiB; total run time {time.perf_counter() - t_start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "argv": sys.argv,
                "inference": {s: {label(*c): v for c, v in r.items()} for s, r in results["inference"].items()},
                "training": results["training"],
            }, f, indent=1)


if __name__ == "__main__":
    main()
