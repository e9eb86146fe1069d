"""MIKASA-Robo's colour-memory tasks as LeRobot env types, on :mod:`memlens.tasks.gym_adapter`.

Importing this module registers the env types below (``--env.type=...`` in ``lerobot-eval``, with
``--env.discover_packages_path=memlens.tasks.mikasa``); it does not import MIKASA, which is loaded
(:mod:`memlens.tasks.mikasa_sim`) when an env is made. Install MIKASA with ``make setup-mikasa``.

    type                              MIKASA-Robo 1.0.0 id              colours  targets  steps
    mikasa_remember_color3            RememberColor3-VLA-v0                3        1       25
    mikasa_remember_color5            RememberColor5-VLA-v0                5        1       25
    mikasa_remember_color9            RememberColor9-VLA-v0                9        1       25
    mikasa_bunch_of_colors3           BunchOfColors3-VLA-v0                9        3      400
    mikasa_seq_of_colors3             SeqOfColors3-VLA-v0                  9        3      400
    mikasa_chain_of_colors3           ChainOfColors3-VLA-v0                9        3      400
    mikasa_remember_color{3,5,9}_visible  RememberColor{3,5,9}CueVisible-VLA-v0 (control: the cue stays in view)

One type per task, not one type with a task field: lerobot's ``EnvConfig.task`` already means the language
instruction in memlens's env configs, ``--env.type`` is how lerobot and ``memlens record --env`` pick an
env, and each task has its own episode length.

What the policy gets (the same for every task): ``observation.images.base`` and ``observation.images.hand``
(uint8 [128, 128, 3] from the base and wrist cameras), ``observation.state`` float32 [25] (joint positions 9,
joint velocities 9, TCP pose 7: x y z qw qx qy qz), the instruction from ``info["language_instruction"]``;
actions float32 [8] in [-1, 1], ``pd_joint_delta_pos`` (7 joint deltas of up to 0.1 rad, gripper), 20 Hz; or,
with ``control_mode="pd_ee_delta_pos"``, float32 [4] (TCP x y z deltas of up to 0.1 m, gripper).
Nothing else: MIKASA's ``oracle_info``, ``task_cue`` and the other answer-carrying keys stay in the simulator.
The simulator runs on the CPU (``sim_backend="cpu"``, ``render_backend="cpu"``, one env): MIKASA's VLA
tasks are correct there, and the episode stops on success (MIKASA's VLA tasks do not stop by themselves).

Recorded datasets (:func:`record_mikasa_dataset`, ``memlens record --env``) add per-frame labels:
``label.cue`` (RememberColor: the target colour index) or ``label.cue_0..2`` (the targets in the cue's
order), ``label.phase`` (0 cue, 1 delay, 2 go, as memlens.tasks.worlds), ``label.cue_steps``,
``label.delay_steps`` and, for the three-target tasks, ``label.touched`` (targets touched so far).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lerobot.envs.configs import EnvConfig

from memlens.errors import InvalidInputError
from memlens.tasks.gym_adapter import GymEnvConfig, LeRobotGymEnv, record_gym_dataset


@dataclass(frozen=True)
class MikasaTask:
    gym_id: str
    n_colors: int
    n_targets: int
    episode_length: int
    control: bool = False  # the cue stays visible (memlens.tasks.mikasa_sim)


TASKS: dict[str, MikasaTask] = {
    "mikasa_remember_color3": MikasaTask("RememberColor3-VLA-v0", 3, 1, 25),
    "mikasa_remember_color5": MikasaTask("RememberColor5-VLA-v0", 5, 1, 25),
    "mikasa_remember_color9": MikasaTask("RememberColor9-VLA-v0", 9, 1, 25),
    "mikasa_bunch_of_colors3": MikasaTask("BunchOfColors3-VLA-v0", 9, 3, 400),
    "mikasa_seq_of_colors3": MikasaTask("SeqOfColors3-VLA-v0", 9, 3, 400),
    "mikasa_chain_of_colors3": MikasaTask("ChainOfColors3-VLA-v0", 9, 3, 400),
    "mikasa_remember_color3_visible": MikasaTask("RememberColor3CueVisible-VLA-v0", 3, 1, 25, control=True),
    "mikasa_remember_color5_visible": MikasaTask("RememberColor5CueVisible-VLA-v0", 5, 1, 25, control=True),
    "mikasa_remember_color9_visible": MikasaTask("RememberColor9CueVisible-VLA-v0", 9, 1, 25, control=True),
}

CAMERAS = {"base": "sensor_data/base_camera/rgb", "hand": "sensor_data/hand_camera/rgb"}
IMAGE_SHAPE = [128, 128, 3]
STATE = ["agent/qpos", "agent/qvel", "extra/tcp_pose"]
STATE_NAMES = ([f"qpos_{i}" for i in range(9)] + [f"qvel_{i}" for i in range(9)]
               + ["tcp_x", "tcp_y", "tcp_z", "tcp_qw", "tcp_qx", "tcp_qy", "tcp_qz"])
SIM_KWARGS = {"num_envs": 1, "obs_mode": "rgb", "control_mode": "pd_joint_delta_pos",
              "sim_backend": "cpu", "render_backend": "cpu"}
# Action spaces (ManiSkill's Panda controllers) and their action sizes. pd_joint_delta_pos is MIKASA-Robo's VLA
# default: 7 joint deltas of up to 0.1 rad and the gripper. pd_ee_delta_pos moves the TCP: x, y, z deltas of up to
# 0.1 m in the robot's base frame and the gripper (an option: --env.control_mode=pd_ee_delta_pos).
CONTROL_MODES = {"pd_joint_delta_pos": 8, "pd_ee_delta_pos": 4}
FPS = 20


def is_installed() -> bool:
    """Whether MIKASA-Robo and ManiSkill can be imported (``make setup-mikasa`` installs them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("mikasa_robo_suite", "mani_skill", "sapien"))


