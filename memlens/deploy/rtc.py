"""lerobot's Real-Time Chunking engine with memory that advances as in training.

`lerobot.rollout.inference.RTCInferenceEngine` predicts chunks in a background thread whenever its
action queue runs low, on whatever observation is newest, and merges them into the queue; it knows
nothing of frames. A memory policy needs three things from it (see `memlens.policy.memory`):

* the executed-frame clock: every action `get_action` hands out is one executed frame;
* the frame of the observation each chunk is computed on: the observation holder the RTC thread
  reads is tagged with the frame it was notified at;
* a memory write on every segment boundary: boundary observations are kept when notified, and
  before each chunk the RTC thread writes the memory of every boundary it did not compute a chunk
  on (`policy.write_memory`, a prefix-only pass), in order.

`reset()` starts a new episode of the memory, so a chunk still computing for the old episode
commits nothing. Everything else is lerobot's engine, unchanged.
"""

from __future__ import annotations

import inspect
import logging

import torch
from lerobot.policies.utils import prepare_observation_for_inference
from lerobot.rollout.inference.rtc import RTCInferenceEngine
from lerobot.utils.feature_utils import build_dataset_frame

from memlens.deploy.boundaries import BoundaryObservations
from memlens.policy import memory_tokens

logger = logging.getLogger(__name__)


class LerobotDriftError(RuntimeError):
    """lerobot's engine no longer looks the way memlens relies on."""


def check_rtc_internals() -> None:
    """Fail loudly at construction if lerobot's RTC engine changed what this wrapper relies on."""
    problems = []
    for name in ("_rtc_loop", "notify_observation", "get_action", "reset"):
        if not callable(getattr(RTCInferenceEngine, name, None)):
            problems.append(f"RTCInferenceEngine.{name} is gone")
    if not problems:
        loop = inspect.getsource(RTCInferenceEngine._rtc_loop)
        for needle in ('self._obs_holder.get("obs")', "self._policy.predict_action_chunk(",
                       "build_dataset_frame(self._hw_features, obs", "prepare_observation_for_inference("):
            if needle not in loop:
                problems.append(f"RTCInferenceEngine._rtc_loop no longer contains `{needle}`")
    if problems:
        raise LerobotDriftError(
            "memlens's RTC memory engine relies on lerobot's RTCInferenceEngine internals, which changed: "
            + "; ".join(problems) + ". Pin lerobot 0.6.x or update memlens.deploy.rtc."
        )


class _FrameTaggedObs(dict):
    """lerobot's `{"obs": ..., "robot_type": ...}` holder; remembers the frame of the observation the
    RTC thread read last (it reads under the engine's `_obs_lock`, as `notify_observation` writes)."""

    def __init__(self, data=()):
        super().__init__(data)
        self.frame = 0
        self.read_frame = 0

    def get(self, key, default=None):
        if key == "obs":
            self.read_frame = self.frame
        return super().get(key, default)


class _EngineFacingPolicy:
    """The policy as lerobot's RTC thread sees it: before each chunk, the owed boundary writes; then the
    chunk at the frame of the observation it was computed on. Everything else is the policy's own."""

    def __init__(self, policy, engine: MemoryRTCInferenceEngine):
        self.__dict__.update(_policy=policy, _engine=engine)

    def __getattr__(self, name):
        return getattr(self._policy, name)

    def predict_action_chunk(self, batch, **kwargs):
        frame = self._engine._obs_holder.read_frame
        self._engine.write_owed_memory(before=frame)
        return self._policy.predict_action_chunk(batch, frame=frame, **kwargs)


class MemoryRTCInferenceEngine(RTCInferenceEngine):
    """`RTCInferenceEngine` (same arguments) for `smolvla_rmt`: memory writes at the same frames, with
    the same values, as synchronous `select_action` on the same observations."""

    def __init__(self, policy, *args, **kwargs):
        check_rtc_internals()
        self.memory_policy = policy
        self._boundaries = BoundaryObservations()  # frame -> (memory episode, raw observation)
        super().__init__(_EngineFacingPolicy(policy, self), *args, **kwargs)
        logger.info("memlens: RTC with memory: memory is written once per %d executed frames, as in training",
                    policy.memory.stride)

    def stop(self) -> None:
        super().stop()
        memory = self.memory_policy.memory
        logger.info("memlens: memory wrote %d segments over %d executed frames of the last episode (%d by "
                    "prefix-only passes on boundaries no chunk was computed on)", memory.segments, memory.frame,
                    self._boundaries.written)

    @property
    def _obs_holder(self) -> _FrameTaggedObs:
        return self.__dict__["_frame_tagged_obs"]

    @_obs_holder.setter
    def _obs_holder(self, value: dict) -> None:
        self.__dict__["_frame_tagged_obs"] = value if isinstance(value, _FrameTaggedObs) else _FrameTaggedObs(value)

    @property
    def uses_memory(self) -> bool:
        return bool(memory_tokens(self.memory_policy.config))

    def notify_observation(self, obs: dict) -> None:
        memory = self.memory_policy.memory
        with self._obs_lock:
            frame = memory.frame
            self._obs_holder["obs"] = obs
            self._obs_holder.frame = frame
        if self.uses_memory and frame % memory.stride == 0 and frame >= memory.next_boundary:
            self._boundaries.keep(frame, memory.episode, obs)

    def get_action(self, obs_frame: dict | None) -> torch.Tensor | None:
        action = super().get_action(obs_frame)
        if action is not None:
            self.memory_policy.memory.advance(1)  # handed to the robot: one executed frame
        return action

    def reset(self) -> None:
        self._boundaries.clear()  # writes are counted per episode, like memory.segments
        super().reset()  # policy.reset(): a new memory episode; the clock restarts at frame 0

    def write_owed_memory(self, *, before: int) -> int:
        """Write the memory of every kept boundary observation older than frame `before` that no chunk
        wrote (RTC thread, in frame order). Returns how many were written."""
        return self._boundaries.write_owed(self.memory_policy, before=before,
                                           episode=self.memory_policy.memory.episode, to_batch=self._to_batch)

    def _to_batch(self, obs: dict) -> dict:
        """A raw observation through the same steps as lerobot's RTC loop."""
        batch = build_dataset_frame(self._hw_features, obs, prefix="observation")
        batch = prepare_observation_for_inference(batch, torch.device(self._device), self._task,
                                                  self._robot.robot_type)
        batch["task"] = [self._task]
        return self._preprocessor(batch)


def rtc_engine_for(policy, *args, **kwargs) -> RTCInferenceEngine:
    """The RTC engine lerobot's factory should build for `policy`: memlens's for memory policies, lerobot's
    own for everything else (same arguments)."""
    if memory_tokens(policy.config) and hasattr(policy, "memory"):
        return MemoryRTCInferenceEngine(policy, *args, **kwargs)
    return RTCInferenceEngine(policy, *args, **kwargs)


def install_in_lerobot_factory() -> None:
    """Make `lerobot.rollout.inference.factory.create_inference_engine` (what `lerobot-rollout
    --inference.type=rtc` calls) build `rtc_engine_for(policy, ...)`. Idempotent; memory-free policies
    get lerobot's engine unchanged."""
    from lerobot.rollout.inference import factory

    if getattr(factory.RTCInferenceEngine, "__name__", "") != rtc_engine_for.__name__:
        check_rtc_internals()
        factory.RTCInferenceEngine = rtc_engine_for
