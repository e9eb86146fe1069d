"""Drive a checkpoint through each of lerobot's inference engines on `memlens_fake_robot`, recording
every memory commit (frame, value) and every chunk computation's latency.

Used by the tests (memory writes must be identical across engines) and by `bench/bench_deployment.py`
(latency of a memory chunk against a no-memory chunk per engine). The engines are lerobot's own:
`SyncInferenceEngine`, `RTCInferenceEngine` (through `MemoryRTCInferenceEngine`) and the gRPC
`PolicyServer` / `RobotClient` pair (through memlens's subclasses) on 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import torch

from memlens.deploy.config_fake_robot import FakeRobotConfig
from memlens.deploy.fake_robot import FakeRobot


@dataclass
class EngineRun:
    """What one drive recorded: commits `[(episode, frame, memory [M, H] of batch row 0)]`, chunk
    computation latencies (s), frames executed."""

    engine: str
    commits: list[tuple[int, int, torch.Tensor]] = field(default_factory=list)
    chunk_s: list[float] = field(default_factory=list)
    chunk_frames: list[int] = field(default_factory=list)  # the observation frame of each chunk computation
    write_s: list[float] = field(default_factory=list)  # prefix-only boundary writes (RTC, async)
    frames: int = 0

    def writes(self, episode: int = 0, below: int | None = None) -> list[tuple[int, torch.Tensor]]:
        """(frame, memory) of the `episode`-th episode that committed anything, frames below `below`."""
        order = list(dict.fromkeys(e for e, _, _ in self.commits))
        if episode >= len(order):
            return []
        return [(f, m) for e, f, m in self.commits if e == order[episode] and (below is None or f < below)]


def _record(loaded, run: EngineRun):
    """Attach recorders to the policy: memory commits and the time of every chunk computation."""
    policy = loaded.policy
    policy.memory.listeners.append(lambda c: run.commits.append((c.episode, c.frame, c.memory[0].float().cpu().clone())))
    inner = policy._get_action_chunk

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            run.chunk_s.append(time.perf_counter() - t0)
            if policy.memory.last_computed is not None:
                run.chunk_frames.append(policy.memory.last_computed.frame)

    policy._get_action_chunk = timed
    inner_write = policy.write_memory

    def timed_write(*args, **kwargs):
        t0 = time.perf_counter()
        wrote = inner_write(*args, **kwargs)
        if wrote:
            run.write_s.append(time.perf_counter() - t0)
        return wrote

    policy.write_memory = timed_write


def _features(robot: FakeRobot) -> tuple[dict, dict]:
    from lerobot.utils.feature_utils import hw_to_dataset_features

    obs = hw_to_dataset_features(robot.observation_features, "observation", use_video=False)
    act = hw_to_dataset_features(robot.action_features, "action", use_video=False)
    return obs, {**obs, **act}


def drive_sync(ckpt, *, n_frames: int, task: str = "reach the cue", episodes: int = 1) -> EngineRun:
    """lerobot's `SyncInferenceEngine`: `select_action` on every frame."""
    from lerobot.rollout.inference.sync import SyncInferenceEngine
    from lerobot.utils.feature_utils import build_dataset_frame

    from memlens.runtime import load_policy

    loaded, run = load_policy(ckpt), EngineRun("sync")
    _record(loaded, run)
    robot = FakeRobot(FakeRobotConfig())
    _, ds_features = _features(robot)
    engine = SyncInferenceEngine(loaded.policy, loaded.preprocessor, loaded.postprocessor, ds_features,
                                 list(robot.action_features), task, "cpu", robot.name)
    engine.start()
    for _ in range(episodes):
        engine.reset()
        robot.new_episode()
        for _ in range(n_frames):
            frame = build_dataset_frame(ds_features, robot.get_observation(), prefix="observation")
            action = engine.get_action(frame)
            robot.send_action(dict(zip(robot.action_features, action.tolist(), strict=True)))
            run.frames += 1
    engine.stop()
    return run


