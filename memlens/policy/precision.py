"""Mixed precision at inference, as lerobot does it: `use_amp` runs the policy under `torch.autocast`.

lerobot-train turns `--policy.use_amp=true` into Accelerate's mixed precision with torch's default
autocast dtype for the device (bfloat16 on CPU, float16 on CUDA), and lerobot-eval wraps its rollouts in
`torch.autocast(device_type)`. `smolvla_rmt` applies the same autocast inside its own chunk and memory
computations, so every engine that calls it (lerobot-eval, RTC, the async server, memlens's replay and
rollouts) computes in the precision it was trained in. The memory is a recurrence: at inference the prefix
pass that writes it runs in float32 (`amp_memory_fp32`, `backbone.PrefixPass.full_precision`), and the
state is stored float32; docs/performance.md measures the drift either way (bench/bench_precision.py).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

import torch

logger = logging.getLogger(__name__)
_said: set[str] = set()


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype `use_amp` computes in on this device type (torch's autocast default, as lerobot-train
    uses), or None where autocast is not available."""
    if not torch.amp.is_autocast_available(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _amp(config, device) -> tuple[str, torch.dtype | None]:
    """(device type, the autocast dtype `config` computes in there, or None for float32)."""
    device_type = torch.device(device if device is not None else (config.device or "cpu")).type
    return device_type, autocast_dtype(device_type) if getattr(config, "use_amp", False) else None


def amp_context(config, device=None):
    """`torch.autocast` when `config.use_amp` and the device has it; else no change (with a one-line notice
    once when AMP was asked for on a device without it)."""
    if not getattr(config, "use_amp", False):
        return nullcontext()
    device_type, dtype = _amp(config, device)
    if dtype is None:
        message = (f"memlens: use_amp=true, but torch has no autocast for device {device_type!r}: the policy "
                   "runs in float32.")
        if message not in _said:
            _said.add(message)
            logger.warning(message)
        return nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def compute_precision(config, device=None) -> str:
    """How a policy with this config computes, in words for provenance: 'float32' or 'bfloat16 autocast'."""
    dtype = _amp(config, device)[1]
    return "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
