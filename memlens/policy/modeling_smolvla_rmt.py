"""SmolVLA with RMT memory tokens (`smolvla_rmt`).

Recurrent Memory Transformer (Bulatov et al., arXiv 2207.06881): M learnable memory tokens join the
transformer input; their outputs become the memory of the next segment. One segment here is one
action-chunk computation at a segment boundary (every `mem_segment_stride` executed frames, by default
every `n_action_steps`, i.e. once per chunk).

Prefix layout (attention-mask value in brackets: 0 joins the bidirectional block before it, 1 starts
a new causal block, see `make_att_2d_masks`)::

    [images (0)] [language (0)] [memory read x M (0)] [state (1)] [memory write x M (1,0,..)]?

* Encoder-style (default): the read tokens sit in the image/language block; their last-layer outputs
  (after the VLM's final norm) become the next memory. They cannot see the state token.
* Decoder-style (`mem_at_end=True`): the same memory values also enter as write tokens at the end of
  the prefix; they see the whole prefix, the state token included, and their outputs become the
  next memory. This adds M prefix tokens and no parameters.

The action expert reads memory through the prefix keys/values (the KV cache), like any prefix token.
The memory is written from the same prefix pass that fills the KV cache for denoising, so memory adds
M tokens to one prefix pass and nothing else.

Shapes: `model.mem_tokens` `[M, 1, H]` (H = VLM text hidden size, 960 for SmolVLM2-500M);
`policy._mem_tokens_state` `[M, B, H]`, None right after `reset()` (the initial memory is then
`mem_tokens` broadcast over the batch).

When memory advances (once per `mem_segment_stride` executed frames, whatever engine calls the
policy) is `memory.py`'s business; the policy's public memory API is `policy.memory`.

(No `from __future__ import annotations` here: lerobot's policy factory reads the `config`
annotation of `__init__` as a class, see its `test_get_policy_and_config_classes`.)
"""

import logging
import math
from contextlib import contextmanager

import torch
import torch.utils.checkpoint
from lerobot.policies.common.vla_utils import pad_vector
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy, VLAFlowMatching
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from lerobot.utils.import_utils import require_package
from torch import Tensor, nn

from .configuration_smolvla_rmt import SmolVLARMTConfig
from .backbone import PrefixDone, PrefixPass, SmolVLMWithExpertMemory
from .kv_history import KVHistorySession, layer_call_plan
from .memory import KVHistory, SegmentMemory
from .precision import amp_context

logger = logging.getLogger(__name__)


