"""Running a loaded policy: load a checkpoint, replay dataset episodes, roll out in a simulator, debug views.

Everything that runs a policy (capture, interventions, evaluation, deployment checks) goes through here:
:mod:`~memlens.runtime.checkpoint` (load), :mod:`~memlens.runtime.replay` (one replay over datasets),
:mod:`~memlens.runtime.rollout` (one quiet rollout over envs), :mod:`~memlens.runtime.debug` (the guide's
debugging views), :mod:`~memlens.runtime.patching` (the one attribute patcher every hook uses) and
:mod:`~memlens.runtime.quiet` (the one switch for progress bars).

    >>> from memlens.runtime import load_policy, open_dataset, replay_episode   # doctest: +SKIP
"""

from memlens.runtime.checkpoint import LoadedPolicy, load_policy
from memlens.runtime.debug import memory_trace
from memlens.runtime.replay import (
    ReplayStep,
    episode_frames,
    open_dataset,
    open_matching_dataset,
    replay,
    replay_actions,
    replay_episode,
)

__all__ = ["LoadedPolicy", "ReplayStep", "episode_frames", "load_policy", "memory_trace", "open_dataset",
           "open_matching_dataset", "replay", "replay_actions", "replay_episode"]
