"""`memlens serve`: lerobot's async policy server, serving `smolvla_rmt` with memory that advances as in training.

lerobot's `PolicyServer` accepts only the policy types in its own list, never loads plugins, runs one
chunk per accepted observation (observations are filtered by similarity) and does not reset the
policy when a new client says `Ready`. `MemoryPolicyServer` is that server with:

* `smolvla_rmt` accepted (memlens registers it), and a `smolvla` request for a memory checkpoint
  refused with how to serve it (lerobot would load it as plain SmolVLA and drop the memory);
* memory reset on every `Ready` and on every new episode of memlens's robot client
  (`memlens robot-client`, `memlens.deploy.client`), whose observations carry their executed frame;
* memory written on every boundary observation the client sends, also those that ask for no chunk,
  and each chunk computed at its observation's frame (`memlens.policy.memory`);
* actions tagged with their episode, so the client drops a chunk of an episode that has ended.

Security: lerobot's transport unpickles whatever a client sends (`pickle.loads(request.data)`), so
anyone who can reach the port can run code on this machine. `serve` binds 127.0.0.1 unless told
otherwise and warns loudly for any other address; reach a robot through an SSH tunnel or a private
network (docs/deployment.md).
"""

from __future__ import annotations

import ipaddress
import logging
import pickle  # nosec - the same transport as lerobot's server; see the module docstring
from concurrent import futures

import grpc
from lerobot.async_inference import policy_server as lerobot_server
from lerobot.async_inference.configs import PolicyServerConfig
from lerobot.async_inference.helpers import raw_observation_to_observation
from lerobot.async_inference.policy_server import PolicyServer
from lerobot.transport import services_pb2_grpc

import memlens.plugin  # noqa: F401  (registers smolvla_rmt)
from memlens.deploy.boundaries import BoundaryObservations
from memlens.deploy.messages import MemoryTimedAction, MemoryTimedObservation
from memlens.errors import UserError
from memlens.policy import memory_tokens

logger = logging.getLogger(__name__)

MEMORY_TYPE = "smolvla_rmt"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def checkpoint_type_of(path: str) -> str | None:
    """The `type` in a checkpoint's config.json (local directory or Hub cache), or None if unreadable."""
    from memlens.policy.finetune import checkpoint_type, resolve_checkpoint_dir

    try:
        return checkpoint_type(resolve_checkpoint_dir(path))
    except (FileNotFoundError, OSError):
        return None


def refusal_for(policy_type: str, path: str) -> str | None:
    """Why the server refuses to load `path` as `policy_type`, or None when it may."""
    if policy_type == "smolvla" and checkpoint_type_of(path) == MEMORY_TYPE:
        return (
            f"{path} is a smolvla_rmt checkpoint (SmolVLA with memory tokens), but the client asked for policy type "
            "'smolvla': loaded as plain SmolVLA, its memory would be silently dropped. Start the robot client with "
            "--policy_type=smolvla_rmt (`memlens robot-client ...`) and serve it with `memlens serve`."
        )
    return None