class VLAFlowMatchingRMT(VLAFlowMatching):
    """lerobot's `VLAFlowMatching` with memory tokens in the prefix."""

    def __init__(self, config: SmolVLARMTConfig, rtc_processor=None):
        super().__init__(config, rtc_processor=rtc_processor)
        self.hidden_size = self.vlm_with_expert.config.text_config.hidden_size
        if not config.uses_memory:
            self.mem_tokens = None
            return
        self.mem_tokens = nn.Parameter(torch.empty(config.num_mem_tokens, 1, self.hidden_size))
        self.init_mem_tokens()
        self.vlm_with_expert.__class__ = SmolVLMWithExpertMemory  # reports its prefix call to a PrefixPass
        if not config.train_expert_only:
            # lerobot freezes the last VLM layer and final norm because stock SmolVLA never uses their
            # prefix output; with memory that output is the memory write, so they must learn.
            text_model = self.vlm_with_expert.get_vlm_model().text_model
            for p in [*text_model.layers[-1].parameters(), *text_model.norm.parameters()]:
                p.requires_grad = True

    @torch.no_grad()
    def init_mem_tokens(self, init: str | None = None) -> None:
        """(Re)initialise `mem_tokens` with "random" (std `mem_init_std`), "zeros" or "language"
        (rows of the token-embedding table picked with a fixed seed, scaled by sqrt(H) like language)."""
        init = init or self.config.mem_init
        if init == "random":
            nn.init.normal_(self.mem_tokens, mean=0.0, std=self.config.mem_init_std)
        elif init == "zeros":
            nn.init.zeros_(self.mem_tokens)
        elif init == "language":
            table = self.vlm_with_expert.get_vlm_model().text_model.get_input_embeddings().weight
            ids = torch.randint(table.shape[0], (self.mem_tokens.shape[0],), generator=torch.Generator().manual_seed(0))
            rows = table[ids.to(table.device)].float() * math.sqrt(self.hidden_size)
            self.mem_tokens.copy_(rows[:, None, :].to(self.mem_tokens))
        else:
            raise ValueError(f"`mem_init` must be 'random', 'zeros' or 'language', got {init!r}.")

    def initial_memory(self, batch_size: int) -> Tensor:
        """`[B, M, H]` memory at the start of an episode."""
        return self.mem_tokens.transpose(0, 1).expand(batch_size, -1, -1)

    def mem_slices(self, prefix_len: int) -> tuple[slice, slice]:
        """(read, write) positions of the memory tokens in a prefix of `prefix_len` tokens."""
        m = self.config.num_mem_tokens
        if self.config.mem_at_end:
            return slice(prefix_len - 2 * m - 1, prefix_len - m - 1), slice(prefix_len - m, prefix_len)
        read = slice(prefix_len - m - 1, prefix_len - 1)
        return read, read

    def embed_prefix(self, images, img_masks, lang_tokens, lang_masks, state=None, mem: Tensor | None = None):
        """Stock prefix, plus memory `[B, M, H]` inserted as documented in the module: `mem`, or during a
        memory pass (`_memory_pass`) the pass's memory, which lerobot's own methods reach this way."""
        p = self.vlm_with_expert.prefix_pass if mem is None and self.mem_tokens is not None else None
        if p is not None:
            p.embed_calls += 1
            mem = p.mem
        embs, pad_masks, att_masks = super().embed_prefix(images, img_masks, lang_tokens, lang_masks, state=state)
        if mem is None:
            return embs, pad_masks, att_masks
        bsize, m = embs.shape[0], mem.shape[1]
        if mem.shape != (bsize, m, embs.shape[-1]) or m != self.config.num_mem_tokens:
            raise ValueError(
                f"memory must be [batch={bsize}, num_mem_tokens={self.config.num_mem_tokens}, "
                f"hidden={embs.shape[-1]}], got {tuple(mem.shape)}."
            )
        mem = mem.to(embs.dtype)
        mem_pad = pad_masks.new_ones(bsize, m)
        read_att = att_masks.new_zeros(bsize, m)
        embs_parts = [embs[:, :-1], mem, embs[:, -1:]]
        pad_parts = [pad_masks[:, :-1], mem_pad, pad_masks[:, -1:]]
        att_parts = [att_masks[:, :-1], read_att, att_masks[:, -1:]]
        if self.config.mem_at_end:
            write_att = read_att.clone()
            write_att[:, 0] = True
            embs_parts.append(mem)
            pad_parts.append(mem_pad)
            att_parts.append(write_att)
        pad = torch.cat(pad_parts, 1)
        if p is not None:
            p.prefix_pad = pad
        return torch.cat(embs_parts, 1), pad, torch.cat(att_parts, 1)

    @contextmanager
    def _memory_pass(self, mem: Tensor, kv_history: KVHistory | None, *, write_only: bool = False,
                     vision: tuple[list[Tensor] | None, bool] = (None, False)):
        """Attach a `PrefixPass` for one call of a lerobot method; checks the method made one prefix pass."""
        p = PrefixPass(mem, lambda prefix_len, joint: self._kv_session(prefix_len, kv_history, joint=joint),
                       write_only=write_only, vision_out=vision[0], connector=vision[1],
                       full_precision=self.config.use_amp and self.config.amp_memory_fp32 and not torch.is_grad_enabled())
        backbone = self.vlm_with_expert
        backbone.prefix_pass = p
        try:
            yield p
        except PrefixDone:
            pass
        finally:
            backbone.prefix_pass = None
        p.check("sample_actions" if write_only else "forward/sample_actions")

    def _written(self, p: PrefixPass) -> tuple[Tensor, KVHistory | None]:
        """The memory the pass wrote `[B, M, H]` (fp32) and, with `read_mem_from_cache`, its K/V history."""
        mem_out = p.prefix_out[:, self.mem_slices(p.prefix_out.shape[1])[1]].to(torch.float32)
        return mem_out, None if p.history_layers is None else (p.history_layers, p.prefix_pad)

    def _kv_session(self, prefix_len: int, history: KVHistory | None, *, joint: bool) -> KVHistorySession | None:
        if not self.config.read_mem_from_cache:
            return None
        read, write = self.mem_slices(prefix_len)
        rows = torch.cat([torch.arange(read.start, read.stop), torch.arange(write.start, write.stop)]).unique()
        return KVHistorySession(
            prefix_len=prefix_len,
            mem_rows=rows,
            history=None if history is None else history[0],
            history_mask=None if history is None else history[1],
            plan=layer_call_plan(self.vlm_with_expert, joint_with_expert=joint),
        )

    def forward_segment(
        self, images, img_masks, lang_tokens, lang_masks, state, actions, mem: Tensor,
        noise=None, time=None, kv_history: KVHistory | None = None,
        vision: tuple[list[Tensor] | None, bool] = (None, False),
    ) -> tuple[Tensor, Tensor, KVHistory | None]:
        """One training segment through lerobot's own `VLAFlowMatching.forward`: flow-matching losses
        `[B, chunk, max_action_dim]`, the written memory `[B, M, H]` (fp32) and, with `read_mem_from_cache`,
        this segment's prefix K/V history. `vision`: precomputed image features (`image_features`)."""
        with self._memory_pass(mem, kv_history, vision=vision) as p:
            losses = VLAFlowMatching.forward(self, images, img_masks, lang_tokens, lang_masks, state, actions,
                                             noise=noise, time=time)
        return (losses, *self._written(p))

    def write_memory(self, images, img_masks, lang_tokens, lang_masks, state, mem: Tensor,
                     kv_history: KVHistory | None = None) -> tuple[Tensor, KVHistory | None]:
        """The memory a chunk computation on this observation would write `[B, M, H]` (fp32), from the
        prefix pass of lerobot's `sample_actions` alone (stopped before denoising), and the K/V history with
        `read_mem_from_cache`."""
        # Fixed noise: lerobot would draw it (and move the RNG) before the prefix pass; it is never used.
        noise = torch.zeros(state.shape[0], self.config.chunk_size, self.config.max_action_dim, device=state.device)
        with self._memory_pass(mem, kv_history, write_only=True) as p:
            VLAFlowMatching.sample_actions(self, images, img_masks, lang_tokens, lang_masks, state, noise=noise)
        return self._written(p)

    def sample_actions(
        self, images, img_masks, lang_tokens, lang_masks, state, noise=None,
        mem: Tensor | None = None, kv_history: KVHistory | None = None, **kwargs,
    ):
        """Without `mem`: stock SmolVLA, returns actions `[B, chunk, max_action_dim]`.

        With `mem` `[B, M, H]`: lerobot's own `sample_actions` with the memory in its prefix; returns
        `(actions, mem_out [B, M, H] fp32, kv_history or None)`. The memory is read from the prefix pass
        that fills the KV cache; denoising is unchanged.
        """
        if mem is None:
            return super().sample_actions(images, img_masks, lang_tokens, lang_masks, state, noise=noise, **kwargs)
        with self._memory_pass(mem, kv_history) as p:
            actions = super().sample_actions(images, img_masks, lang_tokens, lang_masks, state, noise=noise, **kwargs)
        return (actions, *self._written(p))


