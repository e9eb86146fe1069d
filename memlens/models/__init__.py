"""Model builders: local SmolVLM backbones for SmolVLA."""

from memlens.models.vlm_builder import (
    FULL_VLM_ID,
    TINY_VLM_ID,
    build_processor,
    build_tokenizer,
    full_size_smolvla_kwargs,
    full_size_vlm_config,
    install_vlm,
    tiny_smolvla_kwargs,
    tiny_vlm_config,
)

__all__ = [
    "FULL_VLM_ID",
    "TINY_VLM_ID",
    "build_processor",
    "build_tokenizer",
    "full_size_smolvla_kwargs",
    "full_size_vlm_config",
    "install_vlm",
    "tiny_smolvla_kwargs",
    "tiny_vlm_config",
]
