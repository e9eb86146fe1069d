"""Each intervention on memory: a small frozen dataclass, registered by name.

| name | the memory each episode reads |
|---|---|
| `zero` | zeros |
| `reset` | the learned initial memory (`mem_tokens`), as if the episode had just started |
| `shuffle` | another episode's memory: a random derangement across the episodes run together (the batch) |
| `shuffle_tokens` | its own memory with the M token slots in another order (the same for every episode) |
| `swap` | its partner's memory: episodes are paired (with different labels, e.g. cues, when known) and exchange |

An intervention maps the committed memory `[B, M, H]` (and, with `read_mem_from_cache`, the K/V history)
to what the next chunk computation reads. `donors[b]` (the batch row whose memory row b receives) is
per batch, so it is an argument, not a field. A new intervention is a dataclass with `@register`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from memlens.errors import UserError
from memlens.interventions.pairing import derangement_batches, no_donors, swap_batches

REGISTRY: dict[str, type[Intervention]] = {}


def register(cls: type[Intervention]) -> type[Intervention]:
    REGISTRY[cls.name] = cls
    return cls


@dataclass(frozen=True)
class Intervention:
    name: ClassVar[str]
    across_episodes: ClassVar[bool] = False  # moves memory between batch rows: needs donors

    def memory(self, mem, *, initial, donors):
        """`mem` `[B, M, H]` -> the memory to read instead; `initial(B)` is the learned initial memory."""
        raise NotImplementedError

    def history(self, history, *, donors):
        """The K/V history to read instead (None: no history); by default the history is kept."""
        return history

    def batches(self, items: list, batch_size: int, labels: list, seed: int) -> list[tuple[list, list[int] | None]]:
        """`items` split into the batches they run in, with each batch's donors (None: nothing moves)."""
        return no_donors(items, batch_size)


def _rows(tensor, donors):
    return tensor[donors.to(tensor.device)]


@register
@dataclass(frozen=True)
class Zero(Intervention):
    name: ClassVar[str] = "zero"

    def memory(self, mem, *, initial, donors):
        import torch

        return torch.zeros_like(mem)

    def history(self, history, *, donors):
        return None


@register
@dataclass(frozen=True)
class Reset(Intervention):
    name: ClassVar[str] = "reset"

    def memory(self, mem, *, initial, donors):
        return initial(mem.shape[0]).to(mem)

    def history(self, history, *, donors):
        return None


@dataclass(frozen=True)
class _AcrossEpisodes(Intervention):
    across_episodes: ClassVar[bool] = True

    def memory(self, mem, *, initial, donors):
        if len(donors) != mem.shape[0]:
            raise UserError(f"{len(donors)} donors for a batch of {mem.shape[0]} episodes; give one donor per "
                            "episode of the batch.")
        return _rows(mem, donors)

    def history(self, history, *, donors):
        if history is None:
            return None
        return [(_rows(k, donors), _rows(v, donors)) for k, v in history[0]], _rows(history[1], donors)


@register
@dataclass(frozen=True)
class Shuffle(_AcrossEpisodes):
    name: ClassVar[str] = "shuffle"

    def batches(self, items, batch_size, labels, seed):
        return derangement_batches(items, batch_size, seed)


@register
@dataclass(frozen=True)
class Swap(_AcrossEpisodes):
    name: ClassVar[str] = "swap"

    def batches(self, items, batch_size, labels, seed):
        return swap_batches(items, batch_size, labels, seed)


@register
@dataclass(frozen=True)
class ShuffleTokens(Intervention):
    """`order`: the token slots in their new order (default: rolled by one)."""

    name: ClassVar[str] = "shuffle_tokens"
    order: tuple[int, ...] | None = None

    def memory(self, mem, *, initial, donors):
        import torch

        order = torch.roll(torch.arange(mem.shape[1]), 1) if self.order is None else torch.as_tensor(self.order)
        return mem[:, order.to(mem.device)]


MODES = tuple(REGISTRY)


def make(mode: str | Intervention, *, num_tokens: int | None = None, seed: int = 0) -> Intervention:
    """The intervention named `mode` (an `Intervention` is returned as it is). `shuffle_tokens` gets a random
    order of `num_tokens` slots drawn with `seed` when `num_tokens` is given."""
    if isinstance(mode, Intervention):
        return mode
    if mode not in REGISTRY:
        raise UserError(f"unknown intervention mode {mode!r}; expected one of {', '.join(REGISTRY)}.")
    if mode == "shuffle_tokens" and num_tokens is not None:
        return ShuffleTokens(tuple(int(i) for i in np.random.default_rng(seed).permutation(num_tokens)))
    return REGISTRY[mode]()
