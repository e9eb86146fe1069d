"""Config of `memlens_fake_robot`, a stand-in robot for trying deployment without hardware (tests, benchmarks)."""

from dataclasses import dataclass

from lerobot.robots.config import RobotConfig


@RobotConfig.register_subclass("memlens_fake_robot")
@dataclass
class FakeRobotConfig(RobotConfig):
    # Matches the memory tasks' datasets: observation.state [4], observation.images.top [64, 64, 3], action [2].
    image_size: int = 64
    seed: int = 0
