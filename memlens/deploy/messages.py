"""What memlens's robot client and policy server add to lerobot's async messages.

lerobot's `TimedObservation.timestep` is the index of the last action executed (`max(latest, 0)`:
frames 0 and 1 both send 0), and the client sends an observation only when its action queue runs
low, so the server can neither tell the executed frame of an observation nor see every segment
boundary. memlens's client stamps each observation with the exact executed frame, its episode, and
whether it is a memory boundary (sent even when the queue is full, so the server can write memory
from it); the server tags the actions it returns with the episode, so a chunk of an episode that has
ended never enters the next one's queue. Both are subclasses of lerobot's dataclasses and travel
through lerobot's transport unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.async_inference.helpers import TimedAction, TimedObservation


@dataclass
class MemoryTimedObservation(TimedObservation):
    frame: int = 0  # actions executed in this episode before this observation
    episode: int = 0  # the client's episode counter (a new value resets the server's memory)
    boundary: bool = False  # a memory segment boundary: the server writes memory from it
    for_action: bool = True  # the client also wants a chunk for it (lerobot's queue threshold)


@dataclass
class MemoryTimedAction(TimedAction):
    episode: int = 0
