"""Hooks that record memory, attention and hidden states at every chunk computation of a policy.

`CaptureHooks` is a context manager around a `smolvla_rmt` (or plain SmolVLA) policy:

- it wraps `policy._get_action_chunk` (one call = one memory update when `mem_segment_stride` = `n_action_steps`, the default) to read the memory before and
  after, and to delimit the attention calls of one chunk computation;
- with `attention=True` it wraps `SmolVLMWithExpertModel.eager_attention_forward` on the instance,
  recomputing the attention probabilities exactly as lerobot does (fp32 softmax, GQA expansion) to
  summarise them per prefix group (the output is lerobot's own);
- with `hidden=True` it registers forward pre-hooks on `text_model.layers[i].input_layernorm` and
  `text_model.norm`, which lerobot calls only for prefix tokens;
- always, a forward pre-hook on `text_model.layers[0].input_layernorm` averages the prefix's input
  embeddings over the image tokens (`hidden/observation`: the current observation as the vision encoder
  and connector give it to the VLM, before any attention, so memory cannot leak into it; one mean per
  chunk, no measurable cost). Deeper image states would not do: images, language and memory tokens
  share one bidirectional attention block, so from layer 1 on the image tokens have read the memory.

Everything is removed on exit, also when the body raised. At attach time it checks the lerobot
internals it relies on and raises `CaptureAttachError` saying what changed; on a clean exit, a declared
site that never fired raises `SiteNeverFiredError`.
"""

from __future__ import annotations

import inspect
from contextlib import ExitStack

import torch
from lerobot.policies.smolvla.smolvlm_with_expert import SmolVLMWithExpertModel
from lerobot.utils.constants import OBS_LANGUAGE_TOKENS

from memlens.policy import memory_tokens
from memlens.runtime.patching import patched

EXPECTED_ATTENTION_PARAMS = ["attention_mask", "batch_size", "head_dim", "query_states", "key_states", "value_states"]


class CaptureAttachError(RuntimeError):
    """The lerobot internals capture relies on are not what this memlens version expects."""


class SiteNeverFiredError(RuntimeError):
    """A declared capture site recorded nothing."""


def check_internals(policy) -> None:
    """Fail loudly, before capturing, if lerobot's SmolVLA no longer has the shape capture relies on."""
    problems = []
    model = getattr(policy, "model", None)
    backbone = getattr(model, "vlm_with_expert", None)
    if backbone is None or not isinstance(backbone, SmolVLMWithExpertModel):
        problems.append("policy.model.vlm_with_expert is not a SmolVLMWithExpertModel")
    else:
        params = list(inspect.signature(SmolVLMWithExpertModel.eager_attention_forward).parameters)[1:]
        if params != EXPECTED_ATTENTION_PARAMS:
            problems.append(f"SmolVLMWithExpertModel.eager_attention_forward takes {params}, expected {EXPECTED_ATTENTION_PARAMS}")
        if not hasattr(backbone, "get_attention_interface"):
            problems.append("SmolVLMWithExpertModel.get_attention_interface is gone")
        text = backbone.get_vlm_model().text_model
        if not all(hasattr(layer, "input_layernorm") for layer in text.layers) or not hasattr(text, "norm"):
            problems.append("text_model.layers[i].input_layernorm / text_model.norm are gone")
    if not callable(getattr(type(policy), "_get_action_chunk", None)):
        problems.append("SmolVLAPolicy._get_action_chunk is gone")
    if problems:
        raise CaptureAttachError(
            "memlens capture cannot attach to this policy: " + "; ".join(problems)
            + ". The installed lerobot differs from the one memlens supports (lerobot 0.6.x); install a matching "
            "lerobot or a memlens release that supports it."
        )


