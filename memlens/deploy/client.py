"""`memlens robot-client`: lerobot's async robot client, telling the server what memory needs.

Same flags and behaviour as `python -m lerobot.async_inference.robot_client`, plus:

* every observation carries the exact executed frame and the episode (`MemoryTimedObservation`);
  its `timestep` is that frame, so the first action of the returned chunk is the one for the frame
  it was computed on (lerobot's client sends `max(last action, 0)`, one frame behind after the start);
* the observation of every memory boundary (`--mem_segment_stride` frames apart, read from the
  checkpoint when it is a local directory) is sent even when the action queue is full: the server
  writes memory from it without computing a chunk;
* `new_episode()` (or `--episode_frames=N`, a new episode every N executed frames) starts a new
  episode: the action queue is cleared, the frame restarts at 0, and the server resets its memory;
  actions of an older episode that arrive late are dropped. A robot with a `new_episode()` method (a
  simulator, `memlens_fake_robot`) is asked to reset its scene then.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.async_inference.configs import RobotClientConfig
from lerobot.async_inference.robot_client import RobotClient

from memlens.deploy.messages import MemoryTimedAction, MemoryTimedObservation
from memlens.errors import UserError


@dataclass
class MemoryRobotClientConfig(RobotClientConfig):
    # Frames between memory writes (the checkpoint's `mem_segment_stride`); 0: read it from the checkpoint's
    # config.json when `pretrained_name_or_path` is a local directory.
    mem_segment_stride: int = field(default=0, metadata={"help": "frames between memory writes"})
    # Start a new episode every N executed frames (0: never; call MemoryRobotClient.new_episode()).
    episode_frames: int = field(default=0, metadata={"help": "frames per episode (0: one endless episode)"})


def resolve_stride(config: MemoryRobotClientConfig) -> int:
    if config.mem_segment_stride > 0:
        return config.mem_segment_stride
    cfg_file = Path(config.pretrained_name_or_path) / "config.json"
    if cfg_file.is_file():
        data = json.loads(cfg_file.read_text())
        if data.get("type") != "smolvla_rmt" or not data.get("num_mem_tokens"):
            return 0
        return int(data.get("mem_segment_stride") or data.get("n_action_steps"))
    if config.policy_type != "smolvla_rmt":
        return 0
    raise UserError(
        f"cannot tell this memory policy's segment stride: {config.pretrained_name_or_path!r} is not a checkpoint "
        "directory on this machine. Pass --mem_segment_stride=N, the checkpoint's `mem_segment_stride` (its "
        "config.json; by default its `n_action_steps`)."
    )


class MemoryRobotClient(RobotClient):
    """lerobot's `RobotClient` that stamps observations with their frame and episode (module docstring)."""

    def __init__(self, config: MemoryRobotClientConfig):
        self.stride = resolve_stride(config)
        super().__init__(config)
        self.frame = 0
        self.episode = 0
        self._boundary_sent = -1
        self._wants_chunk = True
        self._episode_lock = threading.Lock()

    # -- episodes ----------------------------------------------------------------------------------
    def new_episode(self) -> None:
        """End the current episode: clear the queue, restart at frame 0; the server resets its memory."""
        with self._episode_lock, self.action_queue_lock:
            self.episode += 1
            self.frame = 0
            self._boundary_sent = -1
            while not self.action_queue.empty():
                self.action_queue.get_nowait()
            with self.latest_action_lock:
                self.latest_action = -1
            reset_scene = getattr(self.robot, "new_episode", None)  # robots that can reset their scene (simulators)
            if callable(reset_scene):
                reset_scene()
        self.must_go.set()

    # -- control loop (lerobot's, with the frame counted) ------------------------------------------
    def control_loop_action(self, verbose: bool = False):
        performed = super().control_loop_action(verbose)
        self.frame += 1
        if self.config.episode_frames and self.frame >= self.config.episode_frames:
            self.new_episode()
        return performed

    def _is_boundary(self) -> bool:
        return self.stride > 0 and self.frame % self.stride == 0 and self.frame != self._boundary_sent

    def _ready_to_send_observation(self):
        self._wants_chunk = super()._ready_to_send_observation()
        return self._wants_chunk or self._is_boundary()

    def send_observation(self, obs) -> bool:
        boundary = self._is_boundary()
        stamped = MemoryTimedObservation(
            timestamp=obs.timestamp, timestep=self.frame, observation=obs.observation,
            must_go=obs.must_go and self._wants_chunk, frame=self.frame, episode=self.episode,
            boundary=boundary, for_action=self._wants_chunk,
        )
        sent = super().send_observation(stamped)
        if sent and boundary:
            self._boundary_sent = self.frame
        return sent

    def _aggregate_action_queues(self, incoming_actions, aggregate_fn=None):
        current = [a for a in incoming_actions if not isinstance(a, MemoryTimedAction) or a.episode == self.episode]
        if current:
            super()._aggregate_action_queues(current, aggregate_fn)


def run_client(args: list[str]) -> None:
    """`memlens robot-client ARGS`: parse lerobot's robot-client flags (plus memlens's) and run until Ctrl-C."""
    import draccus

    import memlens.plugin  # noqa: F401  (robot and policy types)

    try:
        config = draccus.parse(config_class=MemoryRobotClientConfig, args=args)
    except SystemExit as exc:
        raise UserError("invalid robot-client arguments (see `memlens robot-client --help`, which takes "
                        "lerobot's robot_client flags plus --mem_segment_stride and --episode_frames).") from exc
    client = MemoryRobotClient(config)
    if not client.start():
        raise UserError(f"could not reach the policy server at {config.server_address}: start it with `memlens serve` "
                        "(on the robot, or through an SSH tunnel to the GPU machine: docs/deployment.md).")
    receiver = threading.Thread(target=client.receive_actions, daemon=True)
    receiver.start()
    try:
        client.control_loop(task=config.task)
    except KeyboardInterrupt:
        pass
    finally:
        client.stop()
        receiver.join(timeout=5)