class SmolVLARMTPolicy(SmolVLAPolicy):
    """The LeRobot interface (`reset`, `select_action`, `predict_action_chunk`, `forward`) with memory.

    Memory lives in `policy.memory` (`SegmentMemory`): read, set, advance, reset, the K/V history and
    commit listeners. It advances once per `mem_segment_stride` executed frames, as in training:
    `select_action` counts one executed frame per call; engines that call `predict_action_chunk`
    directly pass the observation's `frame` (or advance `policy.memory` themselves). `reset()` clears
    it. `forward` unrolls memory through the K segments of each training sample.
    """

    config_class = SmolVLARMTConfig
    name = "smolvla_rmt"

    def __init__(self, config: SmolVLARMTConfig, **kwargs):
        # Same steps as SmolVLAPolicy.__init__, with the memory-aware flow-matching model (building
        # the stock one first would cost a second backbone construction).
        require_package("transformers", extra="smolvla")
        PreTrainedPolicy.__init__(self, config)
        config.validate_features()
        self.config = config
        self.init_rtc_processor()
        self.model = VLAFlowMatchingRMT(config, rtc_processor=self.rtc_processor)
        self.memory = SegmentMemory(stride=config.mem_segment_stride, initial=self.model.initial_memory)
        self._said_training_notice = False
        self.reset()

    def reset(self):
        """Clear the action queue and the memory (call at every episode start)."""
        super().reset()
        self.memory.reset()

    def drop_queued_actions(self) -> None:
        """Forget the queued actions (memory untouched): the next `select_action` computes a chunk, e.g. to
        replan, or to time chunk computations back to back."""
        self._queues[ACTION].clear()

    # The guide's names for the memory state, kept readable (and settable) for its snippets.
    @property
    def _mem_tokens_state(self) -> Tensor | None:
        """`[M, B, H]` committed memory, None right after `reset()` (guide layout; see `policy.memory`)."""
        return self.memory.state

    @_mem_tokens_state.setter
    def _mem_tokens_state(self, value: Tensor | None) -> None:
        self.memory.set(None if value is None else value.transpose(0, 1))

    @property
    def _mem_kv_history(self) -> KVHistory | None:
        return self.memory.kv_history

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], noise: Tensor | None = None, **kwargs) -> Tensor:
        """lerobot's `select_action`; the returned action is executed, so the memory clock advances one frame."""
        action = super().select_action(batch, noise, **kwargs)
        self.memory.advance(1)
        return action

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], noise: Tensor | None = None, *,
                             frame: int | None = None, **kwargs) -> Tensor:
        """lerobot's `predict_action_chunk`. `frame`: executed-frame index of this observation since
        `reset()` (default: the policy's clock). Only a computation on a segment-boundary frame writes
        memory, and only once time moves past that frame; predicting again on the same frame reads the
        same memory."""
        return super().predict_action_chunk(batch, noise, frame=frame, **kwargs)

    @torch.no_grad()
    def write_memory(self, batch: dict[str, Tensor], *, frame: int) -> bool:
        """Write the memory of boundary `frame` from its (preprocessed) observation with a prefix-only
        pass, for engines that computed no chunk on it. Returns False when nothing was owed."""
        if not self.config.uses_memory or not self.memory.needs_write(frame):
            return False
        self.eval()
        batch = self._prepare_batch(batch)
        images, img_masks = self.prepare_images(batch)
        state = self.prepare_state(batch)
        ticket = self.memory.begin(frame, batch_size=state.shape[0])
        with amp_context(self.config, state.device):
            mem_out, history = self.model.write_memory(
                images, img_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK], state,
                mem=ticket.read, kv_history=ticket.kv_history,
            )
        return self.memory.finish(ticket, mem_out, history)

    def _get_action_chunk(self, batch: dict[str, Tensor], noise: Tensor | None = None, frame: int | None = None,
                          **kwargs) -> Tensor:
        state_device = batch[OBS_STATE].device
        if not self.config.uses_memory:
            with amp_context(self.config, state_device):
                return super()._get_action_chunk(batch, noise, **kwargs).float()
        images, img_masks = self.prepare_images(batch)
        state = self.prepare_state(batch)
        ticket = self.memory.begin(frame, batch_size=state.shape[0])
        with amp_context(self.config, state_device):  # `use_amp`: compute in reduced precision, memory stays fp32
            actions, mem_out, history = self.model.sample_actions(
                images, img_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK], state,
                noise=noise, mem=ticket.read, kv_history=ticket.kv_history, **kwargs,
            )
        self.memory.finish(ticket, mem_out.detach(), history)
        return actions[:, :, : self.config.action_feature.shape[0]].float()

    def forward(self, batch: dict[str, Tensor], noise=None, time=None, reduction: str = "mean"):
        """Training loss. K=1 without memory is exactly SmolVLA; otherwise memory is unrolled through
        the K segments of each sample (observations `[B, K, ...]`, actions `[B, (K-1)*stride + chunk, A]`)."""
        if self.training and not self._said_training_notice:
            self._said_training_notice = True
            for notice in self.config.training_notices():
                logger.warning(notice)
        if not self.config.uses_memory and self.config.n_mem_segments == 1:
            return super().forward(batch, noise=_at(noise, 0), time=_at(time, 0), reduction=reduction)
        return self._forward_segments(batch, noise=noise, time=time, reduction=reduction)

    def flow_noise(self, batch_size: int, device) -> tuple[list[Tensor], list[Tensor]]:
        """The flow-matching noise `[B, chunk, max_action_dim]` and time `[B]` of each of the K segments, drawn
        from the global RNG in the order lerobot's `forward` would draw them segment by segment. Drawn once
        for a whole batch and sliced, they make micro-batches and processes see exactly the big batch's draws
        (`workflows/train_step.py`); `forward(batch, noise=list, time=list)` takes them per segment."""
        cfg = self.config
        noises, times = [], []
        for _ in range(cfg.n_mem_segments):
            noises.append(self.model.sample_noise((batch_size, cfg.chunk_size, cfg.max_action_dim), device))
            times.append(self.model.sample_time(batch_size, device))
        return noises, times

    def _segment_views(self, batch: dict[str, Tensor]):
        """Split a batch into K per-segment batches; yields (segment batch, valid [B], actions, action pad).

        Each input feature arrives `[B, K, *shape]` from the dataset's `observation_delta_indices`; with
        K=1 lerobot may also hand it over without the K axis (it squeezes single-frame video to
        `[B, C, H, W]` but keeps state `[B, 1, D]`), so the K axis is read per key from the feature's shape.
        """
        cfg = self.config
        k = cfg.n_mem_segments
        split = {}
        for key, feature in cfg.input_features.items():
            value = batch.get(key)
            if not isinstance(value, Tensor):
                continue
            if value.ndim == len(feature.shape) + 2 and value.shape[1] == k:
                split[key] = True
            elif value.ndim == len(feature.shape) + 1 and k == 1:
                split[key] = False
            else:
                raise ValueError(
                    f"expected `{key}` of shape [B, K={k}, {', '.join(map(str, feature.shape))}] (K segments from "
                    f"the dataset's `observation_delta_indices` {cfg.observation_delta_indices}), got "
                    f"{tuple(value.shape)}. Build the dataset with this policy config's delta timestamps (lerobot-train "
                    "does), and keep `n_mem_segments` the same as when the dataset was made."
                )
        state = batch[OBS_STATE]
        actions = batch[ACTION]
        need = cfg.chunk_size + (k - 1) * cfg.mem_segment_stride
        if actions.shape[1] != need:
            raise ValueError(
                f"expected `{ACTION}` with {need} steps ((K-1)*mem_segment_stride + chunk_size) for K={k}, got "
                f"{tuple(actions.shape)}."
            )
        act_pad = batch.get("action_is_pad")
        seg_pad = batch.get(f"{OBS_STATE}_is_pad")
        for i in range(k):
            seg = dict(batch)
            for key, has_k_axis in split.items():
                if has_k_axis:
                    seg[key] = batch[key][:, i]
            valid = torch.ones(state.shape[0], dtype=torch.bool, device=state.device)
            if seg_pad is not None and seg_pad.ndim == 2 and seg_pad.shape[1] == k:
                valid = ~seg_pad[:, i]
            lo = i * cfg.mem_segment_stride
            seg_actions = actions[:, lo : lo + cfg.chunk_size]
            seg_act_pad = None if act_pad is None else act_pad[:, lo : lo + cfg.chunk_size]
            yield seg, valid, seg_actions, seg_act_pad

    def loss_elements(self, batch: dict[str, Tensor]) -> Tensor:
        """`[B]` number of loss elements each sample contributes to `forward`'s mean (valid segments x
        unpadded action steps x action dim): the weights that make micro-batch losses add up to the batch's."""
        total = None
        action_dim = self.config.action_feature.shape[0]
        for _, valid, seg_actions, seg_act_pad in self._segment_views(batch):
            weight = valid[:, None].expand(-1, seg_actions.shape[1])
            if seg_act_pad is not None:
                weight = weight & ~seg_act_pad
            count = weight.sum(dim=1) * action_dim
            total = count if total is None else total + count
        return total

    def _forward_segments(self, batch, noise=None, time=None, reduction="mean"):
        cfg = self.config
        lang_tokens, lang_masks = batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK]
        if noise is None and time is None:  # drawn up front, so a recomputed (checkpointed) segment sees the same
            noise, time = self.flow_noise(batch[ACTION].shape[0], batch[ACTION].device)
        checkpointed = cfg.checkpoints_segments and torch.is_grad_enabled()
        action_dim = cfg.action_feature.shape[0]
        mem, history = None, None
        per_sample_sum = per_sample_count = None
        n_valid_segments = 0
        for i, (seg, valid, seg_actions, seg_act_pad) in enumerate(self._segment_views(batch)):
            images, img_masks = self.prepare_images(seg)
            state = self.prepare_state(seg)
            actions = pad_vector(seg_actions, cfg.max_action_dim)
            if cfg.uses_memory:
                if mem is None:
                    mem = self.model.initial_memory(state.shape[0])
                elif i % cfg.mem_bptt_segments == 0:  # truncated BPTT: no gradient flows past this point
                    mem = mem.detach()
                    history = None if history is None else ([(k.detach(), v.detach()) for k, v in history[0]], history[1])
                args = (images, img_masks, lang_tokens, lang_masks, state, actions, mem)
                kwargs = dict(noise=_at(noise, i), time=_at(time, i), kv_history=history)
                if checkpointed:  # keep only this segment's inputs and outputs; recompute the rest in backward
                    # (a frozen vision encoder runs once, outside: its output has no graph to recompute)
                    kwargs["vision"] = self.model.vlm_with_expert.image_features(images)
                    losses, mem_new, new_history = torch.utils.checkpoint.checkpoint(
                        self.model.forward_segment, *args, use_reentrant=False, **kwargs)
                else:
                    losses, mem_new, new_history = self.model.forward_segment(*args, **kwargs)
                # Segments padded before the episode start leave memory (and history) unchanged.
                mem = torch.where(valid[:, None, None], mem_new, mem)
                if new_history is not None:
                    if history is None:
                        history = (new_history[0], new_history[1] & valid[:, None])
                    else:
                        history = _merge_history(history, new_history, valid)
            else:
                losses = self.model.forward(images, img_masks, lang_tokens, lang_masks, state, actions,
                                            _at(noise, i), _at(time, i))
            losses = losses[:, :, :action_dim]
            n_valid_segments += int(valid.sum())
            weight = valid[:, None].expand(-1, losses.shape[1])
            if seg_act_pad is not None:
                weight = weight & ~seg_act_pad
            weighted = (losses * weight[..., None]).sum(dim=(1, 2))
            count = weight.sum(dim=1) * action_dim
            per_sample_sum = weighted if per_sample_sum is None else per_sample_sum + weighted
            per_sample_count = count if per_sample_count is None else per_sample_count + count
        loss_dict = {"n_valid_segments": float(n_valid_segments)}
        if reduction == "none":
            per_sample = per_sample_sum / per_sample_count.clamp_min(1)
            loss_dict["loss"] = per_sample.mean().item()
            return per_sample, loss_dict
        loss = per_sample_sum.sum() / per_sample_count.sum().clamp_min(1)
        loss_dict["loss"] = loss.item()
        return loss, loss_dict


def _at(value, i: int):
    """Segment `i`'s noise/time: `value[i]` of a per-segment list, else the one tensor (or None) for all."""
    return value[i] if isinstance(value, list | tuple) else value


def _merge_history(old: KVHistory, new: KVHistory, valid: Tensor) -> KVHistory:
    """Per batch row: take the new segment's K/V where the segment is valid, else keep the old.
    Prefix lengths of consecutive segments are equal (same prompt padding within a batch)."""
    sel = valid[:, None, None, None]
    layers = [(torch.where(sel, nk, ok), torch.where(sel, nv, ov)) for (ok, ov), (nk, nv) in zip(old[0], new[0], strict=True)]
    mask = torch.where(valid[:, None], new[1], old[1])
    return layers, mask