def attention_probs(backbone, attention_mask, batch_size, head_dim, query, key) -> torch.Tensor:
    """`[B, NH, Q, K]` float32 probabilities, computed as lerobot's eager attention computes them (in float32
    even under `use_amp`'s autocast, which would otherwise run this matmul in reduced precision)."""
    nh, nkv = backbone.num_attention_heads, backbone.num_key_value_heads
    key = key[:, :, :, None, :].expand(batch_size, key.shape[1], nkv, nh // nkv, head_dim)
    key = key.reshape(batch_size, key.shape[1], nh, head_dim)
    with torch.autocast(device_type=query.device.type, enabled=False):
        q = query.to(torch.float32).transpose(1, 2)
        k = key.to(torch.float32).transpose(1, 2)
        w = torch.matmul(q, k.transpose(2, 3)) * head_dim**-0.5
        w = torch.where(attention_mask[:, None, :, :], w, torch.finfo(w.dtype).min)
        return torch.softmax(w, dim=-1)


class CaptureHooks:
    """Records per chunk computation; read the results from `.chunks` (one dict per computation)."""

    def __init__(self, policy, *, attention: bool = False, full_attention: bool = False, hidden: bool = False):
        self.policy = policy
        self.attention = attention or full_attention
        self.full_attention = full_attention
        self.hidden = hidden
        self.chunks: list[dict] = []
        self._current: dict | None = None
        self._handles = []
        self._patches = ExitStack()
        self.fired: set[str] = set()

    # -- layout ------------------------------------------------------------------------------------
    def groups(self, batch) -> list[str]:
        cfg = self.policy.config
        cams = [k for k in cfg.image_features if k in batch]
        n_empty = min(len(cfg.image_features) - len(cams), cfg.empty_cameras)
        names = [f"camera:{k.removeprefix('observation.images.')}" for k in cams] + ["camera:empty"] * n_empty
        names += ["language"]
        m = memory_tokens(cfg)
        if m:
            names += ["memory"]
        names += ["state"]
        if m and cfg.mem_at_end:
            names += ["memory_write"]
        if m and cfg.read_mem_from_cache:
            names += ["history"]
        return names + ["actions"]

    def _tokens_per_camera(self, prefix_len: int) -> int:
        cfg, cur = self.policy.config, self._current
        m = memory_tokens(cfg)
        tail = cur["lang_len"] + m + 1 + (m if m and cfg.mem_at_end else 0)
        return (prefix_len - tail) // max(cur["n_cams"], 1)

    def _group_index(self, prefix_len: int, n_history: int, n_keys: int) -> torch.Tensor:
        """Group id `[K]` of every key position (history first when present, actions after the prefix)."""
        cfg, cur = self.policy.config, self._current
        m = memory_tokens(cfg)
        lang, n_cams = cur["lang_len"], cur["n_cams"]
        per_cam = self._tokens_per_camera(prefix_len)
        ids, g = [], 0
        for _ in range(n_cams):
            ids += [g] * per_cam
            g += 1
        ids += [g] * lang
        g += 1
        if m:
            ids += [g] * m
            g += 1
        ids += [g]  # state
        g += 1
        if m and cfg.mem_at_end:
            ids += [g] * m
            g += 1
        names = cur["groups"]
        index = torch.tensor(ids, dtype=torch.long)
        if n_history:
            index = torch.cat([torch.full((n_history,), names.index("history"), dtype=torch.long), index])
        extra = n_keys - index.numel()
        if extra:
            index = torch.cat([index, torch.full((extra,), names.index("actions"), dtype=torch.long)])
        return index

    @staticmethod
    def _group_sum(probs: torch.Tensor, index: torch.Tensor, n_groups: int) -> torch.Tensor:
        out = torch.zeros(*probs.shape[:-1], n_groups, dtype=probs.dtype)
        return out.index_add_(-1, index, probs.cpu())

    # -- wrapped callables -------------------------------------------------------------------------
    def _chunk(self, batch, noise=None, **kwargs):
        policy = self.policy
        m = memory_tokens(policy.config)
        groups = self.groups(batch)
        self._current = {
            "lang_len": batch[OBS_LANGUAGE_TOKENS].shape[1],
            "n_cams": sum(1 for g in groups if g.startswith("camera:")),
            "groups": groups,
            "calls": 0,
            "mem_to_groups": [],
            "prefix_full": [],
            "action_sum": None,
            "action_steps": 0,
            "hidden": [],
            "observation": None,
        }
        out = self._original_chunk(batch, noise, **kwargs)
        cur = self._current
        record = {"groups": groups}
        if m:
            record["memory/read"] = policy.memory.last_computed.read.detach().float().cpu().clone()
            record["memory/write"] = policy.memory.last_write.detach().float().cpu().clone()
            self.fired.update({"memory/read", "memory/write"})
        if self.attention:
            if cur["mem_to_groups"] and m:
                record["attention/mem_to_groups"] = torch.stack(cur["mem_to_groups"], dim=1)  # [B, L, NH, M, G]
                self.fired.add("attention/mem_to_groups")
            if cur["action_steps"]:
                record["attention/action_to_groups"] = torch.stack(cur["action_sum"], dim=1) / (cur["action_steps"])
                self.fired.add("attention/action_to_groups")
            if self.full_attention and cur["prefix_full"]:
                record["attention/prefix_full"] = torch.stack(cur["prefix_full"], dim=1)
                self.fired.add("attention/prefix_full")
        if cur["observation"] is not None:
            record["hidden/observation"] = cur["observation"]  # [B, H]
            self.fired.add("hidden/observation")
        if self.hidden and cur["hidden"]:
            record["hidden/memory"] = torch.stack(cur["hidden"], dim=1)  # [B, L, M, H]
            self.fired.add("hidden/memory")
        self.chunks.append(record)
        self._current = None
        return out

    def _attention(self, attention_mask, batch_size, head_dim, query_states, key_states, value_states):
        backbone = self.policy.model.vlm_with_expert
        n_orig_keys = key_states.shape[1]
        session = getattr(backbone, "kv_session", None)
        if session is not None:  # read_mem_from_cache: inject history exactly as the policy would
            attention_mask, key_states, value_states = session.on_attention(attention_mask, query_states, key_states, value_states)
        out = SmolVLMWithExpertModel.eager_attention_forward(
            backbone, attention_mask, batch_size, head_dim, query_states, key_states, value_states
        )
        cur = self._current
        if cur is None:  # outside a chunk computation (e.g. training forward): not captured
            return out
        n_layers = backbone.num_vlm_layers
        call = cur["calls"]
        cur["calls"] += 1
        n_history = key_states.shape[1] - n_orig_keys
        with torch.no_grad():
            probs = attention_probs(backbone, attention_mask, batch_size, head_dim, query_states, key_states)
            n_groups = len(cur["groups"])
            if call < n_layers:  # prefix pass: queries are the prefix
                prefix_len = query_states.shape[1]
                cur["prefix_len"] = prefix_len
                index = self._group_index(prefix_len, n_history, key_states.shape[1])
                m = memory_tokens(self.policy.config)
                if m:
                    rows = self.policy.model.mem_slices(prefix_len)[1]
                    cur["mem_to_groups"].append(self._group_sum(probs[:, :, rows, :], index, n_groups))
                if self.full_attention:
                    cur["prefix_full"].append(probs[:, :, :, n_history:].cpu().to(torch.float16))
            else:  # denoising: queries are the action tokens; the first keys are the cached prefix
                index = self._group_index(cur["prefix_len"], 0, key_states.shape[1])
                summary = self._group_sum(probs, index, n_groups).mean(dim=2)  # [B, NH, G]
                layer = call % n_layers
                if cur["action_sum"] is None:
                    cur["action_sum"] = [torch.zeros_like(summary) for _ in range(n_layers)]
                cur["action_sum"][layer] += summary
                if layer == n_layers - 1:
                    cur["action_steps"] += 1
        return out

    def _hidden_hook(self, module, args):
        cur = self._current
        if cur is None or not memory_tokens(self.policy.config):
            return
        hidden = args[0]
        rows = self.policy.model.mem_slices(hidden.shape[1])[1]
        cur["hidden"].append(hidden[:, rows].detach().float().cpu().clone())

    def _observation_hook(self, module, args):
        """Prefix input embeddings entering layer 0, mean over the present cameras' tokens -> `[B, H]`."""
        cur = self._current
        if cur is None or cur["observation"] is not None:
            return
        hidden = args[0]
        n_present = sum(1 for g in cur["groups"] if g.startswith("camera:") and g != "camera:empty")
        rows = n_present * self._tokens_per_camera(hidden.shape[1])
        cur["observation"] = hidden[:, :rows].detach().float().mean(dim=1).cpu()

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self):
        check_internals(self.policy)
        try:
            self._original_chunk = self._patches.enter_context(patched(self.policy, "_get_action_chunk", self._chunk))
            backbone = self.policy.model.vlm_with_expert
            if self.attention:
                self._patches.enter_context(patched(backbone, "eager_attention_forward", self._attention))
            text = backbone.get_vlm_model().text_model
            self._handles.append(text.layers[0].input_layernorm.register_forward_pre_hook(self._observation_hook))
            if self.hidden:
                for module in [*[layer.input_layernorm for layer in text.layers[1:]], text.norm]:
                    self._handles.append(module.register_forward_pre_hook(self._hidden_hook))
        except BaseException:
            self._remove()
            raise
        return self

    def _remove(self):
        self._patches.close()  # restores what each patch found (memlens.runtime.patching)
        self._patches = ExitStack()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, exc_type, exc, tb):
        self._remove()
        if exc_type is None and self.chunks:
            from memlens.capture.sites import active_sites

            has_memory = bool(memory_tokens(self.policy.config))
            wanted = {n for n, s in active_sites(attention=self.attention, full_attention=self.full_attention,
                                                 hidden=self.hidden).items()
                      if s.kind in ("attention", "hidden", "memory") and "/" in n and n != "memory/update_frame"}
            if not has_memory:
                wanted -= {"memory/read", "memory/write", "attention/mem_to_groups", "hidden/memory"}
            missing = sorted(wanted - self.fired)
            if missing:
                raise SiteNeverFiredError(
                    f"capture sites {missing} recorded nothing during {len(self.chunks)} chunk computations; "
                    "lerobot's SmolVLA no longer calls what they hook. Capture without them or update memlens."
                )
        return False
