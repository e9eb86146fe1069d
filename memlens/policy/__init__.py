"""The `smolvla_rmt` policy type: SmolVLA with RMT memory tokens, registered the LeRobot way.

Importing this package registers the type with `PreTrainedConfig`, so `--policy.type=smolvla_rmt`
and `--policy.path=<smolvla_rmt checkpoint>` work in `lerobot-train` and `lerobot-eval`.
"""

from .configuration_smolvla_rmt import SmolVLARMTConfig
from .modeling_smolvla_rmt import SmolVLARMTPolicy, VLAFlowMatchingRMT

__all__ = ["SmolVLARMTConfig", "SmolVLARMTPolicy", "VLAFlowMatchingRMT", "memory_tokens"]


def memory_tokens(config) -> int:
    """M, the number of memory tokens of any lerobot policy config (0 for types without memory)."""
    return getattr(config, "num_mem_tokens", 0) or 0
