"""Memory dynamics around an event: how much each memory token turns at each update, aligned to, by
default, the moment the cue disappears.

    >>> from memlens.analysis import memory_dynamics
    >>> dyn = memory_dynamics("traces/cue")                           # doctest: +SKIP
    >>> dyn.rel_frames, dyn.mean.shape                                # doctest: +SKIP
    (array([ 0, 10, 20, 30]), (4, 4))
    >>> dyn.save("dynamics.html")                                     # doctest: +SKIP

The value at update u (u >= 1) of token m is the cosine distance `1 - cos(x[u, m], x[u-1, m])` between
consecutive memory states, placed at the frame of update u. Cosine, not Euclidean: memory states are
RMSNorm outputs with nearly constant norms, so only their direction carries change.

Events (`event=`):

- `"cue_end"` (default): the first frame whose `phase` label leaves 0 (the cue is no longer shown);
- `"go"`: the first frame whose `phase` is 2;
- an int: that frame in every episode;
- `"LABEL=VALUE"`: the first frame whose label `LABEL` equals VALUE (any per-frame label of the store);
- `"LABEL"`: the first frame whose label `LABEL` differs from its value at frame 0;
- a callable `f(trace) -> frame | None` of an `EpisodeTrace` (episodes where it gives None are skipped).

x is the frame of each update minus the event's frame, in bins of `bin_frames` (default: the update
period, so each bin holds one update per episode); the mean and standard deviation over episodes are
taken per bin and token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memlens.analysis.data import AnalysisInputError, as_store, memory_states
from memlens.analysis.figures import nan_mean_std, save_figure

EVENTS = ("cue_end", "go")


@dataclass
class MemoryDynamics:
    """Per-token cosine distance between consecutive memory states, aligned to an event."""

    rel_frames: np.ndarray  # [B] bin start, frames relative to the event (0: the event's bin)
    mean: np.ndarray  # [B, M] mean over episodes
    std: np.ndarray  # [B, M] standard deviation over episodes
    count: np.ndarray  # [B] episodes with an update in the bin
    event: str
    event_frames: dict[int, int]  # episode -> frame of its event
    episode: np.ndarray  # [R] per (episode, update >= 1) row: episode
    rel_frame: np.ndarray  # [R] frame of the update minus the event's frame
    distance: np.ndarray  # [R, M] cosine distance to the previous update's state
    skipped: list[int] = field(default_factory=list)  # episodes without the event
    figure: object = field(default=None, repr=False)

    def save(self, path, **kw):
        return save_figure(self.figure, path, **kw)


def cosine_distance_steps(x: np.ndarray) -> np.ndarray:
    """`[U, M, H]` states of one episode -> `[U-1, M]`: `1 - cos(x[u], x[u-1])` per token, for u >= 1."""
    x = np.asarray(x, dtype=np.float64)
    a, b = x[1:], x[:-1]
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def event_frame(trace, event) -> int | None:
    """Frame of `event` (see the module docstring) in one episode, or None when it does not happen."""
    if callable(event):
        f = event(trace)
        return None if f is None else int(f)
    if isinstance(event, (int, np.integer)) and not isinstance(event, bool):
        return int(event) if 0 <= int(event) < int(trace.attrs.get("length", 1 << 62)) else None
    if isinstance(event, str) and event not in EVENTS:
        return _label_event_frame(trace, event)
    if event not in EVENTS:
        raise AnalysisInputError(f"event must be one of {EVENTS}, a frame number, LABEL=VALUE, LABEL or a function "
                                 f"of the episode trace; got {event!r}.")
    if "label/phase" not in trace:
        labels = _label_names(trace)
        raise AnalysisInputError(
            f"event {event!r} is found from the 'phase' label, which this trace store does not have; it has the "
            f"labels {labels or 'none'}. Pass event=<frame>, event='LABEL=VALUE' (the first frame a label takes "
            "a value), event='LABEL' (the first frame it changes) or a function of the episode trace instead "
            "(memlens plot --kind dynamics --event ...), or capture a dataset recorded by memlens record (it "
            "writes phase: 0 cue shown, 1 delay, 2 go).")
    phase = trace.load("label/phase")
    hits = np.flatnonzero(phase != 0) if event == "cue_end" else np.flatnonzero(phase == 2)
    return int(hits[0]) if len(hits) else None


def _label_names(trace) -> list[str]:
    return sorted(n.removeprefix("label/") for n in trace.names if n.startswith("label/"))


def _label_event_frame(trace, event: str) -> int | None:
    name, _, value = event.partition("=")
    name = name.strip().removeprefix("label/")
    if f"label/{name}" not in trace:
        labels = _label_names(trace)
        raise AnalysisInputError(
            f"event {event!r} names the label {name!r}, which this trace store does not have; it has the labels "
            f"{labels or 'none'}. Use one of those (LABEL=VALUE: the first frame it takes VALUE; LABEL: the first "
            f"frame it changes), a frame number, or one of {EVENTS} on stores with a phase label.")
    values = np.asarray(trace.load(f"label/{name}")).reshape(-1)
    if value.strip():
        try:
            target = np.asarray(value.strip()).astype(values.dtype)
        except ValueError:
            raise AnalysisInputError(f"event {event!r}: label {name!r} holds {values.dtype} values; {value!r} is not "
                                     "one of them.") from None
        hits = np.flatnonzero(values == target)
    else:
        hits = np.flatnonzero(values != values[0]) if len(values) else np.array([], dtype=int)
    return int(hits[0]) if len(hits) else None


def _event_name(event) -> str:
    if callable(event):
        return getattr(event, "__name__", "event")
    return event if isinstance(event, str) else f"frame {event}"


def memory_dynamics(store, episodes=None, *, event="cue_end", site: str = "memory/write",
                    bin_frames: int | None = None, title: str | None = None) -> MemoryDynamics:
    """Cosine distance between consecutive memory states per token, aligned to `event` over `episodes`
    (default: all). Returns `MemoryDynamics` (per-row data, per-bin mean/std/count) with a plotly `figure`."""
    store = as_store(store)
    ms = memory_states(store, episodes, site=site)
    eps = list(dict.fromkeys(ms.episode.tolist()))
    rows_ep, rows_rel, rows_d, event_frames, skipped = [], [], [], {}, []
    for e in eps:
        f0 = event_frame(store.episode(e), event)
        sel = ms.episode == e
        if f0 is None or sel.sum() < 2:
            skipped.append(e)
            continue
        event_frames[e] = f0
        d = cosine_distance_steps(ms.X[sel])
        rows_ep.append(np.full(len(d), e))
        rows_rel.append(ms.frame[sel][1:].astype(np.int64) - f0)
        rows_d.append(d)
    if not rows_d:
        raise AnalysisInputError(
            f"event {event!r} happens in none of the {len(eps)} selected episodes (or each has fewer than 2 memory "
            "updates), so there is nothing to align. Pick another event or other episodes.")
    episode, rel, dist = np.concatenate(rows_ep), np.concatenate(rows_rel), np.concatenate(rows_d)
    if bin_frames is None:
        steps = np.diff(ms.frame[ms.episode == next(iter(event_frames))])
        bin_frames = int(np.median(steps)) if len(steps) else 1
    if bin_frames < 1:
        raise AnalysisInputError(f"bin_frames must be >= 1; got {bin_frames}.")
    bins = np.floor_divide(rel, bin_frames) * bin_frames
    rel_frames = np.unique(bins)
    # [E, B, M] table (NaN where an episode has no update in a bin; several updates in one bin are averaged)
    ep_ids = sorted(event_frames)
    table = np.full((len(ep_ids), len(rel_frames), dist.shape[1]), np.nan)
    for i, e in enumerate(ep_ids):
        for j, b in enumerate(rel_frames):
            sel = (episode == e) & (bins == b)
            if sel.any():
                table[i, j] = dist[sel].mean(axis=0)
    mean, std, count = nan_mean_std(table, axis=0)
    dyn = MemoryDynamics(rel_frames=rel_frames, mean=mean, std=std, count=count.max(axis=-1),
                         event=_event_name(event),
                         event_frames=event_frames, episode=episode, rel_frame=rel, distance=dist, skipped=skipped)
    dyn.figure = dynamics_figure(dyn, title=title)
    return dyn


def dynamics_figure(dyn: MemoryDynamics, *, title: str | None = None):
    """One line per memory token (mean over episodes) with a band of +- one standard deviation."""
    import plotly.colors
    import plotly.graph_objects as go

    fig = go.Figure()
    palette = plotly.colors.qualitative.Plotly
    x = dyn.rel_frames
    for m in range(dyn.mean.shape[1]):
        color = palette[m % len(palette)]
        lo, hi = dyn.mean[:, m] - dyn.std[:, m], dyn.mean[:, m] + dyn.std[:, m]
        r, g, b = plotly.colors.hex_to_rgb(color)
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
                                 mode="lines", fillcolor=f"rgba({r},{g},{b},0.15)", line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, legendgroup=f"m{m}"))
        fig.add_trace(go.Scatter(x=x, y=dyn.mean[:, m], mode="lines+markers", name=f"m{m}", legendgroup=f"m{m}",
                                 line={"color": color}, customdata=np.stack([dyn.std[:, m], dyn.count], axis=-1),
                                 hovertemplate="%{x:+d} frames: %{y:.4g} (std %{customdata[0]:.3g}, "
                                               "%{customdata[1]} episodes)<extra>m" + str(m) + "</extra>"))
    fig.add_vline(x=0, line={"dash": "dot", "color": "gray"}, annotation_text=dyn.event, annotation_position="top")
    n = len(dyn.event_frames)
    fig.update_layout(
        title=title or f"Memory change per update around {dyn.event} (mean +- std over {n} episode{'s' * (n != 1)})",
        xaxis_title=f"frames relative to {dyn.event}", yaxis_title="cosine distance to the previous state",
        legend_title_text="memory token", template="plotly_white", margin={"t": 70},
    )
    return fig

