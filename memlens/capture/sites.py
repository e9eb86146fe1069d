"""Capture sites, declared as data: name -> where it is read, kind, shape, opt-in.

Shape glossary (symbolic dims as stored in the trace manifest):

- T: frames of the episode (one `select_action` call each)
- U: memory updates (chunk computations) in the episode, U = ceil(T / n_action_steps)
- M: memory tokens; H: VLM text hidden size; A: action dimension
- L: VLM layers; NH: attention heads; G: prefix groups (each camera, language, memory, state[, memory_write][, history])
- P: prefix tokens

Every site is produced by one function of `memlens.capture.hooks`; a declared site that never fired
during capture is an error, not an empty array.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Site:
    name: str
    kind: str  # memory | attention | hidden | action | frame
    shape: tuple[str, ...]
    where: str
    description: str
    opt_in: str | None = None  # capture option that enables it (None: always captured)

    def to_json(self) -> dict:
        return asdict(self)


SITES: dict[str, Site] = {
    s.name: s
    for s in [
        Site("memory/read", "memory", ("U", "M", "H"), "policy.memory.last_computed.read per chunk computation",
             "memory the chunk computation read"),
        Site("memory/write", "memory", ("U", "M", "H"), "policy.memory.last_write after each chunk computation",
             "memory written by the chunk computation (the next chunk's read)"),
        Site("memory/update_frame", "memory", ("U",), "frame index of each chunk computation",
             "frame at which each memory update happened"),
        Site("frame/update", "frame", ("T",), "replay loop", "index of the memory update in effect at each frame"),
        Site("frame/index", "frame", ("T",), "dataset frame_index", "frame index within the episode"),
        Site("frame/timestamp", "frame", ("T",), "dataset timestamp", "seconds from the episode start"),
        Site("action/predicted", "action", ("T", "A"), "select_action output after the postprocessor",
             "action the policy chose at each frame"),
        Site("action/dataset", "action", ("T", "A"), "dataset action column", "recorded action at each frame"),
        Site("attention/mem_to_groups", "attention", ("U", "L", "NH", "M", "G"),
             "SmolVLMWithExpertModel.eager_attention_forward, prefix pass, memory-write query rows",
             "share of each memory token's attention on each prefix group", "attention"),
        Site("attention/action_to_groups", "attention", ("U", "L", "NH", "G"),
             "SmolVLMWithExpertModel.eager_attention_forward, denoising passes, action query rows",
             "share of the action tokens' attention on each prefix group (mean over queries and denoising steps)",
             "attention"),
        Site("attention/prefix_full", "attention", ("U", "L", "NH", "P", "P"),
             "SmolVLMWithExpertModel.eager_attention_forward, prefix pass", "full prefix attention maps",
             "full_attention"),
        Site("hidden/memory", "hidden", ("U", "L", "M", "H"),
             "forward pre-hook on text_model.layers[i].input_layernorm (and text_model.norm), memory-write rows",
             "residual stream at the memory positions entering each layer", "hidden"),
        Site("hidden/observation", "hidden", ("U", "H"),
             "forward pre-hook on text_model.layers[0].input_layernorm (prefix pass), mean over the image tokens",
             "the current observation's embedding: the image tokens as they enter the VLM (vision encoder and "
             "connector), averaged; no attention yet, so no memory in it (the memory-free baseline of probes)"),
    ]
}


def active_sites(*, attention: bool = False, full_attention: bool = False, hidden: bool = False) -> dict[str, Site]:
    options = {"attention": attention or full_attention, "full_attention": full_attention, "hidden": hidden}
    return {n: s for n, s in SITES.items() if s.opt_in is None or options[s.opt_in]}


def label_site(label: str) -> Site:
    """Per-frame label copied from a dataset column `label.<label>` (e.g. the cue of a memory task)."""
    return Site(f"label/{label}", "label", ("T",), f"dataset column label.{label}",
                f"per-frame value of the dataset's label.{label} column")
