"""What a capture records: one `CaptureConfig`, built by the CLI, used by dataset and live captures alike
and stored in the trace store as the capture's provenance (with the checkpoint's identity)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from importlib.metadata import version

from memlens.capture.hooks import CaptureHooks
from memlens.capture.sites import Site, active_sites
from memlens.errors import UserError
from memlens.policy import memory_tokens
from memlens.policy.precision import compute_precision
from memlens.runtime.checkpoint import LoadedPolicy, load_policy, weights_sha256


@dataclass(frozen=True)
class CaptureConfig:
    """Capture options.

    attention: attention summaries per prefix group; full_attention: full prefix attention maps (implies
    attention); hidden: hidden states at the memory positions per layer; attention_only: accept a
    checkpoint without memory (attention and actions only; implies attention); batch_episodes: episodes
    run together; device: cpu or cuda."""

    attention: bool = False
    full_attention: bool = False
    hidden: bool = False
    attention_only: bool = False
    batch_episodes: int = 1
    device: str = "cpu"

    def __post_init__(self):
        if self.batch_episodes < 1:
            raise UserError(f"--batch-episodes must be at least 1, got {self.batch_episodes}.")
        if self.full_attention or self.attention_only:
            object.__setattr__(self, "attention", True)

    @classmethod
    def of(cls, config: CaptureConfig | None, options: dict) -> CaptureConfig:
        """`config`, or one built from keyword options (names as the fields); not both."""
        if config is not None and options:
            raise TypeError(f"pass a CaptureConfig or capture options, not both (got {sorted(options)}).")
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown capture option(s) {unknown}; CaptureConfig has {[f.name for f in fields(cls)]}.")
        return config if config is not None else cls(**options)

    def hooks(self, policy) -> CaptureHooks:
        return CaptureHooks(policy, attention=self.attention, full_attention=self.full_attention, hidden=self.hidden)

    def sites(self) -> dict[str, Site]:
        return active_sites(attention=self.attention, full_attention=self.full_attention, hidden=self.hidden)

    def load(self, ckpt) -> LoadedPolicy:
        """Load the checkpoint to capture; one without memory is refused unless `attention_only`."""
        loaded = load_policy(ckpt, device=self.device)
        if not memory_tokens(loaded.config) and not self.attention_only:
            raise UserError(
                f"checkpoint {loaded.path} has no memory tokens (type {loaded.config.type}, num_mem_tokens=0): "
                "there is no memory state to capture. Capture a memory checkpoint, or pass --attention-only to "
                "record the attention summaries and actions of this one (for example as a baseline)."
            )
        return loaded

    def provenance(self, loaded: LoadedPolicy, source: dict) -> dict:
        """What the trace store records of this capture: checkpoint identity, policy config, versions,
        these options and the `source` (`{"dataset": ...}` or `{"env": ...}`)."""
        cfg = loaded.config
        compute = compute_precision(cfg, self.device)
        return {
            "checkpoint": str(loaded.path),
            "checkpoint_sha256": weights_sha256(loaded),
            "policy_config": cfg.__class__.__name__,
            "policy": {k: v for k, v in vars(cfg).items() if isinstance(v, int | float | str | bool | type(None))},
            **source,
            "memlens_version": version("memlens"),
            "lerobot_version": version("lerobot"),
            # how the policy computed (`use_amp`: reduced-precision autocast); what the store holds is float32
            # (full attention maps float16), whatever the compute precision
            "precision": {"compute": compute,
                          "memory_pass": "float32" if getattr(cfg, "amp_memory_fp32", True) else compute,
                          "stored": "float32"},
            # what was recorded; how it ran (batch_episodes, device) may change when a capture resumes
            "capture_options": {k: v for k, v in asdict(self).items() if k not in ("batch_episodes", "device")},
        }
