"""The app's main figures: the heat map of one episode and the map of every memory state, as plotly figures.

Both are real figures (axes, tick labels, colour bar or legend, hover text) whose every cell or point
carries `customdata` naming the step it belongs to; the page forwards a click's `customdata` to the
server (`gradio_app.CLICK_JS`), so a click on a cell or a point jumps to that step and frame.

- `heatmap_figure(values, frames, ...)`: memory updates (x: the frame each update happened at) by memory
  tokens (y), the value's true range in the colour bar's title, a red box on the update in effect.
- `MapFigure`: the background of every state (coloured by time, task, success or a label; at most
  `MAX_POINTS` drawn, every state of the shown episode always), this episode's path, the current state.
"""

from __future__ import annotations

import numpy as np

from memlens.analysis.heatmap import VALUE_SHORT, VALUE_TITLES, MemoryHeatmap, update_edges, value_range
from memlens.analysis.heatmap import heatmap_figure as analysis_heatmap_figure

MAX_POINTS = 20_000  # drawn in the background; more is slow to send and to draw, and no more legible
WEBGL_ABOVE = 3_000  # points drawn with WebGL (scattergl) above this many
CURSOR = "#ff2828"
PALETTE = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff",
           "#fecb52")


def heatmap_figure(values: np.ndarray, frames: np.ndarray, *, value: str, episode: int, cursor: int | None,
                   raw_range: tuple[float, float], events=()):
    """`values[u, m]` of one episode; `cursor`: the update in effect (boxed in red); `raw_range`: the
    min and max of the raw token norm, named under the colour bar whatever the value shown."""
    hm = MemoryHeatmap(values=np.asarray(values, dtype=np.float64), frames=np.asarray(frames, dtype=np.int64),
                       value=value, episodes=[int(episode)], std=np.zeros_like(values, dtype=np.float64),
                       count=np.ones(len(values), dtype=np.int64))
    title = (f"Memory tokens of episode {episode}: {VALUE_TITLES[value]}<br><sub>raw token norm "
             f"{raw_range[0]:.4g} to {raw_range[1]:.4g}</sub>")
    fig = analysis_heatmap_figure(hm, title=title, events=events)
    lo, hi = value_range(hm.values)
    fig.update_traces(colorbar={"title": {"text": f"{VALUE_SHORT[value]}<br><sub>{lo:.4g} to {hi:.4g}</sub>"}})
    if cursor is not None and 0 <= cursor < len(hm.frames):
        edges = update_edges(hm.frames)
        fig.add_shape(type="rect", x0=int(edges[cursor]), x1=int(edges[cursor + 1]), y0=-0.5,
                      y1=hm.values.shape[1] - 0.5, xref="x", yref="y", line={"color": CURSOR, "width": 3})
    fig.update_layout(height=170 + 34 * hm.values.shape[1], margin={"t": 80, "b": 50, "l": 60, "r": 20},
                      uirevision=f"heat-{episode}")
    return fig


def color_values(points, color_by: str, success: dict[int, bool] | None = None) -> tuple[np.ndarray, bool]:
    """The value of `color_by` at every point, and whether it is a category."""
    if color_by == "time":
        return np.asarray(points.frame, dtype=np.float64), False
    if color_by == "task":
        return np.asarray(points.task if points.task is not None else np.full(len(points), ""), dtype=str), True
    if color_by == "success":
        success = success or {}
        return np.array(["yes" if success.get(int(e)) else "no" if int(e) in success else "unknown"
                         for e in points.episode]), True
    v = np.asarray(points.labels[color_by])
    categorical = v.dtype.kind in "OUSb" or (v.dtype.kind in "iu" and len(np.unique(v)) <= 20)
    return v, categorical


def drawn_rows(n: int) -> np.ndarray:
    """The rows of an `n`-point map drawn in its background: all, or `MAX_POINTS` of them (seeded)."""
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, MAX_POINTS, replace=False))


def map_title(method: str, n_drawn: int, n_points: int, n_episodes: int, color_by: str) -> str:
    drawn = f"{n_drawn:,} of {n_points:,} states drawn" if n_drawn < n_points else f"{n_points:,} states"
    return f"{method} of memory states ({drawn}, {n_episodes:,} episodes), coloured by {color_by}"


