"""lerobot's SmolVLM-with-expert backbone, with one slot memlens fills for the length of one memory pass.

The memory model runs lerobot's own `VLAFlowMatching.forward` (training) and `sample_actions`
(inference) unchanged. What memory adds happens in two places lerobot already calls: `embed_prefix`
(the model inserts the memory tokens) and this backbone's `forward`, which, while a `PrefixPass` is
attached, sees the one prefix call of that method (the call whose `inputs_embeds[0]` is the prefix):
it attaches the `read_mem_from_cache` K/V session for that call only, keeps the prefix output (where the
memory is written) and, for a write-only pass, stops lerobot's method right after the prefix (no
denoising). `PrefixPass.check` fails loudly when lerobot's method no longer makes exactly one
`embed_prefix` call and one prefix call of the backbone: the drift check for a lerobot upgrade.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from lerobot.policies.smolvla.smolvlm_with_expert import SmolVLMWithExpertModel
from torch import Tensor

from .kv_history import KVHistorySession


class PrefixDone(Exception):
    """Raised by the backbone after the prefix call of a write-only pass (caught by the pass's owner)."""


class CompositionDriftError(RuntimeError):
    """lerobot's VLAFlowMatching no longer calls embed_prefix / the backbone as the memory model relies on."""


@dataclass
class PrefixPass:
    """One memory pass through a lerobot method: the memory to insert and what the prefix call gave."""

    mem: Tensor  # [B, M, H], inserted by embed_prefix
    open_session: Callable[[int, bool], KVHistorySession | None]  # (prefix length, joint with expert)
    write_only: bool = False
    embed_calls: int = 0
    prefix_calls: int = 0
    prefix_pad: Tensor | None = None
    prefix_out: Tensor | None = None
    history_layers: list | None = None
    # Image features computed before the pass (frozen vision encoder, per-segment checkpointing): one per
    # `embed_image` call, in camera order; `connector` says whether they still need lerobot's connector.
    vision_out: list[Tensor] | None = None
    connector: bool = False
    vision_calls: int = 0
    # Run the prefix call with autocast off (under `use_amp` at inference, `amp_memory_fp32`): the memory
    # recurrence in float32, the vision encoder and the denoising steps in reduced precision.
    full_precision: bool = False

    def check(self, method: str) -> None:
        if self.embed_calls != 1 or self.prefix_calls != 1:
            raise CompositionDriftError(
                f"lerobot's VLAFlowMatching.{method} made {self.embed_calls} embed_prefix call(s) and "
                f"{self.prefix_calls} prefix call(s) of the backbone; the memory model expects exactly one of each "
                "(lerobot 0.6.x). The installed lerobot changed the method memlens composes: install lerobot 0.6.x "
                "or a memlens release that supports this one."
            )


class SmolVLMWithExpertMemory(SmolVLMWithExpertModel):
    """lerobot's backbone, whose attention consults an attached `KVHistorySession` and whose forward
    reports its prefix call to an attached `PrefixPass` (neither attached: stock behaviour)."""

    kv_session: KVHistorySession | None = None
    prefix_pass: PrefixPass | None = None

    def forward(self, attention_mask=None, position_ids=None, past_key_values=None, inputs_embeds=None,
                use_cache=None):
        p = self.prefix_pass
        if p is None or inputs_embeds is None or inputs_embeds[0] is None:  # no pass, or a denoising step
            return super().forward(attention_mask=attention_mask, position_ids=position_ids,
                                   past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache)
        p.prefix_calls += 1
        self.kv_session = p.open_session(inputs_embeds[0].shape[1], inputs_embeds[1] is not None)
        precision = (torch.autocast(inputs_embeds[0].device.type, enabled=False) if p.full_precision
                     else contextlib.nullcontext())
        try:
            # A write-only pass keeps use_cache=True as sample_actions' default (lerobot's prefix-only path needs it).
            with precision:
                out = super().forward(attention_mask=attention_mask, position_ids=position_ids,
                                      past_key_values=past_key_values, inputs_embeds=inputs_embeds,
                                      use_cache=True if p.write_only else use_cache)
            if self.kv_session is not None:
                p.history_layers = self.kv_session.finish()
        finally:
            self.kv_session = None
        (p.prefix_out, _), _ = out
        if p.write_only:
            raise PrefixDone
        return out

    def embed_image(self, image: Tensor) -> Tensor:
        p = self.prefix_pass
        if p is None or p.vision_out is None:
            return super().embed_image(image)
        features = p.vision_out[p.vision_calls]
        p.vision_calls += 1
        return self.get_vlm_model().connector(features) if p.connector else features

    def image_features(self, images: list[Tensor]) -> tuple[list[Tensor] | None, bool]:
        """What a recomputed segment need not recompute: with the vision encoder frozen, its output for each
        camera (no graph), and whether lerobot's connector must still run on it (it trains); (None, False)
        when the vision encoder trains. Same values as `embed_image` computes (tests/test_train_scale.py)."""
        vlm = self.get_vlm_model()
        if any(p.requires_grad for p in vlm.vision_model.parameters()):
            return None, False
        connector_trains = any(p.requires_grad for p in vlm.connector.parameters())
        with torch.no_grad():
            if not connector_trains:
                return [super(SmolVLMWithExpertMemory, self).embed_image(img) for img in images], False
            # lerobot's embed_image up to its connector
            return [vlm.vision_model(pixel_values=img.to(dtype=vlm.vision_model.dtype), patch_attention_mask=None)
                    .last_hidden_state for img in images], True

    def eager_attention_forward(self, attention_mask, batch_size, head_dim, query_states, key_states, value_states):
        if self.kv_session is not None:
            attention_mask, key_states, value_states = self.kv_session.on_attention(
                attention_mask, query_states, key_states, value_states
            )
        return super().eager_attention_forward(
            attention_mask, batch_size, head_dim, query_states, key_states, value_states
        )
