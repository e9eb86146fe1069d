"""Token-norm heat map: memory updates (x, in frames) by memory tokens (y), the guide's `memory_evolution.png`.

    >>> from memlens.analysis import memory_heatmap
    >>> hm = memory_heatmap("traces/cue", episode=3)                  # doctest: +SKIP
    >>> hm.values.shape                                               # doctest: +SKIP
    (5, 4)
    >>> hm.save("memory_evolution.png")                               # doctest: +SKIP
    >>> avg = memory_heatmap("traces/cue", value="delta")             # all episodes, mean per update  # doctest: +SKIP

Two values per cell:

- `value="norm"` (the guide's): the L2 norm of each memory token. memlens memory states are outputs of
  the VLM's final RMSNorm, so their norms sit near sqrt(H) x the norm's weight and change little: a
  flat map is expected, not a sign of a dead memory.
- `value="standardised"`: each token's norm standardised over the updates of its episode,
  `(norm - mean) / std` per token: the same norms with each token's own range spread over the colour
  scale, so a change of 0.01 on a norm of 11.3 is visible (the app's default next to `delta`).
- `value="delta"`: the L2 norm of each token's change since the previous update,
  `||x[u] - x[u-1]||`. Update 0 has no previous update and is NaN (drawn blank). (Its change from the
  learned initial memory, `||write[0] - read[0]||`, is large because the initial memory is not
  normalised, and would swamp the colour scale.)

Over several episodes the maps are aligned by update index and averaged with a NaN-mean, so episodes
of different lengths contribute to the updates they have (`count` says how many did).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memlens.analysis.data import AnalysisInputError, as_store, memory_states, token_norms
from memlens.analysis.figures import nan_mean_std, save_figure, stack_ragged

HEATMAP_VALUES = ("norm", "delta", "standardised")
VALUE_TITLES = {"norm": "token norm", "delta": "change since previous update (norm)",
                "standardised": "token norm, standardised per token"}
VALUE_SHORT = {"norm": "norm", "delta": "change", "standardised": "z"}  # colour-bar titles
_PHASE_NAMES = {0: "cue shown", 1: "cue hidden", 2: "go"}


def update_edges(frames: np.ndarray) -> np.ndarray:
    """[U + 1] cell edges on the frame axis: update u spans [frame of update u, frame of update u + 1), the
    last one the median period (1 frame for a single update)."""
    frames = np.asarray(frames)
    period = int(np.median(np.diff(frames))) if len(frames) > 1 else 1
    return np.append(frames, frames[-1] + period)


def value_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values; (0, 0) when there are none."""
    finite = np.asarray(values)[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)


@dataclass
class MemoryHeatmap:
    """Heat-map data (`values[u, m]`: update u, token m) and its plotly figure."""

    values: np.ndarray  # [U, M] float: norm or delta per update and token (mean over episodes if several)
    frames: np.ndarray  # [U] frame of each update (x axis)
    value: str  # "norm" | "delta"
    episodes: list[int]  # episodes in the map
    std: np.ndarray  # [U, M] spread over episodes (0 for one episode)
    count: np.ndarray  # [U] episodes that have update u
    site: str = "memory/write"
    figure: object = field(default=None, repr=False)  # plotly Figure

    def save(self, path, **kw):
        """Write the figure to `.png` or `.html` (see `memlens.analysis.figures.save_figure`)."""
        return save_figure(self.figure, path, **kw)


def token_values(x: np.ndarray, value: str = "norm") -> np.ndarray:
    """`[U, M, H]` memory states of one episode -> `[U, M]`: token norms, the norms standardised per token
    over the episode's updates, or norms of the change since the previous update (row 0 NaN)."""
    if value not in HEATMAP_VALUES:
        raise AnalysisInputError(f"value must be one of {HEATMAP_VALUES}; got {value!r}.")
    x = np.asarray(x, dtype=np.float32)
    if value in ("norm", "standardised"):
        norms = token_norms(x).astype(np.float64)
        if value == "norm":
            return norms
        std = norms.std(axis=0)
        return (norms - norms.mean(axis=0)) / np.where(std > 0, std, 1.0)
    out = np.full(x.shape[:2], np.nan)
    out[1:] = np.linalg.norm(x[1:] - x[:-1], axis=-1)
    return out


