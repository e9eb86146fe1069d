"""Any Gymnasium env with image observations as a LeRobot env type, and a recorder of expert episodes.

A simulator's observation usually holds more than a policy should see: MIKASA-Robo's, for instance,
carries the answer (``oracle_info``, the task cue) next to the cameras. :class:`LeRobotGymEnv` lets
through only what an :class:`ObservationSpec` names, in the layout lerobot's ``preprocess_observation``
expects, and nothing else:

    observation  {"pixels": {<camera>: uint8 [H, W, 3], ...}, "agent_pos": float32 [D]}
                 -> lerobot: observation.images.<camera> float [B, 3, H, W] in [0, 1], observation.state [B, D]
    info         {"is_success": bool} only (the env's own info stays inside)
    attributes   task, task_description (the language instruction), _max_episode_steps

An episode ends on success (``stop_on_success``), as lerobot-eval counts it. The adapter knows nothing of
memlens or of the env it wraps; the env keeps everything it had (``env.unwrapped``), so an expert and a
labeller can read the simulator's privileged state while the policy cannot.

:class:`GymEnvConfig` is the LeRobot env type ``memlens_gym`` over it (``--env.type=memlens_gym``), and
:func:`record_gym_dataset` writes expert episodes as a LeRobotDataset v3 with per-frame ``label.*`` columns.

Example (memlens's own cue-recall env, whose info says ``is_success``; any other env works the same way)::

    import gymnasium as gym
    import memlens.tasks.envs  # registers memlens/CueRecall-v0
    from memlens.tasks.expert import ScriptedExpert
    from memlens.tasks.gym_adapter import LeRobotGymEnv, ObservationSpec, record_gym_dataset

    spec = ObservationSpec(cameras={"top": "pixels/top"}, state=("agent_pos",), success_key="is_success",
                           instruction="reach the target whose colour the cue showed")
    env = LeRobotGymEnv(gym.make("memlens/CueRecall-v0"), spec, task="cue_recall")
    expert = ScriptedExpert()
    record_gym_dataset(env, lambda env, obs: expert.act(env.unwrapped.world), root="data/cue_gym",
                       repo_id="local/cue_gym", n_episodes=2, seed=0,
                       labels_fn=lambda env: {"cue": env.unwrapped.world.cue, "phase": env.unwrapped.world.phase})
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import registry as gym_registry
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

from memlens.errors import InvalidInputError


GYM_ID = "memlens/Gym-v0"


@dataclass(frozen=True)
class ObservationSpec:
    """What of an env's observation reaches the policy, and where success and the instruction come from.

    Paths name a value inside nested observation dicts with ``/`` (``"sensor_data/base_camera/rgb"``);
    ``""`` names the observation itself (an env whose observation is one image array).

    - ``cameras``: camera name -> path of a uint8 image [H, W, 3] (becomes ``observation.images.<name>``).
    - ``state``: paths of the arrays concatenated (flattened, as float32) into ``observation.state``.
    - ``state_names``: one name per state value (dataset metadata), or None.
    - ``success_key``: the ``info`` entry that says the episode succeeded.
    - ``instruction``: the language instruction; or ``instruction_key``: the ``info`` entry that holds it
      (read at every reset). One of the two is needed.
    - ``stop_on_success``: end the episode (``terminated``) on the first successful step.
    - ``batched``: every value carries a leading env axis of length 1 (a vectorised simulator with one env,
      such as ManiSkill with ``num_envs=1``); it is dropped.
    """

    cameras: Mapping[str, str]
    state: tuple[str, ...] = ()
    state_names: tuple[str, ...] | None = None
    success_key: str = "success"
    instruction: str | None = None
    instruction_key: str | None = None
    stop_on_success: bool = True
    batched: bool = False

    def __post_init__(self):
        if not self.cameras:
            raise InvalidInputError("ObservationSpec.cameras is empty: expected at least one camera name -> observation "
                             "path, e.g. {'top': 'pixels/top'}.")
        if self.instruction is None and self.instruction_key is None:
            raise InvalidInputError("ObservationSpec needs a language instruction: give `instruction` (a fixed string) or "
                             "`instruction_key` (the info entry that holds it, e.g. 'language_instruction').")
        object.__setattr__(self, "cameras", dict(self.cameras))
        object.__setattr__(self, "state", tuple(self.state))
        if self.state_names is not None:
            object.__setattr__(self, "state_names", tuple(self.state_names))


def _lookup(obs: Any, path: str) -> Any:
    value = obs
    for part in [p for p in path.split("/") if p]:
        if not isinstance(value, Mapping) or part not in value:
            found = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise KeyError(f"observation path {path!r}: no key {part!r} here; found {found}. Name a path that the "
                           f"env's observation has (keys joined with '/').")
        value = value[part]
    return value


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (ManiSkill returns them); no torch import needed here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _wrapper_attr(env: gym.Env, name: str) -> Any:
    try:
        return env.get_wrapper_attr(name)
    except AttributeError:
        return None


class LeRobotGymEnv(gym.Wrapper):
    """``env`` seen through ``spec``: the observation, info and attributes lerobot expects, and nothing else.

    ``task`` is a short name of the task (``lerobot-eval`` groups results by it); ``max_episode_steps``
    overrides the env's own limit (``env.spec.max_episode_steps``, else an attribute ``max_episode_steps``
    or ``_max_episode_steps``); ``fps`` overrides ``metadata["render_fps"]``. The env is reset once here to
    read the observation's shapes. Raises
    ``KeyError`` for a path the observation lacks and ``ValueError`` for a camera that is not uint8 [H, W, 3].
    """

    def __init__(self, env: gym.Env, spec: ObservationSpec, *, task: str = "gym", max_episode_steps: int | None = None,
                 fps: int | None = None):
        super().__init__(env)
        self.obs_spec = spec
        self.task = task
        self.task_description = spec.instruction or ""
        limit = max_episode_steps or getattr(env.spec, "max_episode_steps", None) or _wrapper_attr(env, "max_episode_steps") \
            or _wrapper_attr(env, "_max_episode_steps")
        if limit is None:
            raise InvalidInputError(f"{env} has no episode limit (env.spec.max_episode_steps, max_episode_steps or "
                             f"_max_episode_steps); pass max_episode_steps.")
        self._max_episode_steps = int(limit)  # read by lerobot's rollout
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"],
                         "render_fps": fps or env.metadata.get("render_fps", 30)}
        self._last = None
        # The spaces come from one real observation, so they hold what the env gives, not what it declares.
        obs, info = self.env.reset()
        adapted = self._adapt(obs)
        self.observation_space = spaces.Dict({
            "pixels": spaces.Dict({cam: spaces.Box(0, 255, img.shape, np.uint8) for cam, img in adapted["pixels"].items()}),
            "agent_pos": spaces.Box(-np.inf, np.inf, adapted["agent_pos"].shape, np.float32),
        })
        action_shape = self.env.action_space.shape
        if spec.batched and len(action_shape) == 2 and action_shape[0] == 1:
            action_shape = action_shape[1:]
        low, high = (np.broadcast_to(_numpy(b), self.env.action_space.shape).reshape(action_shape)
                     for b in (self.env.action_space.low, self.env.action_space.high))
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), action_shape, np.float32)

    # ---- conversion -------------------------------------------------------------------------------
    def _unbatch(self, value: Any) -> np.ndarray:
        arr = _numpy(value)
        if self.obs_spec.batched:
            if arr.ndim == 0 or arr.shape[0] != 1:
                raise InvalidInputError(f"ObservationSpec.batched is set but a value has shape {arr.shape}; expected a "
                                 f"leading env axis of length 1 (create the env with one sub-env, e.g. num_envs=1).")
            arr = arr[0]
        return arr

    def _adapt(self, obs: Any) -> dict:
        pixels = {}
        for cam, path in self.obs_spec.cameras.items():
            img = self._unbatch(_lookup(obs, path))
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
                raise InvalidInputError(f"camera {cam!r} (observation path {path!r}) is {img.dtype} {list(img.shape)}; "
                                 f"expected uint8 [H, W, 3]. Point the camera at an RGB image.")
            pixels[cam] = np.ascontiguousarray(img)
        parts = [self._unbatch(_lookup(obs, path)).astype(np.float32).reshape(-1) for path in self.obs_spec.state]
        state = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        self._last = pixels
        return {"pixels": pixels, "agent_pos": state}

    @staticmethod
    def _scalar(value: Any) -> Any:
        arr = _numpy(value)
        if arr.size != 1:
            raise InvalidInputError(f"expected one value (a reward, flag or success), got shape {list(arr.shape)}.")
        return arr.reshape(-1)[0].item()

    def _success(self, info: Mapping) -> bool:
        if self.obs_spec.success_key not in info:
            raise KeyError(f"info has no {self.obs_spec.success_key!r} (ObservationSpec.success_key); found "
                           f"{sorted(info)}. Name the info entry that says the episode succeeded.")
        return bool(self._scalar(info[self.obs_spec.success_key]))

    # ---- gym API --------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        key = self.obs_spec.instruction_key
        if key is not None:
            if key not in info:
                raise KeyError(f"info has no {key!r} (ObservationSpec.instruction_key); found {sorted(info)}.")
            self.task_description = str(info[key])
        return self._adapt(obs), {"is_success": False}

    def step(self, action):
        action = np.asarray(action, np.float32)
        if action.shape != self.action_space.shape:
            raise InvalidInputError(f"action has shape {list(action.shape)}; expected {list(self.action_space.shape)}.")
        obs, reward, terminated, truncated, info = self.env.step(action)
        success = self._success(info)
        terminated = bool(self._scalar(terminated)) or (success and self.obs_spec.stop_on_success)
        return self._adapt(obs), float(self._scalar(reward)), terminated, bool(self._scalar(truncated)), \
            {"is_success": success}

    def render(self) -> np.ndarray:
        """The first camera's last frame, uint8 [H, W, 3] (lerobot-eval's videos)."""
        return next(iter(self._last.values()))


# ---- the LeRobot env type ---------------------------------------------------------------------------


def make_gym_env(*, env_id: str, env_kwargs: dict | None = None, import_module: str | None = None,
                 spec: dict, task: str = "gym", max_episode_steps: int | None = None, fps: int | None = None,
                 expect: dict | None = None) -> LeRobotGymEnv:
    """``gym.make(env_id, **env_kwargs)`` seen through ``ObservationSpec(**spec)`` (the entry point of
    ``memlens/Gym-v0``). ``import_module`` is imported first (the package that registers ``env_id``).
    ``expect`` ({"images": {cam: [H, W, 3]}, "state_dim": D, "action_dim": A}) is checked against the env."""
    if import_module:
        importlib.import_module(import_module)
    env = LeRobotGymEnv(gym.make(env_id, disable_env_checker=True, **(env_kwargs or {})), ObservationSpec(**spec),
                        task=task, max_episode_steps=max_episode_steps, fps=fps)
    if expect:
        found = {
            "images": {cam: list(box.shape) for cam, box in env.observation_space["pixels"].spaces.items()},
            "state_dim": env.observation_space["agent_pos"].shape[0],
            "action_dim": env.action_space.shape[0],
        }
        want = {"images": {c: list(s) for c, s in expect["images"].items()}, "state_dim": expect["state_dim"],
                "action_dim": expect["action_dim"]}
        if found != want:
            env.close()
            raise InvalidInputError(f"{env_id} gives {found}; its env config declares {want}. Make the config's "
                             f"image_shapes, state_dim and action_dim match the env.")
    return env


if GYM_ID not in gym_registry:
    gym.register(id=GYM_ID, entry_point=f"{__name__}:make_gym_env")


@EnvConfig.register_subclass("memlens_gym")
@dataclass
class GymEnvConfig(EnvConfig):
    """LeRobot env type ``memlens_gym``: the Gymnasium env ``env_id`` through an :class:`ObservationSpec`.

    The shapes are declared (lerobot builds the policy's input features from the config, before any env
    exists) and checked when the env is made. ``task`` is the language instruction (None: read from
    ``instruction_key`` at reset, and ``instruction_key`` is then required). ``episode_length`` 0 keeps
    the env's own limit.

    Example::

        lerobot-eval --env.discover_packages_path=memlens.tasks.gym_adapter --env.type=memlens_gym \\
            --env.env_id=memlens/CueRecall-v0 --env.cameras='{"top": "pixels/top"}' \\
            --env.image_shapes='{"top": [64, 64, 3]}' --env.state='["agent_pos"]' --env.state_dim=4 \\
            --env.action_dim=2 --env.success_key=is_success --env.task="reach the cued target" ...
    """

    env_id: str = ""
    env_kwargs: dict = field(default_factory=dict)
    import_module: str | None = None
    cameras: dict[str, str] = field(default_factory=dict)
    image_shapes: dict[str, list[int]] = field(default_factory=dict)
    state: list[str] = field(default_factory=list)
    state_dim: int = 0
    state_names: list[str] | None = None
    action_dim: int = 0
    success_key: str = "success"
    instruction_key: str | None = None
    stop_on_success: bool = True
    batched: bool = False
    episode_length: int = 0
    task_name: str = "gym"
    fps: int = 30
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if not self.env_id:
            raise InvalidInputError(f"{type(self).__name__}.env_id is empty: expected a registered gymnasium id.")
        if set(self.cameras) != set(self.image_shapes):
            raise InvalidInputError(f"{type(self).__name__}: cameras {sorted(self.cameras)} and image_shapes "
                             f"{sorted(self.image_shapes)} must name the same cameras.")
        if self.action_dim < 1:
            raise InvalidInputError(f"{type(self).__name__}.action_dim must be >= 1, got {self.action_dim}.")
        self.obs_spec()  # the spec's own checks (a camera, an instruction)
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(self.action_dim,)),
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(self.state_dim,)),
            **{f"pixels/{cam}": PolicyFeature(type=FeatureType.VISUAL, shape=tuple(shape))
               for cam, shape in self.image_shapes.items()},
        }
        self.features_map = {ACTION: ACTION, "agent_pos": OBS_STATE,
                             **{f"pixels/{cam}": f"{OBS_IMAGES}.{cam}" for cam in self.cameras}}

    def obs_spec(self) -> ObservationSpec:
        return ObservationSpec(cameras=self.cameras, state=tuple(self.state), state_names=self.state_names,
                               success_key=self.success_key, instruction=self.task, instruction_key=self.instruction_key,
                               stop_on_success=self.stop_on_success, batched=self.batched)

    @property
    def package_name(self) -> str:
        return __name__

    @property
    def gym_id(self) -> str:
        return GYM_ID

    @property
    def gym_kwargs(self) -> dict[str, Any]:
        spec = asdict(self.obs_spec())
        spec["cameras"] = dict(spec["cameras"])
        return {
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "import_module": self.import_module,
            "spec": spec,
            "task": self.task_name,
            "max_episode_steps": self.episode_length or None,
            "fps": self.fps,
            "expect": {"images": self.image_shapes, "state_dim": self.state_dim, "action_dim": self.action_dim},
        }

    def make(self) -> LeRobotGymEnv:
        """One env (no vector env around it), e.g. for :func:`record_gym_dataset`."""
        return make_gym_env(**self.gym_kwargs)


# ---- recording -----------------------------------------------------------------------------------------

Expert = Callable[[LeRobotGymEnv, dict], np.ndarray]
LabelsFn = Callable[[LeRobotGymEnv], Mapping[str, int]]


def dataset_features(env: LeRobotGymEnv, label_keys: tuple[str, ...], use_videos: bool = True) -> dict:
    """LeRobotDataset ``features`` of an adapted env: its cameras, state, action and ``label.<key>`` int64 [1]."""
    space = env.observation_space
    state_dim = space["agent_pos"].shape[0]
    names = env.obs_spec.state_names
    if names is not None and len(names) != state_dim:
        raise InvalidInputError(f"ObservationSpec.state_names has {len(names)} names for {state_dim} state values.")
    return {
        **{f"{OBS_IMAGES}.{cam}": {"dtype": "video" if use_videos else "image", "shape": box.shape,
                                   "names": ["height", "width", "channels"]}
           for cam, box in space["pixels"].spaces.items()},
        OBS_STATE: {"dtype": "float32", "shape": (state_dim,), "names": list(names) if names else None},
        ACTION: {"dtype": "float32", "shape": env.action_space.shape, "names": None},
        **{f"label.{k}": {"dtype": "int64", "shape": (1,), "names": None} for k in label_keys},
    }


def record_gym_dataset(
    env: LeRobotGymEnv,
    expert: Expert,
    *,
    root: str | Path,
    repo_id: str,
    n_episodes: int,
    seed: int = 0,
    labels_fn: LabelsFn | None = None,
    fps: int | None = None,
    use_videos: bool = True,
    progress: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Roll out ``expert`` ``n_episodes`` times in ``env`` and write a LeRobotDataset v3 at ``root``.

    Episode ``i`` is ``env.reset(seed=seed + i)``; it ends when the env terminates (on success, with
    ``stop_on_success``) or truncates. Each frame holds the adapted observation, the expert's action
    ``expert(env, observation)`` (float32 [A]; an expert with a ``reset(env)`` method is reset after each
    env reset) and ``labels_fn(env)`` (``{name: int}``, read before the action, describing the frame) as
    ``label.<name>`` columns. Both may read the simulator's privileged state through ``env.unwrapped``;
    the dataset's observations are only what the env's ``ObservationSpec`` lets through. ``fps`` defaults
    to ``env.metadata["render_fps"]``. Videos are all-intra lossless H.264 (memlens.tasks.record's encoder:
    no frame's pixels depend on a later frame).

    Writes ``meta/memlens_labels.json``: ``meta``, the seed, and per episode its seed, length, success and
    first-frame labels (load it with ``memlens.tasks.record.load_labels``). Returns ``root``. Raises
    ``FileExistsError`` if ``root`` exists and is not empty, ``ValueError`` for ``n_episodes`` < 1.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset  # heavy import, only here

    from memlens.runtime.quiet import quiet_progress
    from memlens.tasks.record import LABELS_FILE, _check_root, video_encoder

    if n_episodes < 1:
        raise InvalidInputError(f"n_episodes must be >= 1, got {n_episodes}.")
    root = Path(root)
    _check_root(root)
    fps = int(fps or env.metadata.get("render_fps", 30))
    labels_fn = labels_fn or (lambda env: {})

    dataset = None
    episodes = []
    iterator = range(n_episodes)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"recording {env.task}", unit="episode")
    with quiet_progress():
        try:
            for i in iterator:
                obs, _ = env.reset(seed=seed + i)
                if hasattr(expert, "reset"):
                    expert.reset(env)
                labels = dict(labels_fn(env))
                if dataset is None:
                    dataset = LeRobotDataset.create(
                        repo_id=repo_id, root=root, fps=fps,
                        features=dataset_features(env, tuple(labels), use_videos),
                        use_videos=use_videos, video_backend="pyav",
                        rgb_encoder=video_encoder() if use_videos else None,
                    )
                    keys = tuple(labels)
                first, length, success = labels, 0, False
                for _ in range(env._max_episode_steps):
                    if tuple(labels) != keys:
                        raise InvalidInputError(f"labels_fn gave keys {sorted(labels)} on episode {i}, {sorted(keys)} before; "
                                         f"it must give the same keys on every frame.")
                    action = np.asarray(expert(env, obs), np.float32)
                    dataset.add_frame({
                        **{f"{OBS_IMAGES}.{cam}": img for cam, img in obs["pixels"].items()},
                        OBS_STATE: obs["agent_pos"],
                        ACTION: action,
                        **{f"label.{k}": np.array([int(v)], np.int64) for k, v in labels.items()},
                        "task": env.task_description,
                    })
                    obs, _, terminated, truncated, info = env.step(action)
                    length += 1
                    success = success or info["is_success"]
                    if terminated or truncated:
                        break
                    labels = dict(labels_fn(env))
                dataset.save_episode()
                episodes.append({"episode_index": i, "seed": seed + i, "length": length, "success": bool(success),
                                 **{k: int(v) for k, v in first.items()}})
        finally:
            if dataset is not None:
                dataset.finalize()  # a partial dataset stays readable; root is then not empty

    (root / LABELS_FILE).write_text(json.dumps(
        {**(meta or {}), "task": env.task, "instruction": env.task_description, "fps": fps, "seed": seed,
         "n_episodes": n_episodes, "label_keys": list(keys), "episodes": episodes}, indent=2))
    return root
