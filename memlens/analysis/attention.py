"""Attention over time: what the memory tokens read when they are written, and how much the action
tokens read from memory, at each memory update.

    >>> from memlens.analysis import attention_over_time
    >>> att = attention_over_time("traces/cue", episode=0)            # doctest: +SKIP
    >>> att.groups                                                    # doctest: +SKIP
    ['camera:top', 'language', 'memory', 'state', 'actions']
    >>> att.memory_reads.shape, att.action_reads.shape   # [U, G] shares; rows sum to 1  # doctest: +SKIP
    ((5, 5), (5, 5))
    >>> att.action_from_memory          # [U]: share of the action tokens' attention on memory  # doctest: +SKIP
    >>> att.save("attention.html")                                    # doctest: +SKIP

Needs a store captured with `--attention`. The shares come from `attention/mem_to_groups`
`[U, L, NH, M, G]` (memory-write query rows of the prefix pass) and `attention/action_to_groups`
`[U, L, NH, G]` (action query rows, averaged over queries and denoising steps at capture), averaged here
over heads, memory tokens and layers (or taken at one `layer`). SmolVLA's action expert self-attends on
even layers and cross-attends to the prefix on odd ones, so a single layer can tell a different story
from the mean. Over several episodes the shares are aligned by update index and NaN-averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memlens.analysis.data import AnalysisInputError, as_store, select_episodes
from memlens.analysis.figures import nan_mean_std, save_figure, stack_ragged

MEM_SITE, ACTION_SITE = "attention/mem_to_groups", "attention/action_to_groups"


@dataclass
class AttentionOverTime:
    """Attention shares per prefix group at each memory update (means over episodes when several)."""

    groups: list[str]  # G group names (episode attr "attention_groups")
    frames: np.ndarray  # [U] frame of each update
    memory_reads: np.ndarray | None  # [U, G] share of the memory tokens' attention on each group (None: no memory)
    action_reads: np.ndarray  # [U, G] share of the action tokens' attention on each group
    episodes: list[int]
    layer: int | None  # None: mean over layers
    count: np.ndarray  # [U] episodes that have update u
    figure: object = field(default=None, repr=False)

    @property
    def action_from_memory(self) -> np.ndarray | None:
        """`[U]` share of the action tokens' attention on the memory tokens (None if there is no memory group)."""
        return self.action_reads[:, self.groups.index("memory")] if "memory" in self.groups else None

    def save(self, path, **kw):
        return save_figure(self.figure, path, **kw)


def _reduce(a: np.ndarray, layer: int | None, keep_last: int) -> np.ndarray:
    """[U, L, ..., G] -> [U, G]: pick `layer` (or average over layers), then average every middle axis."""
    a = a[:, layer] if layer is not None else a.mean(axis=1)
    return a.reshape(a.shape[0], -1, keep_last).mean(axis=1)


def attention_over_time(store, episode: int | None = None, *, episodes=None, layer: int | None = None,
                        title: str | None = None) -> AttentionOverTime:
    """Attention shares per prefix group over the updates of one `episode`, or the NaN-mean over `episodes`
    (default: all) when `episode` is None. `layer`: one VLM layer (negative counts from the end), default the
    mean over layers. Returns `AttentionOverTime` with a plotly `figure` (stacked areas over frames)."""
    store = as_store(store)
    eps = select_episodes(store, [episode] if episode is not None else episodes)
    first = store.episode(eps[0])
    if ACTION_SITE not in first:
        raise AnalysisInputError(
            f"the trace store at {store.url} has no attention arrays: it was captured without --attention (it holds "
            f"{first.names}). Capture again with `memlens capture CKPT DATASET --out TRACES --attention` to see "
            "attention over time.")
    groups = list(first.attrs.get("attention_groups") or [])
    n_layers = first[ACTION_SITE].shape[1]
    if layer is not None:
        if not -n_layers <= layer < n_layers:
            raise AnalysisInputError(f"layer {layer} is out of range: the store holds attention of {n_layers} "
                                     f"layers (0..{n_layers - 1}, or negative from the end).")
        layer = layer % n_layers
    mem, act, frames = [], [], []
    for e in eps:
        trace = store.episode(e)
        a = trace.load(ACTION_SITE)
        if not groups:
            groups = [f"group {g}" for g in range(a.shape[-1])]
        act.append(_reduce(a, layer, a.shape[-1]))
        if MEM_SITE in trace:
            m = trace.load(MEM_SITE)
            mem.append(_reduce(m, layer, m.shape[-1]))
        frames.append(trace.load("memory/update_frame") if "memory/update_frame" in trace
                      else np.arange(len(a)) * int(store.provenance.get("policy", {}).get("n_action_steps", 1)))
    act_mean, _, _ = nan_mean_std(stack_ragged(act), axis=0)
    mem_mean = nan_mean_std(stack_ragged(mem), axis=0)[0] if len(mem) == len(eps) else None
    count = (np.array([len(f) for f in frames])[:, None] > np.arange(act_mean.shape[0])).sum(axis=0)
    att = AttentionOverTime(groups=groups, frames=np.asarray(max(frames, key=len), dtype=np.int64),
                            memory_reads=mem_mean, action_reads=act_mean, episodes=eps, layer=layer, count=count)
    att.figure = attention_figure(att, title=title)
    return att


def attention_figure(att: AttentionOverTime, *, title: str | None = None):
    """Top: stacked areas of the memory tokens' attention per group; bottom: stacked areas of the action
    tokens' attention per group, with the share on memory as a bold line. x: frame of each update."""
    import plotly.colors
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    palette = plotly.colors.qualitative.Set2
    rows = [("memory tokens read", att.memory_reads)] if att.memory_reads is not None else []
    rows.append(("action tokens read", att.action_reads))
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[r[0] for r in rows])
    for i, (name, shares) in enumerate(rows, start=1):
        for g, group in enumerate(att.groups):
            fig.add_trace(go.Scatter(
                x=att.frames, y=shares[:, g], name=group, legendgroup=group, showlegend=i == 1, stackgroup=f"s{i}",
                mode="lines", line={"width": 0.5, "color": palette[g % len(palette)]},
                hovertemplate=f"{name} {group}: " + "%{y:.1%} at frame %{x}<extra></extra>"), row=i, col=1)
        fig.update_yaxes(title_text="share of attention", range=[0, 1], tickformat=".0%", row=i, col=1)
    if att.action_from_memory is not None:
        fig.add_trace(go.Scatter(x=att.frames, y=att.action_from_memory, name="actions <- memory", mode="lines+markers",
                                 line={"color": "black", "width": 2.5},
                                 hovertemplate="actions read memory: %{y:.2%} at frame %{x}<extra></extra>"),
                      row=len(rows), col=1)
    where = f"episode {att.episodes[0]}" if len(att.episodes) == 1 else f"mean over {len(att.episodes)} episodes"
    layers = "mean over layers" if att.layer is None else f"layer {att.layer}"
    fig.update_xaxes(title_text="frame (memory update)", row=len(rows), col=1)
    fig.update_layout(title=title or f"Attention per prefix group over time ({where}, {layers}, mean over heads)",
                      template="plotly_white", legend_title_text="group", margin={"t": 80})
    return fig