class MemoryPolicyServer(PolicyServer):
    """lerobot's `PolicyServer` (same config) with memory; see the module docstring."""

    def __init__(self, config: PolicyServerConfig):
        super().__init__(config)
        if MEMORY_TYPE not in lerobot_server.SUPPORTED_POLICIES:  # the list lerobot's server checks
            lerobot_server.SUPPORTED_POLICIES.append(MEMORY_TYPE)
        self._boundaries = BoundaryObservations()  # frame -> (client episode, observation)
        self._episode: int | None = None
        self._current: MemoryTimedObservation | None = None
        self.on_policy_loaded: list = []  # callables(server), run after each SendPolicyInstructions

    @property
    def uses_memory(self) -> bool:
        return self.policy is not None and bool(memory_tokens(self.policy.config))

    def _reset_memory(self, episode: int | None = None) -> None:
        self._boundaries.clear()
        self._episode = episode
        if self.policy is not None:
            self.policy.reset()  # a chunk still computing for the old episode commits nothing
        with self._predicted_timesteps_lock:
            self._predicted_timesteps = set()  # frames restart at 0 in a new episode
        self.last_processed_obs = None

    # -- gRPC methods ------------------------------------------------------------------------------
    def Ready(self, request, context):  # noqa: N802
        reply = super().Ready(request, context)
        self._reset_memory()
        return reply

    def SendPolicyInstructions(self, request, context):  # noqa: N802
        specs = pickle.loads(request.data)  # nosec - lerobot's transport (module docstring)
        reason = refusal_for(getattr(specs, "policy_type", ""), str(getattr(specs, "pretrained_name_or_path", "")))
        if reason:
            self.logger.error(reason)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, reason)
        reply = super().SendPolicyInstructions(request, context)
        self._reset_memory()
        for callback in self.on_policy_loaded:
            callback(self)
        return reply

    # -- observations and chunks -------------------------------------------------------------------
    def _enqueue_observation(self, obs) -> bool:
        if not self.uses_memory:
            return super()._enqueue_observation(obs)
        if not isinstance(obs, MemoryTimedObservation):
            message = (
                "this server holds a memory policy (smolvla_rmt), whose memory advances once per segment of executed "
                "frames, but the observation came from lerobot's robot client, which sends neither the executed frame "
                "nor every segment boundary. Run the robot side with `memlens robot-client` (the same flags as "
                "lerobot's robot_client, plus --mem_segment_stride)."
            )
            self.logger.error(message)
            raise UserError(message)
        if obs.episode != self._episode:
            self._reset_memory(obs.episode)
        if obs.boundary:
            self._boundaries.keep(obs.frame, obs.episode, obs)
        if not obs.for_action:
            return False
        return super()._enqueue_observation(obs)

    def _predict_action_chunk(self, observation_t):
        if not isinstance(observation_t, MemoryTimedObservation):
            return super()._predict_action_chunk(observation_t)
        if self.uses_memory and observation_t.episode != self._episode:
            return []  # queued before its episode ended: no chunk, no memory
        self._current = observation_t
        actions = super()._predict_action_chunk(observation_t)
        return [MemoryTimedAction(a.timestamp, a.timestep, a.action, episode=observation_t.episode) for a in actions]

    def _get_action_chunk(self, observation):
        current = self._current
        if self.uses_memory and current is not None:
            self.write_owed_memory(before=current.frame)
            self.policy.memory.seek(current.frame)  # the chunk below is computed at this observation's frame
        return super()._get_action_chunk(observation)

    def write_owed_memory(self, *, before: int) -> int:
        """Write the memory of every boundary observation older than frame `before` that no chunk wrote."""
        return self._boundaries.write_owed(self.policy, before=before, episode=self._episode, to_batch=self._to_batch)

    def _to_batch(self, obs: MemoryTimedObservation) -> dict:
        """A received observation through the same steps as lerobot's `_predict_action_chunk`."""
        batch = raw_observation_to_observation(obs.get_observation(), self.lerobot_features, self.policy_image_features)
        return self.preprocessor(batch)


def check_host(host: str, *, allow_remote: bool = False) -> str | None:
    """A warning for a non-loopback bind address (None for loopback)."""
    try:
        loopback = host in LOOPBACK or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"WARNING: binding the policy server to {host}, not 127.0.0.1. lerobot's async transport unpickles whatever a "
        "client sends, so anyone who can reach this port can run code on this machine. Prefer 127.0.0.1 with an SSH "
        "tunnel from the robot (ssh -N -L 8080:127.0.0.1:8080 gpu-host) or a private network you trust "
        "(docs/deployment.md)."
    )


def start_server(config: PolicyServerConfig, *, max_workers: int = 4) -> tuple[grpc.Server, MemoryPolicyServer, int]:
    """Start a `MemoryPolicyServer` on `config.host:config.port` (port 0: a free one); returns (grpc server,
    servicer, port). The caller stops it with `server.stop(None)`."""
    servicer = MemoryPolicyServer(config)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    services_pb2_grpc.add_AsyncInferenceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    if port == 0:
        raise UserError(f"could not bind the policy server to {config.host}:{config.port}: the address is in use or "
                        "not on this machine. Choose another --port (or --host).")
    server.start()
    return server, servicer, port


def serve(*, host: str = "127.0.0.1", port: int = 8080, fps: int = 30, inference_latency: float = 1 / 30,
          obs_queue_timeout: float = 2.0, echo=print) -> None:
    """Run the server until interrupted."""
    warning = check_host(host)
    if warning:
        logger.warning(warning)
        echo(warning)
    config = PolicyServerConfig(host=host, port=port, fps=fps, inference_latency=inference_latency,
                                obs_queue_timeout=obs_queue_timeout)
    server, _, bound = start_server(config)
    echo(f"memlens policy server on {host}:{bound} (policy types: {', '.join(lerobot_server.SUPPORTED_POLICIES)}); "
         "Ctrl-C stops it.")
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(None)
