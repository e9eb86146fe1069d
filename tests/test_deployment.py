"""Memory under lerobot's inference engines: synchronous, Real-Time Chunking and the async gRPC server,
on `memlens_fake_robot` (its observation at frame t depends on t alone, so every engine sees the same
observation at every frame). Memory must be written at the same frames with the same values as in
the synchronous run, which is how training unrolls it."""

import pickle

import grpc
import pytest
import torch


def _same_writes(reference, run, *, episode, below):
    ref, got = reference.writes(episode, below=below), run.writes(episode, below=below)
    assert [f for f, _ in got] == [f for f, _ in ref], f"{run.engine}: writes at other frames than sync"
    for (frame, a), (_, b) in zip(ref, got, strict=True):
        assert torch.allclose(a, b, atol=1e-5), f"{run.engine}: memory written at frame {frame} differs from sync"


def test_memory_writes_match_the_synchronous_run_under_rtc_and_the_async_server(memory_checkpoint):
    from memlens.deploy.drive import drive_async, drive_rtc, drive_sync

    n, stride = 45, 10  # the tiny checkpoint: n_action_steps = mem_segment_stride = 10
    sync = drive_sync(memory_checkpoint, n_frames=n, episodes=2)
    assert sync.writes(0) and [f for f, _ in sync.writes(0)] == [0, 10, 20, 30, 40]
    rtc = drive_rtc(memory_checkpoint, n_frames=n, episodes=2, queue_threshold=4)
    # 7 actions per chunk, a new chunk only when the queue is empty: chunks at frames 0, 7, 14, ... whatever the
    # timing, so most boundaries get no chunk and the server must write them from boundary-only observations.
    served = drive_async(memory_checkpoint, n_frames=n, episodes=2, actions_per_chunk=7, chunk_size_threshold=0.0)
    assert served.write_s, "the server wrote no boundary from a boundary-only observation"
    for run in (rtc, served):
        # Chunks were also computed off the segment boundaries (so boundary-only writes were exercised) ...
        assert any(f % stride for f in run.chunk_frames), run.chunk_frames
        for episode in (0, 1):  # ... and the second episode started again from the initial memory
            _same_writes(sync, run, episode=episode, below=n - stride)


def test_the_server_binds_loopback_by_default_and_warns_loudly_for_any_other_address():
    import inspect

    from memlens.deploy.server import check_host, serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert check_host("127.0.0.1") is None and check_host("localhost") is None and check_host("::1") is None
    for host in ("0.0.0.0", "192.168.1.20", "gpu-box.local"):
        warning = check_host(host)
        assert warning.startswith("WARNING") and "unpickles" in warning and "SSH tunnel" in warning


@pytest.fixture
def server():
    from lerobot.async_inference.configs import PolicyServerConfig

    from memlens.deploy.drive import free_port
    from memlens.deploy.server import start_server

    port = free_port()
    grpc_server, servicer, _ = start_server(PolicyServerConfig(host="127.0.0.1", port=port))
    yield servicer, f"127.0.0.1:{port}"
    grpc_server.stop(None)


def _stub(address):
    from lerobot.transport import services_pb2_grpc

    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=10)
    return services_pb2_grpc.AsyncInferenceStub(channel)


def test_a_plain_smolvla_request_for_a_memory_checkpoint_is_refused_with_how_to_serve_it(server, memory_checkpoint):
    from lerobot.async_inference.helpers import RemotePolicyConfig
    from lerobot.transport import services_pb2

    servicer, address = server
    stub = _stub(address)
    stub.Ready(services_pb2.Empty())
    specs = RemotePolicyConfig("smolvla", str(memory_checkpoint), {}, 10, "cpu")
    with pytest.raises(grpc.RpcError) as err:
        stub.SendPolicyInstructions(services_pb2.PolicySetup(data=pickle.dumps(specs)))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "smolvla_rmt" in err.value.details() and "memory would be silently dropped" in err.value.details()
    assert servicer.policy is None  # nothing was loaded


def test_ready_resets_memory_and_a_stock_lerobot_client_is_refused_for_a_memory_policy(server, memory_checkpoint):
    from lerobot.async_inference.helpers import TimedObservation
    from lerobot.transport import services_pb2

    from memlens.errors import UserError
    from memlens.runtime import load_policy

    servicer, address = server
    servicer.policy = load_policy(memory_checkpoint).policy
    servicer.policy.memory.set(torch.ones(1, 4, servicer.policy.model.hidden_size))
    servicer.policy.memory.advance(25)
    _stub(address).Ready(services_pb2.Empty())  # a new client connects
    assert servicer.policy.memory.state is None and servicer.policy.memory.frame == 0
    with pytest.raises(UserError, match="memlens robot-client"):
        servicer._enqueue_observation(TimedObservation(timestamp=0.0, timestep=0, observation={}))