@dataclass
class MikasaEnvConfig(GymEnvConfig):
    """Shared fields of the MIKASA env types: the cameras, state, action and simulator settings above.

    ``task`` (the instruction) None reads MIKASA's ``info["language_instruction"]`` at every reset.
    ``control_mode``: one of ``CONTROL_MODES``; it sets ``action_dim``.
    ``env_kwargs`` are added to (and override) ``SIM_KWARGS``, e.g. ``{"robot_init_qpos_noise": 0}``.
    """

    NAME: ClassVar[str] = "mikasa_remember_color3"
    import_module: str | None = "memlens.tasks.mikasa_sim"
    cameras: dict[str, str] = field(default_factory=lambda: dict(CAMERAS))
    image_shapes: dict[str, list[int]] = field(default_factory=lambda: {cam: list(IMAGE_SHAPE) for cam in CAMERAS})
    state: list[str] = field(default_factory=lambda: list(STATE))
    state_dim: int = len(STATE_NAMES)
    state_names: list[str] | None = field(default_factory=lambda: list(STATE_NAMES))
    action_dim: int = 8
    control_mode: str = "pd_joint_delta_pos"
    success_key: str = "success"
    instruction_key: str | None = "language_instruction"
    batched: bool = True
    fps: int = FPS

    def __post_init__(self):
        spec = TASKS[self.NAME]
        self.env_id = self.env_id or spec.gym_id
        self.control_mode = self.env_kwargs.get("control_mode", self.control_mode)
        if self.control_mode not in CONTROL_MODES:
            raise InvalidInputError(
                f"{self.NAME}: control_mode {self.control_mode!r} is not one memlens's experts drive; expected one of "
                f"{', '.join(CONTROL_MODES)} (MIKASA-Robo's VLA tasks use pd_joint_delta_pos). Pick one of those.")
        self.env_kwargs = {**SIM_KWARGS, **self.env_kwargs, "control_mode": self.control_mode}
        self.action_dim = CONTROL_MODES[self.control_mode]
        self.task_name = self.NAME
        self.episode_length = self.episode_length or spec.episode_length
        super().__post_init__()

    @property
    def spec(self) -> MikasaTask:
        return TASKS[self.NAME]

    def make(self) -> LeRobotGymEnv:
        """One env (about 8 s: SAPIEN builds the scene and the renderer)."""
        if not is_installed():
            raise ImportError(f"{self.NAME} needs MIKASA-Robo, which is not installed. Install it into memlens's "
                              f".venv with `make setup-mikasa` (scripts/setup_mikasa.sh), then retry.")
        return super().make()


@EnvConfig.register_subclass("mikasa_remember_color3")
@dataclass
class RememberColor3Config(MikasaEnvConfig):
    """Touch the cube of the colour shown at the start; 3 colours."""

    NAME: ClassVar[str] = "mikasa_remember_color3"


@EnvConfig.register_subclass("mikasa_remember_color5")
@dataclass
class RememberColor5Config(MikasaEnvConfig):
    """RememberColor with 5 colours."""

    NAME: ClassVar[str] = "mikasa_remember_color5"


@EnvConfig.register_subclass("mikasa_remember_color9")
@dataclass
class RememberColor9Config(MikasaEnvConfig):
    """RememberColor with 9 colours."""

    NAME: ClassVar[str] = "mikasa_remember_color9"


