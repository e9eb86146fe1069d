"""The one switch for third-party progress bars: `with quiet_progress(): ...`.

memlens shows its own progress (one line per episode or policy); inside the block lerobot's rollout and
evaluation bars (drawn unless `inside_slurm()`), the `datasets` library's per-episode "Map" bars and any
`tqdm` bar left to its defaults (`TQDM_DISABLE`) stay hidden. Everything is put back on exit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from memlens.runtime.patching import patched


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@contextmanager
def _datasets_bars_off() -> Iterator[None]:
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


@contextmanager
def quiet_progress() -> Iterator[None]:
    """Hide lerobot's, datasets' and default tqdm progress bars for the block."""
    with ExitStack() as stack:
        stack.enter_context(_env("TQDM_DISABLE", "1"))
        stack.enter_context(_datasets_bars_off())
        # lerobot's eval module passes disable=inside_slurm() explicitly, which TQDM_DISABLE cannot override.
        # Patched where it is loaded: its bars come only from code that imported it (recording does not).
        lerobot_eval = sys.modules.get("lerobot.scripts.lerobot_eval")
        if lerobot_eval is not None:
            stack.enter_context(patched(lerobot_eval, "inside_slurm", lambda: True))
        yield
