"""Configuration of `smolvla_rmt`: SmolVLA with RMT-style memory tokens.

RMT (Recurrent Memory Transformer, Bulatov et al., arXiv 2207.06881) adds a few learnable memory
tokens to the transformer input; the outputs at those positions become the memory of the next
segment. Here one *segment* is one action-chunk computation of SmolVLA, so memory updates once per
chunk at inference, and training unrolls memory through K consecutive segments of an episode.

With ``num_mem_tokens=0`` and ``n_mem_segments=1`` the policy is exactly lerobot's SmolVLA.
"""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.configs import PreTrainedConfig
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

MEM_INIT_CHOICES = ("random", "zeros", "language")
MAX_MEM_TOKENS = 64
# K when memory is on and `n_mem_segments` is not given (the guide's commands do not give it): one
# segment cannot teach memory anything, so the default unrolls four (4 x 50 frames at SmolVLA's
# n_action_steps=50, about 7 s at 30 fps). Without memory the default stays 1 (exactly SmolVLA).
DEFAULT_MEM_SEGMENTS = 4


@PreTrainedConfig.register_subclass("smolvla_rmt")
@dataclass
class SmolVLARMTConfig(SmolVLAConfig):
    # Memory tokens. 0 disables memory (exactly stock SmolVLA); the guide's presets are
    # 2 light, 4 recommended, 8 enhanced, 16 maximum.
    num_mem_tokens: int = 0
    # Also place write tokens at the end of the prefix (decoder-style RMT): they see the whole prefix,
    # the state token included, and their outputs become the next memory.
    mem_at_end: bool = False
    # When a new chunk is computed, memory tokens may also attend to the previous chunk's prefix
    # keys/values (the KV cache of the previous segment).
    read_mem_from_cache: bool = False
    # Initial memory: "random" (normal, std `mem_init_std`), "zeros", or "language" (rows of the
    # VLM's token-embedding table, scaled like language tokens).
    mem_init: str = "random"
    mem_init_std: float = 0.02

    # Recurrent training: K consecutive segments per sample (default: DEFAULT_MEM_SEGMENTS with memory,
    # 1 without), `mem_segment_stride` frames apart (default: `n_action_steps`, one segment per executed
    # chunk, as at deployment), with backpropagation through at most `mem_bptt_segments` segments
    # (default: K, full BPTT). At deployment memory advances once per `mem_segment_stride` executed frames.
    n_mem_segments: int | None = None
    mem_segment_stride: int | None = None
    mem_bptt_segments: int | None = None
    # Activation memory bounded in K: recompute each segment's activations in the backward pass
    # (`torch.utils.checkpoint` per segment) instead of keeping all K segments' activations. Same
    # gradients; peak training memory about that of one segment, for roughly one extra forward pass.
    mem_checkpoint_segments: bool = False

    # Under `use_amp` at inference: run the prefix pass that writes memory in float32 (the vision encoder and
    # the denoising steps keep reduced precision). The memory is a recurrence, and an all-bfloat16 pass drifts
    # from float32 by 7.8% after 50 updates at full size (29% after 200 on the tiny model); this halves it
    # at full size and removes it on the tiny one (docs/performance.md). false: all in reduced precision.
    # Training under `use_amp` computes every segment in reduced precision either way (K segments, not
    # hundreds).
    amp_memory_fp32: bool = True

    # Gradient accumulation (training only, see memlens/workflows/train_step.py): split every training
    # batch into this many micro-batches, one forward/backward each, one optimiser step per batch. The
    # update equals the whole batch's; activation memory is one micro-batch's. `memlens train
    # --batch_size=2 --batch_chunk=2` is `lerobot-train --batch_size=4 --policy.batch_chunk=2`.
    batch_chunk: int = 1

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.num_mem_tokens, int) or not 0 <= self.num_mem_tokens <= MAX_MEM_TOKENS:
            raise ValueError(
                f"`num_mem_tokens` must be an integer from 0 to {MAX_MEM_TOKENS} (0 disables memory; "
                f"2, 4, 8 or 16 are the usual choices), got {self.num_mem_tokens!r}."
            )
        if self.mem_init not in MEM_INIT_CHOICES:
            raise ValueError(f"`mem_init` must be one of {MEM_INIT_CHOICES}, got {self.mem_init!r}.")
        if not self.mem_init_std > 0:
            raise ValueError(f"`mem_init_std` must be positive, got {self.mem_init_std!r}.")
        if self.n_mem_segments is None:
            self.n_mem_segments = DEFAULT_MEM_SEGMENTS if self.num_mem_tokens > 0 else 1
            self._n_mem_segments_defaulted = self.num_mem_tokens > 0  # said once, when training starts
        if not isinstance(self.n_mem_segments, int) or self.n_mem_segments < 1:
            raise ValueError(
                f"`n_mem_segments` (K, segments unrolled per training sample) must be an integer >= 1, "
                f"got {self.n_mem_segments!r}."
            )
        if self.mem_segment_stride is None:
            self.mem_segment_stride = self.n_action_steps
        if not isinstance(self.mem_segment_stride, int) or self.mem_segment_stride < 1:
            raise ValueError(
                f"`mem_segment_stride` (frames between training segments) must be an integer >= 1, "
                f"got {self.mem_segment_stride!r}; leave it unset to use `n_action_steps`."
            )
        if self.mem_bptt_segments is None:
            self.mem_bptt_segments = self.n_mem_segments
        if not isinstance(self.mem_bptt_segments, int) or not 1 <= self.mem_bptt_segments <= self.n_mem_segments:
            raise ValueError(
                f"`mem_bptt_segments` (truncated BPTT depth) must be an integer from 1 to "
                f"`n_mem_segments`={self.n_mem_segments}, got {self.mem_bptt_segments!r}."
            )
        if not isinstance(self.batch_chunk, int) or self.batch_chunk < 1:
            raise ValueError(
                f"`batch_chunk` (micro-batches per optimiser step) must be an integer >= 1, got {self.batch_chunk!r}."
            )
        if self.num_mem_tokens > 0 and self.mem_segment_stride % self.n_action_steps:
            raise ValueError(
                f"`mem_segment_stride`={self.mem_segment_stride} is not a multiple of `n_action_steps`="
                f"{self.n_action_steps}: memory advances once per `mem_segment_stride` executed frames (as in "
                f"training), and `select_action` computes a chunk only every `n_action_steps` frames, so some "
                f"memory boundaries would pass with no computation on their observation. Set `n_action_steps` to "
                f"a divisor of {self.mem_segment_stride} (or train with a stride that `n_action_steps` divides)."
            )
        if self.num_mem_tokens > 0 and self.prefix_length > 0:
            raise ValueError(
                f"`prefix_length` must be -1 (no fixed-length prefix padding) when memory is on; got "
                f"`prefix_length`={self.prefix_length} with `num_mem_tokens`={self.num_mem_tokens}."
            )
        if self.num_mem_tokens > 0 and self.adapt_to_pi_aloha:
            raise ValueError("`adapt_to_pi_aloha=True` is not supported together with `num_mem_tokens` > 0.")

    def validate_features(self) -> None:
        """lerobot's checks, then: the state and action fit SmolVLA's zero-padded `max_state_dim` /
        `max_action_dim` (a wider one fails deep in torch with `mat1 and mat2 shapes cannot be multiplied`)."""
        super().validate_features()
        from memlens.errors import InvalidInputError

        for kind, features, limit, name in (
            ("state", self.input_features, self.max_state_dim, "max_state_dim"),
            ("action", self.output_features, self.max_action_dim, "max_action_dim"),
        ):
            for key, feature in (features or {}).items():
                width = feature.shape[-1] if feature.shape else 0
                if feature.type.name == kind.upper() and width > limit:
                    raise InvalidInputError(
                        f"`{key}` has {width} values but the policy's `{name}` is {limit}: SmolVLA pads {kind} "
                        f"vectors up to `{name}` and cannot take a wider one. Train with "
                        f"--policy.{name}={max(32, width)} (or more), or use a dataset whose {kind} has at most "
                        f"{limit} values."
                    )

    def training_notices(self) -> list[str]:
        """The lines said once when training starts: a K the user did not choose, an option that does nothing."""
        notices = [n for n in (self.training_notice(),) if n]
        if self.mem_checkpoint_segments and self.n_mem_segments == 1:
            notices.append(
                "memlens: mem_checkpoint_segments=true with n_mem_segments=1: there is one segment, whose activations "
                "the backward pass needs anyway, so nothing is recomputed; training runs without checkpointing."
            )
        return notices

    @property
    def checkpoints_segments(self) -> bool:
        """Whether training recomputes segment activations in the backward pass (the option, with K > 1)."""
        return self.mem_checkpoint_segments and self.n_mem_segments > 1

    def training_notice(self) -> str | None:
        """The one line said when training starts with a K the user did not choose, or None."""
        if self.num_mem_tokens > 0 and self.n_mem_segments == 1:
            return (
                f"memlens: n_mem_segments=1 with num_mem_tokens={self.num_mem_tokens}: every training sample is one "
                "segment, so the memory tokens train as extra prefix tokens and cannot learn to carry anything "
                f"across segments; set --policy.n_mem_segments>=2 (unset, it is {DEFAULT_MEM_SEGMENTS})."
            )
        if getattr(self, "_n_mem_segments_defaulted", False):
            return (
                f"memlens: n_mem_segments not set with num_mem_tokens={self.num_mem_tokens}: training unrolls "
                f"K={self.n_mem_segments} consecutive segments {self.mem_segment_stride} frames apart per sample "
                f"({self.n_mem_segments * self.mem_segment_stride} frames); set --policy.n_mem_segments to cover "
                "the span your task must remember."
            )
        return None

    @property
    def uses_memory(self) -> bool:
        return self.num_mem_tokens > 0

    @property
    def segment_offsets(self) -> list[int]:
        """Frame offset of each training segment relative to the sampled frame: [-(K-1)*s, ..., -s, 0]."""
        k, s = self.n_mem_segments, self.mem_segment_stride
        return [-(k - 1 - i) * s for i in range(k)]

    @property
    def observation_delta_indices(self) -> list:
        return self.segment_offsets

    @property
    def action_delta_indices(self) -> list:
        # One contiguous window covering every segment's own chunk: segment i reads
        # actions[(i * s) : (i * s) + chunk_size] of this window.
        return list(range(self.segment_offsets[0], self.chunk_size))