@EnvConfig.register_subclass("mikasa_bunch_of_colors3")
@dataclass
class BunchOfColors3Config(MikasaEnvConfig):
    """Touch the 3 cubes shown together (any order), then press the button; 9 colours."""

    NAME: ClassVar[str] = "mikasa_bunch_of_colors3"


@EnvConfig.register_subclass("mikasa_seq_of_colors3")
@dataclass
class SeqOfColors3Config(MikasaEnvConfig):
    """Touch the 3 cubes shown one after another (any order), then press the button; 9 colours."""

    NAME: ClassVar[str] = "mikasa_seq_of_colors3"


@EnvConfig.register_subclass("mikasa_chain_of_colors3")
@dataclass
class ChainOfColors3Config(MikasaEnvConfig):
    """Touch the 3 cubes shown one after another in the order shown, then press the button; 9 colours."""

    NAME: ClassVar[str] = "mikasa_chain_of_colors3"


@EnvConfig.register_subclass("mikasa_remember_color3_visible")
@dataclass
class RememberColor3VisibleConfig(MikasaEnvConfig):
    """Control for mikasa_remember_color3: a tile of the target's colour stays on the table all episode."""

    NAME: ClassVar[str] = "mikasa_remember_color3_visible"


@EnvConfig.register_subclass("mikasa_remember_color5_visible")
@dataclass
class RememberColor5VisibleConfig(MikasaEnvConfig):
    """Control for mikasa_remember_color5 (the cue stays visible)."""

    NAME: ClassVar[str] = "mikasa_remember_color5_visible"


@EnvConfig.register_subclass("mikasa_remember_color9_visible")
@dataclass
class RememberColor9VisibleConfig(MikasaEnvConfig):
    """Control for mikasa_remember_color9 (the cue stays visible)."""

    NAME: ClassVar[str] = "mikasa_remember_color9_visible"


KNOWN_ENVS: dict[str, type[MikasaEnvConfig]] = {cls.NAME: cls for cls in MikasaEnvConfig.__subclasses__()}
assert set(KNOWN_ENVS) == set(TASKS)


def make_env_config(name: str, **kwargs) -> MikasaEnvConfig:
    """Env config by LeRobot type name, e.g. ``make_env_config("mikasa_remember_color3")``."""
    if name not in KNOWN_ENVS:
        raise InvalidInputError(f"Unknown MIKASA env {name!r}: expected one of {sorted(KNOWN_ENVS)}. Use one of those names.")
    return KNOWN_ENVS[name](**kwargs)


def control_mode_of(action_dim: int) -> str:
    """The control mode whose actions have `action_dim` values (a policy's action size picks the controller)."""
    for mode, dim in CONTROL_MODES.items():
        if dim == action_dim:
            return mode
    raise InvalidInputError(
        f"the policy outputs {action_dim} action values; MIKASA-Robo's controllers here take "
        + ", ".join(f"{d} ({m})" for m, d in CONTROL_MODES.items())
        + ". Use a checkpoint trained on a MIKASA dataset recorded by memlens.")


# ---- labels and recording --------------------------------------------------------------------------------


def labels(env: LeRobotGymEnv) -> dict[str, int]:
    """The per-frame labels of the frame ``env`` shows now, from the simulator's privileged state."""
    from memlens.tasks.mikasa_expert import phase, targets

    u = env.unwrapped
    cue = targets(env)
    out = {"cue": cue[0]} if len(cue) == 1 else {f"cue_{i}": k for i, k in enumerate(cue)}
    out |= {"phase": phase(env), "cue_steps": int(u.cue_steps_per_env[0]), "delay_steps": int(u.empty_steps_per_env[0])}
    if len(cue) > 1:
        touched = u.touched_cubes[0].cpu().numpy()
        out["touched"] = int(sum(bool(touched[k]) for k in cue))
    return out


