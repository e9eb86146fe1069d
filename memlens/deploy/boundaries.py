"""Boundary observations kept until their memory is written: shared by the RTC engine and the async server.

Both compute chunks off the segment boundaries, so the observation of each boundary is kept when it
arrives and, before the next chunk, every kept boundary older than that chunk's frame whose memory no
chunk wrote gets a prefix-only pass (`policy.write_memory`), in frame order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class BoundaryObservations:
    """`frame -> (episode, observation)`, thread-safe; `written` counts the passes since `clear()`."""

    def __init__(self):
        self._kept: dict[int, tuple[int, object]] = {}
        self._lock = threading.Lock()
        self.written = 0

    def keep(self, frame: int, episode: int, observation) -> None:
        with self._lock:
            self._kept[frame] = (episode, observation)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self.written = 0

    def write_owed(self, policy, *, before: int, episode: int, to_batch: Callable[[object], dict]) -> int:
        """Write the memory of every kept boundary of `episode` older than frame `before` that still needs it;
        `to_batch` turns a kept observation into the policy's preprocessed batch. Returns how many were written."""
        with self._lock:
            owed = sorted(f for f in self._kept if f < before)
            items = [(f, *self._kept.pop(f)) for f in owed]
        written = 0
        for frame, kept_episode, observation in items:
            if kept_episode != episode or not policy.memory.needs_write(frame):
                continue
            written += bool(policy.write_memory(to_batch(observation), frame=frame))
        self.written += written
        return written