def _phase_changes(store, episode: int) -> list[tuple[int, str]]:
    trace = store.episode(episode)
    if "label/phase" not in trace:
        return []
    return phase_events(trace.load("label/phase"))


def phase_events(phase: np.ndarray) -> list[tuple[int, str]]:
    """(frame, name) of each change of a per-frame `phase` label."""
    changes = np.flatnonzero(np.diff(phase) != 0) + 1
    return [(int(f), _PHASE_NAMES.get(int(phase[f]), f"phase {int(phase[f])}")) for f in changes]


def memory_heatmap(store, episode: int | None = None, *, episodes=None, value: str = "norm",
                   site: str = "memory/write", title: str | None = None) -> MemoryHeatmap:
    """Token-norm heat map of one `episode`, or the mean over `episodes` (default: all) when `episode` is None.

    `value`: "norm" (token L2 norm), "standardised" (norm standardised per token) or "delta" (norm of the change since the previous update; update 0 NaN).
    `site`: "memory/write" (the memory each update wrote, default) or "memory/read".
    Returns `MemoryHeatmap` with `values [U, M]`, `frames [U]` and a plotly `figure`.
    """
    if value not in HEATMAP_VALUES:
        raise AnalysisInputError(f"value must be one of {HEATMAP_VALUES}; got {value!r}.")
    store = as_store(store)
    if episode is not None:
        episodes = [int(episode)]
    ms = memory_states(store, episodes, site=site)
    eps = list(dict.fromkeys(ms.episode.tolist()))
    per_ep = [token_values(ms.X[ms.episode == e], value) for e in eps]
    frames_per_ep = [ms.frame[ms.episode == e] for e in eps]
    stacked = stack_ragged(per_ep)  # [E, U, M]
    mean, std, _ = nan_mean_std(stacked, axis=0)
    count = (np.array([len(f) for f in frames_per_ep])[:, None] > np.arange(stacked.shape[1])).sum(axis=0)
    frames = max(frames_per_ep, key=len).astype(np.int64)  # updates happen every n_action_steps frames
    hm = MemoryHeatmap(values=mean, frames=frames, value=value, episodes=eps, std=std, count=count,
                       site=site)
    hm.figure = heatmap_figure(hm, title=title, events=_phase_changes(store, eps[0]) if len(eps) == 1 else [])
    return hm


def heatmap_figure(hm: MemoryHeatmap, *, title: str | None = None, events=()):
    """Plotly heat map of `hm` (x: frame of each update, y: memory token); `events` is `[(frame, name)]`
    drawn as dotted vertical lines. Each cell's customdata is `[frame, update, episode or -1]`."""
    import plotly.graph_objects as go

    n_upd, n_tok = hm.values.shape
    what = VALUE_TITLES[hm.value]
    one = len(hm.episodes) == 1
    where = f"episode {hm.episodes[0]}" if one else f"mean over {len(hm.episodes)} episodes"
    ep_id = hm.episodes[0] if one else -1
    custom = np.stack(np.broadcast_arrays(hm.frames[None, :], np.arange(n_upd)[None, :],
                                          np.full((n_tok, n_upd), ep_id)), axis=-1)  # [M, U, 3]
    hover = "frame %{customdata[0]} (update %{customdata[1]})<br>%{y}<br>" + what + " %{z:.4g}"
    if not one:
        hover += "<br>std over episodes %{text}"
    edges = update_edges(hm.frames)  # cell u: the frames during which the memory written at update u held
    fig = go.Figure(go.Heatmap(
        z=hm.values.T, x=edges, y=[f"m{m}" for m in range(n_tok)], customdata=custom,
        text=None if one else np.vectorize(lambda v: f"{v:.3g}")(hm.std.T), hovertemplate=hover + "<extra></extra>",
        colorscale="Viridis", colorbar={"title": {"text": hm.value}}, hoverongaps=False,
    ))
    for frame, name in events:
        fig.add_vline(x=frame, line={"dash": "dot", "color": "white", "width": 1.5},
                      annotation_text=name, annotation_position="top")
    fig.update_layout(
        title=title or f"Memory {what} over time ({hm.site}, {where})",
        xaxis_title="frame (memory update)", yaxis_title="memory token", yaxis={"autorange": "reversed"},
        template="plotly_white", margin={"t": 70},
    )
    return fig