class MapFigure:
    """The map of every memory state, drawn once per colouring; `figure(rows, current)` adds an episode."""

    def __init__(self, points, *, method: str, axis_titles: tuple[str, str], color_by: str = "time",
                 success: dict[int, bool] | None = None):
        self.points, self.method, self.axis_titles, self.color_by = points, method, axis_titles, color_by
        self.shown = drawn_rows(len(points))
        self.custom = np.stack([points.episode, points.frame, points.update], axis=-1).astype(np.int64)
        self.size = 9 if len(self.shown) <= 500 else 6 if len(self.shown) <= 5000 else 4
        values, categorical = color_values(points, color_by, success)
        self.background = self._background(values, categorical)

    def _scatter(self, n: int):
        import plotly.graph_objects as go

        return go.Scattergl if n > WEBGL_ABOVE else go.Scatter

    def _background(self, values, categorical: bool) -> list:
        p, rows = self.points, self.shown
        scatter = self._scatter(len(rows))
        hover = ("episode %{customdata[0]} · step %{customdata[1]} (update %{customdata[2]})<br>"
                 + ("frame" if self.color_by == "time" else self.color_by) + " %{text}<extra></extra>")
        if not categorical:
            return [scatter(x=p.coords[rows, 0], y=p.coords[rows, 1], mode="markers", name="memory states",
                            customdata=self.custom[rows], text=np.char.mod("%.4g", values[rows]),
                            hovertemplate=hover, showlegend=False,
                            marker={"size": self.size, "color": values[rows], "colorscale": "Viridis", "opacity": 0.75,
                                    "colorbar": {"title": {"text": "frame" if self.color_by == "time"
                                                           else self.color_by}, "len": 0.8}})]
        traces = []
        for i, cat in enumerate(np.unique(values)):
            sel = rows[values[rows] == cat]
            traces.append(scatter(x=p.coords[sel, 0], y=p.coords[sel, 1], mode="markers",
                                  name=f"{self.color_by} = {cat}", customdata=self.custom[sel],
                                  text=np.full(len(sel), str(cat)), hovertemplate=hover,
                                  marker={"size": self.size, "color": PALETTE[i % len(PALETTE)], "opacity": 0.75}))
        return traces

    def figure(self, episode: int, rows: np.ndarray, current: int | None, note: str = ""):
        """The map with episode `episode` (its rows, in update order) drawn as a path and `current` starred."""
        import plotly.graph_objects as go

        p = self.points
        fig = go.Figure(self.background)
        rows = rows[np.argsort(p.update[rows], kind="stable")]
        # WebGL traces draw on a canvas above every SVG trace: the path and the star must be WebGL too when
        # the background is, or the background's points hide them
        scatter = self._scatter(len(self.shown))
        fig.add_trace(scatter(x=p.coords[rows, 0], y=p.coords[rows, 1], mode="lines+markers",
                                 name=f"episode {episode}", customdata=self.custom[rows],
                                 line={"color": "#222", "width": 2}, marker={"size": 7, "color": "#222"},
                                 hovertemplate="episode %{customdata[0]} · step %{customdata[1]} "
                                               "(update %{customdata[2]})<extra></extra>"))
        if current is not None:
            fig.add_trace(scatter(x=[p.coords[current, 0]], y=[p.coords[current, 1]], mode="markers",
                                     name="now", customdata=[self.custom[current]],
                                     hovertemplate="now: episode %{customdata[0]} · step %{customdata[1]}"
                                                   "<extra></extra>",
                                     marker={"symbol": "star", "size": 18, "color": CURSOR,
                                             "line": {"color": "black", "width": 1}}))
        title = map_title(self.method, len(self.shown), len(p), len(np.unique(p.episode)), self.color_by)
        fig.update_layout(
            title={"text": title + (f"<br><sub>{note}</sub>" if note else "")},
            xaxis_title=self.axis_titles[0], yaxis_title=self.axis_titles[1], template="plotly_white",
            height=520, margin={"t": 80, "b": 50, "l": 60, "r": 20}, clickmode="event",
            legend={"orientation": "h", "y": -0.12, "x": 0}, uirevision=f"{self.method}-{self.color_by}",
        )
        return fig
