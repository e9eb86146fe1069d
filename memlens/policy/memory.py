"""When a `smolvla_rmt` policy's memory advances: a function of executed time, not of calls.

Recurrent training (RMT, arXiv 2207.06881) unrolls memory through segments that start
`mem_segment_stride` frames apart: segment j reads memory m_j together with the observation at
frame b_j = j * stride and writes m_{j+1}. Deployment must advance memory exactly the same way,
whatever engine calls the policy: synchronous `select_action` (a chunk every `n_action_steps`
frames), lerobot's Real-Time Chunking engine (chunks predicted ahead in a background thread, some
of them thrown away) or the async policy server (one chunk per accepted observation). So:

* A chunk computed on the observation of frame t reads the memory written by every boundary
  before t (m_j for t = b_j, m_{j+1} for b_j < t < b_{j+1}).
* Only a computation on a boundary frame's observation writes memory, and the write is *pending*
  until time moves past that frame (`advance`, `seek`, or a later computation): predicting twice on
  the same observation reads the same memory and gives the same actions, and a computation that
  belongs to an episode that has ended (`reset` meanwhile) commits nothing.
* A boundary that passes with nothing computed on its observation is an error
  (`MemoryCadenceError`): engines that predict off-boundary (RTC, async) run a prefix-only memory
  pass on the boundary observation instead (`SmolVLARMTPolicy.write_memory`).

Shapes: memory `[B, M, H]` (batch, memory tokens, VLM hidden); `state` keeps the guide's layout
`[M, B, H]` (`policy._mem_tokens_state`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

KVHistory = tuple[list[tuple[Tensor, Tensor]], Tensor]  # per-layer (keys, values), pad mask [B, P]
KEEP = object()  # `SegmentMemory.set`: leave this part as it is


class MemoryCadenceError(RuntimeError):
    """Memory cannot advance as it did in training (a segment boundary passed without a write)."""


@dataclass(frozen=True)
class MemoryCommit:
    """One committed memory write: segment `segment` read `read` at `frame` and wrote `memory`."""

    episode: int
    segment: int
    frame: int
    read: Tensor  # [B, M, H]
    memory: Tensor  # [B, M, H] fp32


@dataclass(frozen=True)
class ChunkTicket:
    """What one chunk computation reads (taken by `SegmentMemory.begin`)."""

    episode: int
    frame: int
    writes: bool  # True when `frame` is the next segment boundary: this computation writes memory
    read: Tensor  # [B, M, H]
    kv_history: KVHistory | None


class SegmentMemory:
    """The memory state of one policy and the clock of executed frames that advances it.

    Args:
        stride: frames between segment boundaries (`mem_segment_stride`).
        initial: `batch_size -> [B, M, H]`, the memory at an episode start.
    """

    def __init__(self, *, stride: int, initial: Callable[[int], Tensor]):
        self.stride = stride
        self._initial = initial
        self._lock = threading.RLock()
        self.listeners: list[Callable[[MemoryCommit], None]] = []
        # called as f(memory, batch_size) at the start of every computation that reads memory, before it
        # reads: an intervention may `set` the memory there (memlens.interventions.MemoryOverride)
        self.before_read: list[Callable[[SegmentMemory, int], None]] = []
        self.episode = -1
        self.reset()

    # -- reading ---------------------------------------------------------------------------------
    @property
    def next_boundary(self) -> int:
        """Frame whose observation writes the next memory (segments committed x stride)."""
        return self.segments * self.stride

    def read(self, batch_size: int) -> Tensor:
        """`[B, M, H]` committed memory: what a chunk computed now (after the last boundary) reads."""
        with self._lock:
            if self.state is None:
                return self._initial(batch_size)
            if self.state.shape[1] != batch_size:
                raise ValueError(
                    f"the memory state holds {self.state.shape[1]} episodes but the batch has {batch_size}; "
                    "call policy.reset() when the batch changes."
                )
            return self.state.transpose(0, 1)

    # -- writing ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """A new episode: initial memory, frame 0; computations still running for the old one commit nothing."""
        with self._lock:
            self.episode += 1
            self.state: Tensor | None = None  # [M, B, H]; None = the initial memory
            self.kv_history: KVHistory | None = None
            self.frame = 0  # frames executed since reset = index of the next observation
            self.segments = 0  # committed writes
            self.last_computed: ChunkTicket | None = None
            self.last_write: Tensor | None = None  # [B, M, H] written by the last computation (pending or not)
            self._pending: tuple[ChunkTicket, Tensor, KVHistory | None] | None = None

    def set(self, memory: Tensor | None | object = KEEP, *, kv_history: KVHistory | None | object = KEEP) -> None:
        """Replace the committed memory (`[B, M, H]`, or None for the initial memory) and/or the key/value
        history (None: none), e.g. to intervene; what is not given is kept."""
        with self._lock:
            if memory is not KEEP:
                self.state = None if memory is None else memory.transpose(0, 1).contiguous()
            if kv_history is not KEEP:
                self.kv_history = kv_history

    def advance(self, n: int = 1) -> None:
        """`n` frames were executed; a pending write whose frame is now in the past is committed."""
        if n < 0:
            raise ValueError(f"frames executed must be >= 0, got {n}.")
        with self._lock:
            self.frame += n
            self._commit_due()

    def seek(self, frame: int) -> None:
        """Time has reached `frame` (the observation's frame index, e.g. from the async client)."""
        with self._lock:
            if frame > self.frame:
                self.advance(frame - self.frame)

    def begin(self, frame: int | None = None, *, batch_size: int) -> ChunkTicket:
        """Start a computation on the observation of `frame` (default: the executed-frame clock)."""
        with self._lock:
            frame = self.frame if frame is None else frame
            self.seek(frame)
            if self._pending is not None and self._pending[0].frame < frame:
                self._commit()
            if frame > self.next_boundary:
                raise MemoryCadenceError(
                    f"memory boundary at frame {self.next_boundary} (segment {self.segments}, every "
                    f"`mem_segment_stride`={self.stride} frames) passed with no computation on its observation, "
                    f"and a chunk is now computed at frame {frame}: memory would no longer advance as in training. "
                    "With select_action, make `mem_segment_stride` a multiple of `n_action_steps`; with RTC or the "
                    "async server, serve through memlens (`memlens.deploy`), which writes memory on every boundary "
                    "observation."
                )
            for hook in list(self.before_read):
                hook(self, batch_size)
            ticket = ChunkTicket(self.episode, frame, frame == self.next_boundary, self.read(batch_size),
                                 self.kv_history)
            self.last_computed = ticket
            return ticket

    def finish(self, ticket: ChunkTicket, write: Tensor, kv_history: KVHistory | None = None) -> bool:
        """The computation of `ticket` wrote `write` `[B, M, H]`; returns whether it counts (pending or
        committed): only for the current episode and a boundary frame not yet committed."""
        with self._lock:
            if ticket.episode != self.episode:
                return False
            self.last_write = write
            if not ticket.writes or ticket.frame != self.next_boundary:
                return False
            self._pending = (ticket, write, kv_history)
            self._commit_due()
            return True

    def commit(self) -> bool:
        """Commit the pending write now (time is known to have passed its frame without `advance`);
        returns whether there was one."""
        with self._lock:
            if self._pending is None:
                return False
            self._commit()
            return True

    def needs_write(self, frame: int) -> bool:
        """Whether the observation of `frame` must still write memory (a boundary with no write yet)."""
        with self._lock:
            pending = self._pending is not None and self._pending[0].frame == frame
            return frame == self.next_boundary and not pending

    def _commit_due(self) -> None:
        if self._pending is not None and self.frame > self._pending[0].frame:
            self._commit()

    def _commit(self) -> None:
        ticket, write, kv_history = self._pending
        self._pending = None
        self.state = write.transpose(0, 1).detach()
        self.kv_history = kv_history
        self.segments += 1
        event = MemoryCommit(ticket.episode, self.segments - 1, ticket.frame, ticket.read, write)
        for listener in list(self.listeners):
            listener(event)
