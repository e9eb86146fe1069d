"""Scripted expert for :class:`~memlens.tasks.worlds.MemoryWorld`: uses privileged episode info."""

from __future__ import annotations

import numpy as np

from memlens.tasks.worlds import MAX_SPEED, PHASE_CUE, MemoryWorld


class ScriptedExpert:
    """Zero action while the cue is shown; from the first delay frame on, straight toward the correct target.

    The action (float32 [2], each axis in [-1, 1]) moves at full speed along the straight
    line to the goal and lands exactly on it. The world ignores actions before go, so commanding the
    goal through the delay changes nothing on screen, but it keeps every action chunk the same whether
    go starts inside it or not: a chunk computed on a delay frame (which looks the same in every
    variant) must not have to guess when go begins. ``noise`` > 0 adds Gaussian noise (std in action
    units, drawn from ``seed``) after the cue.
    """

    def __init__(self, noise: float = 0.0, seed: int | None = None):
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}.")
        self.noise = noise
        self._rng = np.random.default_rng(seed)

    def act(self, world: MemoryWorld) -> np.ndarray:
        """Action for the world's current frame, float32 [2]."""
        if world.phase == PHASE_CUE:
            return np.zeros(2, np.float32)
        step = (world.goal - world.agent) / MAX_SPEED
        norm = float(np.linalg.norm(step))
        if norm > 1.0:
            step = step / norm
        if self.noise > 0:
            step = step + self._rng.normal(0.0, self.noise, size=2)
        return np.clip(step, -1, 1).astype(np.float32)
