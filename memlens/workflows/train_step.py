"""lerobot-train's training step with gradient accumulation, and one update whatever the batch split.

lerobot-train 0.6.1 has no accumulation option. This module replaces its `update_policy` (the one
function its loop calls per optimiser step) with one that splits the batch into `batch_chunk`
micro-batches: one forward and backward each, gradients summed, then lerobot's own clipping,
optimiser and scheduler step once. Each micro-batch's loss is weighted by its share of the batch's
valid loss elements (padded segments and actions count zero), so the summed gradient is the big
batch's, and the activation memory is one micro-batch's.

For `smolvla_rmt` the flow-matching noise and time of the *global* batch (this process's batch times
the number of processes) are drawn once, from the RNG every process seeds alike, and each micro-batch
of each process takes its rows. So `--batch_size=4` on one process, `--batch_size=2 --policy.batch_chunk=2`
... `--batch_size=2` on two processes all make the same update (tests/test_train_scale.py).

Installed by `memlens train` and by the lerobot plugin when lerobot-train imports it, so plain
`lerobot-train --policy.batch_chunk=N` accumulates too. Policies other than `smolvla_rmt` go through
lerobot's step unchanged.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import nullcontext

import torch

logger = logging.getLogger(__name__)
_said: set[str] = set()


def install() -> None:
    """Put `update_policy` into lerobot-train's module (idempotent)."""
    from lerobot.scripts import lerobot_train

    if getattr(lerobot_train.update_policy, "_memlens", False):
        return
    original = lerobot_train.update_policy

    def patched(train_metrics, policy, batch, optimizer, grad_clip_norm, accelerator, lr_scheduler=None,
                lock=None, sample_weighter=None):
        inner = accelerator.unwrap_model(policy, keep_fp32_wrapper=True)
        if getattr(inner, "name", None) != "smolvla_rmt":
            return original(train_metrics, policy, batch, optimizer, grad_clip_norm, accelerator,
                            lr_scheduler=lr_scheduler, lock=lock, sample_weighter=sample_weighter)
        return update_policy(train_metrics, policy, batch, optimizer, grad_clip_norm, accelerator,
                             lr_scheduler=lr_scheduler, lock=lock, sample_weighter=sample_weighter)

    patched._memlens = True
    lerobot_train.update_policy = patched


def accept_guide_flag(argv: list[str] | None = None) -> None:
    """Inside plain lerobot-train (called by the plugin, which lerobot imports before it parses the command
    line): turn the guide's `--batch_chunk=N` into `--batch_size=B*N --policy.batch_chunk=N` in `argv`, as
    `memlens train` does. A bad value ends the run with one paragraph."""
    argv = sys.argv if argv is None else argv
    if not any(a == "--batch_chunk" or a.startswith("--batch_chunk=") for a in argv[1:]):
        return
    from memlens.errors import UserError
    from memlens.workflows.train import _batch_chunk_args

    try:
        args, notes = _batch_chunk_args(argv[1:])
    except UserError as exc:
        print(f"memlens: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    argv[1:] = args
    for note in notes:
        print(f"memlens: {note}", file=sys.stderr, flush=True)


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        logger.warning(message)


def micro_slices(batch_size: int, n: int) -> list[slice]:
    """`n` contiguous slices covering `batch_size` rows, sizes differing by at most one (fewer when the batch
    is smaller than `n`, as the last batch of an epoch may be)."""
    n = max(1, min(n, batch_size))
    bounds = [round(i * batch_size / n) for i in range(n + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _rows(batch: dict, sl: slice, batch_size: int) -> dict:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch_size:
            out[key] = value[sl]
        elif isinstance(value, list | tuple) and len(value) == batch_size:
            out[key] = value[sl]
        else:
            out[key] = value
    return out


def update_policy(train_metrics, policy, batch, optimizer, grad_clip_norm, accelerator, lr_scheduler=None,
                  lock=None, sample_weighter=None):
    """lerobot's `update_policy` (same arguments, same metrics) in `batch_chunk` micro-batches."""
    start = time.perf_counter()
    policy.train()
    inner = accelerator.unwrap_model(policy, keep_fp32_wrapper=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    elements = inner.loss_elements(batch)  # [B] valid loss elements per sample
    batch_size = int(elements.shape[0])
    n = inner.config.batch_chunk
    slices = micro_slices(batch_size, n)
    if n > 1 and batch_size % n:
        _say_once(f"memlens: batch of {batch_size} is not a multiple of batch_chunk={n}: micro-batches of "
                  f"{sorted({s.stop - s.start for s in slices}, reverse=True)} rows (the update is the same; the "
                  "largest sets the activation memory).")

    # Every process draws the global batch's noise alike and takes its own rows.
    world, rank = accelerator.num_processes, accelerator.process_index
    noises, times = inner.flow_noise(batch_size * world, accelerator.device)
    offset = rank * batch_size

    sample_weights = weight_stats = None
    if sample_weighter is not None:
        sample_weights, weight_stats = sample_weighter.compute_batch_weights(batch)
    total = elements.sum().float() if sample_weights is None else sample_weights.sum().float()
    if world > 1:  # DDP averages the processes' gradients: weigh by the global batch's count, times `world`
        total = accelerator.reduce(total.to(accelerator.device), reduction="sum") / world
    total = total.clamp_min(1) if sample_weights is None else total + 1e-6

    loss_value = 0.0
    output_dict: dict = {}
    for j, sl in enumerate(slices):
        micro = _rows(batch, sl, batch_size)
        rows = slice(offset + sl.start, offset + sl.stop)
        sync = nullcontext() if j == len(slices) - 1 else accelerator.no_sync(policy)
        with sync:
            with accelerator.autocast():
                if sample_weights is not None:
                    per_sample, out = policy.forward(micro, noise=[x[rows] for x in noises],
                                                     time=[x[rows] for x in times], reduction="none")
                    loss = (per_sample * sample_weights[sl]).sum() / total
                else:
                    micro_loss, out = policy.forward(micro, noise=[x[rows] for x in noises],
                                                     time=[x[rows] for x in times])
                    loss = micro_loss * (elements[sl].sum() / total)
            accelerator.backward(loss)
        loss_value += float(loss.detach())
        for key, value in (out or {}).items():  # counts ("n_...") add up; other scalars are means over micro-batches
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "loss":
                share = 1.0 if key.startswith("n_") else 1.0 / len(slices)
                output_dict[key] = output_dict.get(key, 0.0) + share * float(value)
    output_dict["loss"] = loss_value
    if weight_stats:
        output_dict.update({f"sample_weight_{k}": v for k, v in weight_stats.items()})

    if grad_clip_norm > 0:
        grad_norm = accelerator.clip_grad_norm_(policy.parameters(), grad_clip_norm)
    else:
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), float("inf"), error_if_nonfinite=False)
    with lock if lock is not None else nullcontext():
        optimizer.step()
    optimizer.zero_grad()
    if lr_scheduler is not None:
        lr_scheduler.step()
    if hasattr(inner, "update") and callable(inner.update):
        inner.update()

    train_metrics.loss = loss_value
    train_metrics.grad_norm = grad_norm.item()
    train_metrics.lr = optimizer.param_groups[0]["lr"]
    train_metrics.update_s = time.perf_counter() - start
    if torch.cuda.is_available():
        train_metrics.gpu_mem_gb = torch.cuda.max_memory_allocated() / (1024**3)
    train_metrics.update_metrics(output_dict)
    return train_metrics, output_dict