def drive_rtc(ckpt, *, n_frames: int, task: str = "reach the cue", episodes: int = 1, execution_horizon: int = 5,
              queue_threshold: int = 4, fps: float = 10.0, timeout_s: float = 120.0) -> EngineRun:
    """lerobot's RTC engine (`MemoryRTCInferenceEngine`): chunks predicted ahead in its background thread;
    the control loop notifies the frame's observation and executes the next action once one is queued."""
    from lerobot.policies.rtc.configuration_rtc import RTCConfig

    from memlens.deploy.rtc import MemoryRTCInferenceEngine
    from memlens.runtime import load_policy

    loaded, run = load_policy(ckpt), EngineRun("rtc")
    rtc = RTCConfig(enabled=True, execution_horizon=execution_horizon)
    loaded.policy.config.rtc_config = rtc
    loaded.policy.init_rtc_processor()
    _record(loaded, run)
    robot = FakeRobot(FakeRobotConfig())
    hw_features, _ = _features(robot)

    class _Wrapper:  # what the engine reads of lerobot's ThreadSafeRobot
        robot_type = robot.name

    engine = MemoryRTCInferenceEngine(loaded.policy, loaded.preprocessor, loaded.postprocessor, _Wrapper(), rtc,
                                      hw_features, task, fps, "cpu", rtc_queue_threshold=queue_threshold)
    engine.start()
    try:
        for _ in range(episodes):
            engine.pause()
            engine.reset()
            robot.new_episode()
            engine.resume()
            for _ in range(n_frames):
                engine.notify_observation(robot.get_observation())
                deadline = time.monotonic() + timeout_s
                while (action := engine.get_action(None)) is None:
                    if engine.failed or time.monotonic() > deadline:
                        raise RuntimeError(f"RTC engine produced no action for frame {robot.frame}")
                    time.sleep(0.001)
                robot.send_action(dict(zip(robot.action_features, action.tolist(), strict=True)))
                run.frames += 1
    finally:
        engine.stop()
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drive_async(ckpt, *, n_frames: int, task: str = "reach the cue", episodes: int = 1, actions_per_chunk: int = 10,
                chunk_size_threshold: float = 0.5, fps: int = 200, timeout_s: float = 180.0) -> EngineRun:
    """lerobot's async policy server and robot client over gRPC on 127.0.0.1 (memlens's subclasses); the
    client runs `episodes` episodes of `n_frames` executed frames."""
    from lerobot.async_inference.configs import PolicyServerConfig

    from memlens.deploy.client import MemoryRobotClient, MemoryRobotClientConfig
    from memlens.deploy.server import start_server

    run = EngineRun("async")
    port = free_port()
    server, servicer, _ = start_server(PolicyServerConfig(host="127.0.0.1", port=port, fps=fps,
                                                          inference_latency=0.0, obs_queue_timeout=0.5))
    recorded = threading.Event()

    def record(srv):  # the server loads the policy when the client asks
        from memlens.runtime import LoadedPolicy

        _record(LoadedPolicy(srv.policy, srv.preprocessor, srv.postprocessor, ckpt), run)
        recorded.set()

    servicer.on_policy_loaded.append(record)
    config = MemoryRobotClientConfig(policy_type="smolvla_rmt", pretrained_name_or_path=str(ckpt),
                                     robot=FakeRobotConfig(), actions_per_chunk=actions_per_chunk, task=task,
                                     server_address=f"127.0.0.1:{port}", fps=fps,
                                     chunk_size_threshold=chunk_size_threshold, episode_frames=n_frames)
    client = MemoryRobotClient(config)
    threads = []
    try:
        if not client.start():
            raise RuntimeError("the robot client could not reach the policy server")
        recorded.wait(timeout_s)
        threads = [threading.Thread(target=client.receive_actions, daemon=True),
                   threading.Thread(target=client.control_loop, args=(task,), daemon=True)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout_s
        while client.episode < episodes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"async run stalled at episode {client.episode}, frame {client.frame}")
            time.sleep(0.01)
        run.frames = episodes * n_frames
    finally:
        client.shutdown_event.set()
        for t in threads:
            t.join(timeout=5)
        client.stop()
        servicer.stop()
        server.stop(None)
    return run
