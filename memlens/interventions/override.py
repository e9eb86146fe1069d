"""`MemoryOverride`: apply an intervention to the memory a policy reads, through its public memory API.

It registers on `policy.memory.before_read`, which every computation that reads memory (a chunk, or a
prefix-only boundary write under RTC or the async server) calls before it reads; at update `from_update`
(and every later one with `every_update`) it replaces the committed memory with `memory.set`. No lerobot
method is wrapped, so it nests with capture hooks in either order.

After a one-time intervention the policy runs on: the memory it writes from then on is computed from the
overridden one.
"""

from __future__ import annotations

import numpy as np

from memlens.errors import UserError
from memlens.interventions.modes import Intervention, ShuffleTokens, make
from memlens.policy import memory_tokens


def check_applicable(policy, from_update: int) -> None:
    """Raise a UserError unless `policy` has memory and `from_update` is a memory update index."""
    if from_update < 0:
        raise UserError(f"--from-update must be >= 0 (a memory update index), got {from_update}.")
    if not memory_tokens(policy.config):
        raise UserError(f"the policy ({policy.config.type}, num_mem_tokens=0) has no memory to intervene on. "
                        "Intervene on a checkpoint trained with memory tokens.")


class MemoryOverride:
    """Context manager that overrides the memory read at update `from_update` (and later ones with
    `every_update`). `intervention`: a registered name or an `Intervention`; `donors[b]`: the batch row
    whose memory row b receives (interventions across episodes). `applied`: the update indices at which it
    acted. The update index restarts after `policy.reset()`."""

    def __init__(self, policy, intervention: str | Intervention, *, from_update: int = 0, every_update: bool = False,
                 donors=None, token_order=None):
        self.intervention = make(intervention)
        if token_order is not None and isinstance(self.intervention, ShuffleTokens):  # the order given apart
            self.intervention = ShuffleTokens(tuple(int(i) for i in token_order))
        check_applicable(policy, from_update)
        if self.intervention.across_episodes and donors is None:
            raise UserError(f"mode {self.intervention.name!r} needs donors (which batch row gives its memory to which).")
        import torch

        self.policy, self.from_update, self.every_update = policy, from_update, every_update
        self.donors = None if donors is None else torch.as_tensor(np.asarray(donors), dtype=torch.long)
        self.applied: list[int] = []

    @property
    def mode(self) -> str:
        return self.intervention.name

    def _before_read(self, memory, batch_size: int) -> None:
        u = memory.segments  # the update this computation reads (0 right after reset())
        due = u == self.from_update or (self.every_update and u > self.from_update)
        if not due or u in self.applied:  # once per update, also when several computations read it
            return
        mem = memory.read(batch_size)
        new = self.intervention.memory(mem, initial=self.policy.model.initial_memory, donors=self.donors)
        memory.set(new, kv_history=self.intervention.history(memory.kv_history, donors=self.donors))
        self.applied.append(u)

    def __enter__(self):
        self.policy.memory.before_read.append(self._before_read)
        return self

    def __exit__(self, *exc):
        self.policy.memory.before_read.remove(self._before_read)
        return False