def record_mikasa_dataset(name: str, *, root: str | Path, n_episodes: int, seed: int = 0, repo_id: str | None = None,
                          progress: bool = True, env: LeRobotGymEnv | None = None,
                          control_mode: str = "pd_joint_delta_pos") -> Path:
    """Record ``n_episodes`` expert episodes of MIKASA env type ``name`` (seeds ``seed``, ``seed + 1``, ...) as a
    LeRobotDataset v3 at ``root``, with the labels of :func:`labels`, in the action space ``control_mode``;
    ``env`` reuses an env of that type and control mode (else one is made and closed). Raises
    ``InvalidInputError`` (a ``ValueError``) for an unknown name or control mode, ``OutputExistsError`` (a
    ``FileExistsError``) for a non-empty root, ``ImportError`` when MIKASA is not installed."""
    from memlens.tasks.mikasa_expert import MikasaExpert
    from memlens.tasks.record import _check_root

    cfg = make_env_config(name, control_mode=control_mode)
    if env is not None and env.unwrapped.control_mode != cfg.control_mode:
        raise InvalidInputError(f"the env given runs {env.unwrapped.control_mode}, the recording asks for "
                                f"{cfg.control_mode}; pass an env made with control_mode={cfg.control_mode!r} or none.")
    if n_episodes < 1:
        raise InvalidInputError(f"n_episodes must be >= 1, got {n_episodes}.")
    _check_root(Path(root))  # these two before the 8 s of making an env
    own = env is None
    env = env or cfg.make()
    try:
        meta = {"env": name, "gym_id": cfg.env_id, "n_colors": cfg.spec.n_colors, "n_targets": cfg.spec.n_targets,
                "control": cfg.spec.control, "episode_length": cfg.episode_length, "expert": "MikasaExpert",
                "control_mode": cfg.control_mode}
        return record_gym_dataset(env, MikasaExpert(), root=root, repo_id=repo_id or f"local/{Path(root).name}",
                                  n_episodes=n_episodes, seed=seed, labels_fn=labels, fps=cfg.fps, progress=progress,
                                  meta=meta)
    finally:
        if own:
            env.close()


# ---- what a rollout reached ----------------------------------------------------------------------------------

TOUCH_RADIUS = 0.05  # metres: RememberColor counts a touch with the TCP within 5 cm of the target cube


def cue_of_seed(env: LeRobotGymEnv, seed: int) -> int:
    """The first target colour of the episode `seed` (resets `env`)."""
    from memlens.tasks.mikasa_expert import targets

    env.reset(seed=seed)
    return targets(env)[0]


class ReachTracker:
    """Watches one env of lerobot's vector env while it steps: per episode (from each reset on), its labels as
    the reset left them (`labels`: cue, cue_steps, delay_steps) and the first cube (colour index) the TCP came
    within `TOUCH_RADIUS` of once the cubes were back (`reached`, None if none). Use as a context manager around
    a rollout; ``episodes[0]`` is the episode the rollout played. lerobot's vector env resets an env in the
    same step that ends its episode (gymnasium's `AutoresetMode.SAME_STEP`), so after a rollout the simulator
    already holds the next episode: read an episode's labels here, not from the env afterwards."""

    def __init__(self, env: LeRobotGymEnv):
        self.env, self.episodes = env, []

    def __enter__(self):
        from contextlib import ExitStack

        from memlens.runtime.patching import patched

        self._stack = ExitStack()
        inner_reset = self._stack.enter_context(patched(self.env, "reset", self._reset))
        inner_step = self._stack.enter_context(patched(self.env, "step", self._step))
        self._inner = inner_reset, inner_step
        return self

    def _reset(self, *args, **kwargs):
        out = self._inner[0](*args, **kwargs)
        self.episodes.append({"reached": None, "labels": labels(self.env)})
        return out

    def _step(self, action):
        import numpy as np

        from memlens.tasks.mikasa_expert import PHASE_GO, phase

        out = self._inner[1](action)
        episode = self.episodes[-1] if self.episodes else None
        if episode is not None and episode["reached"] is None and phase(self.env) == PHASE_GO:
            u = self.env.unwrapped
            tcp = u.agent.tcp.pose.p[0].cpu().numpy()
            for key, cube in u.cubes.items():
                if float(np.linalg.norm(cube.pose.p[0].cpu().numpy() - tcp)) < TOUCH_RADIUS:
                    episode["reached"] = int(key)
                    break
        return out

    def __exit__(self, *exc):
        self._stack.close()
        return False


def _check() -> None:
    """One reset and step of mikasa_remember_color3 with both cameras: what scripts/setup_mikasa.sh runs last."""
    import time

    import numpy as np

    t = time.perf_counter()
    env = make_env_config("mikasa_remember_color3").make()
    made = time.perf_counter() - t
    obs, _ = env.reset(seed=0)
    t = time.perf_counter()
    obs, *_ = env.step(np.zeros(8, np.float32))
    stepped = time.perf_counter() - t
    env.close()
    shapes = {cam: img.shape for cam, img in obs["pixels"].items()}
    print(f"MIKASA check: made the env in {made:.1f} s, one step with cameras {shapes} and state "
          f"{obs['agent_pos'].shape} in {stepped * 1000:.0f} ms: {env.task_description!r}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--check"]:
        sys.exit("usage: python -m memlens.tasks.mikasa --check")
    _check()
