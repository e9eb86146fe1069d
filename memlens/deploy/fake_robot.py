"""`memlens_fake_robot`: a robot whose observation at frame t depends on t alone.

Frame t is the number of actions it has executed (`send_action` calls). Because the observation of a
frame does not depend on which actions were executed or when, synchronous, RTC and async inference
see exactly the same observation at every frame, which is what a test of memory cadence needs.
lerobot finds the class from its config by naming convention (`config_fake_robot.FakeRobotConfig`).
"""

from __future__ import annotations

import numpy as np
from lerobot.robots.robot import Robot

from .config_fake_robot import FakeRobotConfig

STATE_NAMES = ("x", "y", "go", "go_fraction")
ACTION_NAMES = ("vx", "vy")


def observation_at(frame: int, *, image_size: int = 64, seed: int = 0) -> dict:
    """The raw observation (lerobot robot format) of `frame`."""
    rng = np.random.default_rng([seed, frame])
    obs = {f"{n}.pos": float(v) for n, v in zip(STATE_NAMES, rng.uniform(-1, 1, len(STATE_NAMES)), strict=True)}
    obs["top"] = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
    return obs


class FakeRobot(Robot):
    config_class = FakeRobotConfig
    name = "memlens_fake_robot"

    def __init__(self, config: FakeRobotConfig):
        super().__init__(config)
        self.config = config
        self.frame = 0
        self.actions: list[dict] = []
        self._connected = False

    @property
    def observation_features(self) -> dict:
        size = self.config.image_size
        return {**{f"{n}.pos": float for n in STATE_NAMES}, "top": (size, size, 3)}

    @property
    def action_features(self) -> dict:
        return {f"{n}.pos": float for n in ACTION_NAMES}

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, calibrate: bool = True) -> None:
        self._connected = True

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def get_observation(self) -> dict:
        return observation_at(self.frame, image_size=self.config.image_size, seed=self.config.seed)

    def send_action(self, action: dict) -> dict:
        self.actions.append(dict(action))
        self.frame += 1
        return action

    def new_episode(self) -> None:
        """Back to frame 0 (memlens's robot client calls this at each new episode)."""
        self.frame = 0

    def disconnect(self) -> None:
        self._connected = False
