"""`read_mem_from_cache`: memory tokens also attend to the previous segment's prefix keys/values.

lerobot's `SmolVLMWithExpertModel` computes attention in `eager_attention_forward(attention_mask,
batch_size, head_dim, query_states, key_states, value_states)` with post-RoPE tensors shaped
`[B, L, heads, head_dim]`. A `KVHistorySession` is attached to the backbone (`backbone.py`) for one prefix call;
at each prefix attention call it records the prefix keys/values (the next segment's history) and,
when a history is given, prepends it to the keys/values with a mask that lets only the memory-token
rows see it. Denoising calls (no session) are untouched, so the KV cache of the current prefix is
exactly what stock SmolVLA would hold.
"""

from __future__ import annotations

import torch
from lerobot.policies.smolvla.smolvlm_with_expert import SmolVLMWithExpertModel
from torch import Tensor


def layer_call_plan(backbone: SmolVLMWithExpertModel, *, joint_with_expert: bool) -> list[str]:
    """The attention calls one forward pass makes, in order: "prefix" (queries start with the
    prefix) or "expert" (action-expert queries cross-attending to prefix keys)."""
    plan = []
    for idx in range(backbone.num_vlm_layers):
        self_attn = "cross" not in backbone.attention_mode or (
            backbone.self_attn_every_n_layers > 0 and idx % backbone.self_attn_every_n_layers == 0
        )
        plan.append("prefix")
        if joint_with_expert and not self_attn:
            plan.append("expert")
    return plan


class KVHistorySession:
    """Records prefix K/V and injects the previous segment's K/V for memory-token queries.

    Args:
        prefix_len: P, number of prefix tokens in this pass.
        mem_rows: indices (within the prefix) of the memory-token queries allowed to read history.
        history: per layer `(keys, values)`, each `[B, P_prev, kv_heads, head_dim]`, or None.
        history_mask: `[B, P_prev]` bool, which history positions are real (pad and invalid segments False).
        plan: from `layer_call_plan`.
    """

    def __init__(self, *, prefix_len: int, mem_rows: Tensor, history, history_mask, plan: list[str]):
        self.prefix_len = prefix_len
        self.mem_rows = mem_rows
        self.history = history
        self.history_mask = history_mask
        self.plan = list(plan)
        self.calls = 0
        self.recorded: list[tuple[Tensor, Tensor]] = []

    def on_attention(self, attention_mask: Tensor, query: Tensor, key: Tensor, value: Tensor):
        if self.calls >= len(self.plan):
            raise RuntimeError(
                f"read_mem_from_cache: more attention calls than the {len(self.plan)} expected; lerobot's "
                "SmolVLMWithExpertModel.forward has changed its layer structure."
            )
        kind = self.plan[self.calls]
        self.calls += 1
        if kind == "expert":
            return attention_mask, key, value
        p = self.prefix_len
        if query.shape[1] < p or key.shape[1] < p:
            raise RuntimeError(
                f"read_mem_from_cache: a prefix attention call got queries {tuple(query.shape)} and keys "
                f"{tuple(key.shape)} for a prefix of {p} tokens; lerobot's attention layout has changed."
            )
        layer = len(self.recorded)
        self.recorded.append((key[:, :p], value[:, :p]))
        if self.history is None:
            return attention_mask, key, value
        hist_k, hist_v = self.history[layer]
        b, lq, ph = query.shape[0], query.shape[1], hist_k.shape[1]
        extra = torch.zeros(b, lq, ph, dtype=torch.bool, device=attention_mask.device)
        extra[:, self.mem_rows] = self.history_mask[:, None, :]
        attention_mask = torch.cat([extra, attention_mask], dim=-1)
        key = torch.cat([hist_k.to(key.dtype), key], dim=1)
        value = torch.cat([hist_v.to(value.dtype), value], dim=1)
        return attention_mask, key, value

    def finish(self) -> list[tuple[Tensor, Tensor]]:
        if self.calls != len(self.plan):
            raise RuntimeError(
                f"read_mem_from_cache: saw {self.calls} attention calls, expected {len(self.plan)}; lerobot's "
                "SmolVLMWithExpertModel.forward has changed its layer structure."
            )
        return self.recorded
