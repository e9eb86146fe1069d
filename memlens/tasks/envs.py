"""Gymnasium envs and LeRobot env configs for the memory tasks.

Importing this module registers:

- gymnasium ids ``memlens/CueRecall-v0``, ``memlens/Count-v0`` and ``memlens/Order-v0`` (kwargs: ``variant``, ``delay_steps``,
  ``n_targets``, ``image_size``, ``task_description``);
- LeRobot env types ``memlens_cue_recall``, ``memlens_count`` and ``memlens_order`` (``--env.type=...`` in
  ``lerobot-eval``/``lerobot-train`` once this module is imported, e.g. with
  ``--env.discover_packages_path=memlens.tasks.envs``).

Observations: ``{"pixels": {"top": uint8 [H, W, 3]}, "agent_pos": float32 [4]}``, which
lerobot's ``preprocess_observation`` turns into ``observation.images.top`` float [B, 3, H, W]
in [0, 1] and ``observation.state`` float [B, 4]. Actions: float32 [2] in [-1, 1].
Info: ``is_success``, ``is_failure``, ``phase``. Each env exposes ``task`` (the task kind)
and ``task_description`` (the language instruction, which ``lerobot-eval`` feeds to the policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import registry as gym_registry
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

from memlens.errors import InvalidInputError
from memlens.tasks.worlds import INSTRUCTIONS, MemoryWorld, make_spec

GYM_IDS = {"cue_recall": "memlens/CueRecall-v0", "count": "memlens/Count-v0", "order": "memlens/Order-v0"}


class MemoryTaskEnv(gym.Env):
    """A :class:`MemoryWorld` as a gymnasium env (one episode per ``reset``)."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        task: str = "cue_recall",
        variant: str = "short",
        delay_steps: int | None = None,
        n_targets: int = 4,
        image_size: int = 64,
        task_description: str | None = None,
        render_mode: str = "rgb_array",
    ):
        self.task_spec = make_spec(task, variant, n_targets, image_size=image_size, delay_steps=delay_steps)
        self.world = MemoryWorld(self.task_spec)
        self.task = task
        self.task_description = task_description or INSTRUCTIONS[task]
        self.render_mode = render_mode
        self._max_episode_steps = self.task_spec.episode_length  # read by lerobot's rollout()
        size = self.task_spec.image_size
        self.observation_space = spaces.Dict(
            {
                "pixels": spaces.Dict({"top": spaces.Box(0, 255, (size, size, 3), np.uint8)}),
                "agent_pos": spaces.Box(-1.0, 1.0, (4,), np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._last_image = None

    def _obs(self, world_obs: dict) -> dict:
        self._last_image = world_obs["image"]
        return {"pixels": {"top": world_obs["image"]}, "agent_pos": world_obs["state"]}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """``seed`` fixes the cue exactly as ``MemoryWorld.reset(seed)`` does."""
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**63))
        obs = self.world.reset(seed=seed)
        return self._obs(obs), {"is_success": False, "is_failure": False, "phase": self.world.phase}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.world.step(action)
        info["phase"] = self.world.phase
        return self._obs(obs), reward, terminated, truncated, info

    def render(self) -> np.ndarray:
        """The last observed frame, uint8 [H, W, 3]."""
        return self._last_image


def _register_gym_ids() -> None:
    for task, gym_id in GYM_IDS.items():
        if gym_id not in gym_registry:
            gym.register(id=gym_id, entry_point=f"{__name__}:MemoryTaskEnv", kwargs={"task": task})


_register_gym_ids()


@dataclass
class MemoryTaskEnvConfig(EnvConfig):
    """Shared fields of the memlens env configs.

    ``task`` here is the language instruction given to the policy (it defaults to the task
    kind's instruction); the gym id is fixed per config class. ``episode_length`` is derived.
    """

    KIND: ClassVar[str] = "cue_recall"
    task: str | None = None
    fps: int = 10
    variant: str = "short"
    delay_steps: int | None = None  # overrides the variant's preset delay, e.g. to sweep delays
    n_targets: int = 4
    image_size: int = 64
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(
        default_factory=lambda: {
            ACTION: ACTION,
            "agent_pos": OBS_STATE,
            "pixels/top": f"{OBS_IMAGES}.top",
        }
    )

    def __post_init__(self):
        self.task = self.task or INSTRUCTIONS[self.KIND]
        self._spec = make_spec(self.KIND, self.variant, self.n_targets, image_size=self.image_size,
                               delay_steps=self.delay_steps)
        size = self.image_size
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(2,)),
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(4,)),
            "pixels/top": PolicyFeature(type=FeatureType.VISUAL, shape=(size, size, 3)),
        }

    @property
    def episode_length(self) -> int:
        return self._spec.episode_length

    @property
    def package_name(self) -> str:
        return __name__  # imported by EnvConfig.create_envs if the gym id is missing

    @property
    def gym_id(self) -> str:
        return GYM_IDS[self.KIND]

    @property
    def gym_kwargs(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "delay_steps": self.delay_steps,
            "n_targets": self.n_targets,
            "image_size": self.image_size,
            "task_description": self.task,
        }


@EnvConfig.register_subclass("memlens_cue_recall")
@dataclass
class CueRecallEnvConfig(MemoryTaskEnvConfig):
    """LeRobot env type ``memlens_cue_recall``: reach the target whose colour the cue showed."""

    KIND: ClassVar[str] = "cue_recall"


@EnvConfig.register_subclass("memlens_count")
@dataclass
class CountEnvConfig(MemoryTaskEnvConfig):
    """LeRobot env type ``memlens_count``: reach target number <number of flashes>."""

    KIND: ClassVar[str] = "count"


@EnvConfig.register_subclass("memlens_order")
@dataclass
class OrderEnvConfig(MemoryTaskEnvConfig):
    """LeRobot env type ``memlens_order``: reach the target of the first of two colours shown."""

    KIND: ClassVar[str] = "order"


KNOWN_ENVS: dict[str, type[MemoryTaskEnvConfig]] = {
    "memlens_cue_recall": CueRecallEnvConfig,
    "memlens_count": CountEnvConfig,
    "memlens_order": OrderEnvConfig,
}


def make_env_config(name: str, **kwargs) -> MemoryTaskEnvConfig:
    """Env config by LeRobot type name, e.g. ``make_env_config("memlens_count", variant="long")``."""
    if name not in KNOWN_ENVS:
        raise InvalidInputError(
            f"Unknown memlens env {name!r}: expected one of {sorted(KNOWN_ENVS)}. Use one of those names."
        )
    return KNOWN_ENVS[name](**kwargs)