def test_lerobot_rollout_builds_the_memory_rtc_engine_for_memory_policies_only(memory_checkpoint, baseline_checkpoint):
    from lerobot.rollout.inference import factory
    from lerobot.rollout.inference.rtc import RTCInferenceEngine

    import memlens.plugin  # noqa: F401  (lerobot-rollout imports it through register_third_party_plugins)
    from memlens.deploy.rtc import MemoryRTCInferenceEngine, install_in_lerobot_factory, rtc_engine_for
    from memlens.runtime import load_policy

    install_in_lerobot_factory()
    assert factory.RTCInferenceEngine is rtc_engine_for
    install_in_lerobot_factory()  # idempotent
    from lerobot.policies.rtc.configuration_rtc import RTCConfig

    class Wrapper:
        robot_type = "memlens_fake_robot"

    for ckpt, expected in [(memory_checkpoint, MemoryRTCInferenceEngine), (baseline_checkpoint, RTCInferenceEngine)]:
        loaded = load_policy(ckpt)
        engine = factory.RTCInferenceEngine(loaded.policy, loaded.preprocessor, loaded.postprocessor, Wrapper(),
                                            RTCConfig(enabled=True, execution_horizon=5), {}, "", 10, "cpu")
        assert type(engine) is expected


def test_lerobot_rollout_runs_a_memory_checkpoint_with_rtc_on_the_fake_robot(memory_checkpoint, tmp_path):
    import re

    from conftest import BIN, run_ok

    proc = run_ok([BIN / "lerobot-rollout", "--strategy.type=base", f"--policy.path={memory_checkpoint}",
                   "--inference.type=rtc", "--inference.rtc.execution_horizon=5", "--robot.type=memlens_fake_robot",
                   "--task=reach the cue", "--duration=3", "--fps=10"], cwd=tmp_path, timeout=300)
    log = proc.stdout + proc.stderr
    assert "memlens: RTC with memory" in log and "Rollout finished" in log
    segments, frames = map(int, re.search(r"memory wrote (\d+) segments over (\d+) executed frames", log).groups())
    assert frames > 10 and (frames - 1) // 10 <= segments <= -(-frames // 10)  # one write per 10 executed frames


def test_an_rtc_chunk_still_computing_when_the_engine_resets_commits_nothing(memory_checkpoint):
    import threading
    import time

    from lerobot.policies.rtc.configuration_rtc import RTCConfig
    from lerobot.utils.feature_utils import hw_to_dataset_features

    from memlens.deploy.config_fake_robot import FakeRobotConfig
    from memlens.deploy.fake_robot import FakeRobot
    from memlens.deploy.rtc import MemoryRTCInferenceEngine
    from memlens.runtime import load_policy

    loaded = load_policy(memory_checkpoint)
    policy, robot = loaded.policy, FakeRobot(FakeRobotConfig())
    started, release = threading.Event(), threading.Event()
    inner = policy.model.sample_actions

    def slow_sample_actions(*args, **kwargs):  # the chunk of frame 0 is computing ...
        started.set()
        release.wait(30)
        return inner(*args, **kwargs)

    policy.model.sample_actions = slow_sample_actions
    commits = []
    policy.memory.listeners.append(commits.append)

    class Wrapper:
        robot_type = robot.name

    rtc = RTCConfig(enabled=True, execution_horizon=5)
    policy.config.rtc_config = rtc
    policy.init_rtc_processor()
    engine = MemoryRTCInferenceEngine(policy, loaded.preprocessor, loaded.postprocessor, Wrapper(), rtc,
                                      hw_to_dataset_features(robot.observation_features, "observation", use_video=False),
                                      "reach the cue", 10.0, "cpu")
    engine.start()
    engine.resume()
    try:
        engine.notify_observation(robot.get_observation())
        assert started.wait(30)
        episode = policy.memory.episode
        engine.reset()  # ... when the episode ends
        engine.pause()
        release.set()
        deadline = time.monotonic() + 30
        while engine.action_queue.qsize() == 0 and time.monotonic() < deadline:  # the old chunk finishes
            time.sleep(0.01)
        assert engine.action_queue.qsize() > 0  # (lerobot still merges its actions: see docs/deployment.md)
        policy.memory.advance(20)
    finally:
        release.set()
        engine.stop()
    assert policy.memory.episode == episode + 1
    assert commits == [] and policy.memory.state is None and policy.memory.last_write is None
