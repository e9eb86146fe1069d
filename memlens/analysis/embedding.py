"""UMAP of memory states from trace stores: fit a 2-D map on many episodes, project new episodes (or another
store) into it, and draw each episode's path through it.

    >>> from memlens.analysis import fit_map, memory_umap
    >>> fitted = fit_map("traces/cue")                                       # doctest: +SKIP
    >>> fitted.points.coords.shape             # [N, 2]: one row per memory update  # doctest: +SKIP
    (80, 2)
    >>> new = fitted.project("traces/other", episodes=[0, 1])   # same map, new states   # doctest: +SKIP
    >>> fitted.figure(color_by="cue", highlight=3, current=(3, 25)).show()   # doctest: +SKIP
    >>> fitted.save("artifacts/umap_cue")   # embedding.npz (plain arrays) + reducer.joblib (pickle)  # doctest: +SKIP
    >>> view = memory_umap("traces/cue", color_by="cue")         # fit + figure in one call  # doctest: +SKIP
    >>> view.save("umap.html")                                               # doctest: +SKIP

Rows are memory updates (`memory/write` by default); features are all memory tokens concatenated
(`[M*H]`) or one `token`. The estimator is `memlens.analysis.estimators.MemoryEmbedding` (scikit-learn
contract, arrays in: PCA to `pca_dims` on a row subsample when the features are wider, then umap-learn);
this module reads the stores and keeps each row's episode, update, frame and labels beside its coordinates.

Saved maps are a directory: `embedding.npz` holds the fitted coordinates and the row index
(episode, update, frame, labels, task) as plain arrays that `load_embedding_points` reads without
unpickling (what a web app should use); `reducer.joblib` holds the fitted estimator.
`MemoryMap.load` unpickles that file, which can run arbitrary code: load only files you trust.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from memlens.analysis.data import (
    AnalysisInputError,
    MemoryStates,
    as_store,
    available_labels,
    memory_states,
    store_name,
)
from memlens.analysis.figures import save_figure

if TYPE_CHECKING:  # scikit-learn loads when a map is fitted, not when a saved one is read
    from memlens.analysis.estimators import MemoryEmbedding

FORMAT = "memlens.memory_embedding/2"
MIN_STATES = 10
MIN_EPISODES = 2
POINTS_FILE, REDUCER_FILE = "embedding.npz", "reducer.joblib"


@dataclass
class EmbeddedStates:
    """Memory states placed in an embedding: coordinates plus the row index that ties each to a frame."""

    coords: np.ndarray  # [N, C] float32
    episode: np.ndarray  # [N]
    update: np.ndarray  # [N] update index within the episode
    frame: np.ndarray  # [N] frame at which the update happened
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [N]
    task: np.ndarray | None = None  # [N] task string of each row's episode
    source: str = ""  # store the states came from

    def __len__(self) -> int:
        return len(self.coords)

    def row_at(self, episode: int, frame: int) -> int:
        """Row of the memory in effect at `frame` of `episode`: the last update at or before that frame."""
        rows = np.flatnonzero(self.episode == episode)
        if not len(rows):
            raise AnalysisInputError(f"episode {episode} is not in this embedding; it holds episodes "
                                     f"{sorted(set(self.episode.tolist()))[:20]}.")
        before = rows[self.frame[rows] <= frame]
        return int(before[-1] if len(before) else rows[0])


def _rows(data, episodes, site: str) -> tuple[np.ndarray, EmbeddedStates]:
    """States `[N, M, H]` (or `[N, F]`) and their row index from a store/path, `MemoryStates` or array."""
    if isinstance(data, np.ndarray):
        x = np.asarray(data, dtype=np.float32)
        n = len(x)
        return x, EmbeddedStates(np.empty((n, 0), np.float32), np.zeros(n, np.int64), np.arange(n), np.arange(n),
                                 task=np.full(n, ""), source="array")
    if isinstance(data, MemoryStates):
        ms, tasks, source = data, np.full(len(data.X), ""), "memory states"
    else:
        store = as_store(data)
        ms = memory_states(store, episodes, site=site)
        task_of = {e: str(store.episode(e).attrs.get("task", "")) for e in np.unique(ms.episode).tolist()}
        tasks, source = np.array([task_of[e] for e in ms.episode.tolist()]), store_name(store)
    return ms.X, EmbeddedStates(np.empty((len(ms.X), 0), np.float32), ms.episode, ms.update, ms.frame,
                                dict(ms.labels), tasks, source)


@dataclass
class MemoryMap:
    """A `MemoryEmbedding` fitted on the memory states of a store, with the row index of those states.

    `fit_map` makes one; `project` places other episodes (or another store) in the same map; `figure` draws
    trajectories; `save` / `MemoryMap.load` persist it."""

    estimator: MemoryEmbedding
    points: EmbeddedStates  # the fitted states: coordinates + episode, update, frame, labels, task
    site: str = "memory/write"

    def project(self, data, episodes=None) -> EmbeddedStates:
        """The memory states of `data` (a store or path with `episodes`, `MemoryStates`, or an array) placed
        in the fitted map without refitting it."""
        x, index = _rows(data, episodes, self.site)
        index.coords = self.estimator.transform(x)
        return index

    def figure(self, points: EmbeddedStates | None = None, **kw):
        """`trajectory_figure` of `points` (default: the fitted states, else over them); see it for keywords."""
        if points is not None and "background" not in kw:
            kw["background"] = self.points
        return trajectory_figure(points if points is not None else self.points, **kw)

    def save(self, path) -> Path:
        """Write `path/embedding.npz` (coordinates and row index, plain arrays) and `path/reducer.joblib`
        (the fitted estimator, pickled). Returns the directory."""
        import joblib

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        params = {**self.estimator.get_params(), "site": self.site}
        save_embedding_points(self.points, path / POINTS_FILE, params=params)
        joblib.dump({"format": FORMAT, "site": self.site, "estimator": self.estimator}, path / REDUCER_FILE)
        return path

    @classmethod
    def load(cls, path) -> MemoryMap:
        """Load a saved map with its fitted estimator, ready to `project`. This unpickles `reducer.joblib`,
        which can execute arbitrary code: load only files you trust (for the coordinates alone, use
        `load_embedding_points`, which does not unpickle)."""
        import joblib

        path = Path(path)
        if not (path / REDUCER_FILE).is_file():
            raise AnalysisInputError(f"no saved memory embedding at {str(path)!r}: expected a directory holding "
                                     f"{POINTS_FILE} and {REDUCER_FILE} (written by MemoryMap.save).")
        state = joblib.load(path / REDUCER_FILE)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise AnalysisInputError(f"{str(path / REDUCER_FILE)!r} is not a memlens memory embedding (format "
                                     f"{FORMAT}); it holds {type(state).__name__}.")
        return cls(state["estimator"], load_embedding_points(path), state["site"])


def fit_map(data, episodes=None, *, site: str = "memory/write", estimator: MemoryEmbedding | None = None,
            **params) -> MemoryMap:
    """Fit a UMAP on the memory states of `data`: a trace store (or its path) with optional `episodes`, a
    `MemoryStates`, or an array `[N, M, H]` / `[N, F]`. `estimator`: an unfitted `MemoryEmbedding` (default:
    one built from `params`). Needs at least 10 states from 2 episodes."""
    if estimator is not None and params:
        raise TypeError(f"pass an estimator or its parameters, not both (got {sorted(params)}).")
    from sklearn.base import clone

    from memlens.analysis.estimators import MemoryEmbedding

    estimator = clone(estimator) if estimator is not None else MemoryEmbedding(**params)
    x, index = _rows(data, episodes, site)
    n_eps = len(np.unique(index.episode))
    if len(x) < MIN_STATES or (index.source != "array" and n_eps < MIN_EPISODES):
        raise AnalysisInputError(
            f"too few memory states for a UMAP: found {len(x)} states in {n_eps} episode(s); expected at "
            f"least {MIN_STATES} states from at least {MIN_EPISODES} episodes (a map of one episode cannot "
            "show what differs between episodes). Capture more episodes, or select more with episodes=.")
    index.coords = estimator.fit_transform(x)
    return MemoryMap(estimator, index, site)


def save_embedding_points(points: EmbeddedStates, file, *, params: dict | None = None) -> Path:
    """Write `points` as a plain `.npz` (no pickled objects): coords, episode, update, frame, task,
    `label.<name>` arrays and a JSON `meta` string."""
    file = Path(file)
    arrays = {"coords": points.coords, "episode": points.episode, "update": points.update, "frame": points.frame,
              "task": np.asarray(points.task if points.task is not None else np.full(len(points), ""), dtype=str)}
    arrays.update({f"label.{k}": np.asarray(v) for k, v in points.labels.items()})
    meta = {"format": FORMAT, "source": points.source, "params": params or {}}
    np.savez(file, meta=np.array(json.dumps(meta)), **arrays)
    return file


def load_embedding_points(path) -> EmbeddedStates:
    """The fitted coordinates and row index of a saved embedding (a directory from `MemoryMap.save`
    or its `embedding.npz`), read without unpickling anything: safe for files from anywhere."""
    path = Path(path)
    file = path / POINTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise AnalysisInputError(f"no saved memory embedding at {str(path)!r}: expected {POINTS_FILE} (written by "
                                 "MemoryMap.save).")
    with np.load(file, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        labels = {k.removeprefix("label."): z[k] for k in z.files if k.startswith("label.")}
        return EmbeddedStates(z["coords"], z["episode"], z["update"], z["frame"], labels, z["task"],
                              meta.get("source", ""))


# --- figure -----------------------------------------------------------------------------------------------
COLOR_CHOICES = ("time", "task", "episode")


def check_color_by(color_by: str, labels) -> None:
    """Raise a clear error unless `color_by` is "time", "task", "episode" or one of `labels`."""
    if color_by not in COLOR_CHOICES and color_by not in labels:
        raise AnalysisInputError(
            f"cannot colour by {color_by!r}: it is not a label of these memory states. Expected 'time', 'task', "
            f"'episode' or one of the labels {sorted(labels) or '(none stored)'}.")


def _color_values(points: EmbeddedStates, color_by: str) -> tuple[np.ndarray, bool]:
    """Values to colour by and whether they are categories."""
    check_color_by(color_by, points.labels)
    if color_by == "time":
        return points.frame, False
    if color_by == "task":
        return np.asarray(points.task if points.task is not None else np.full(len(points), "")), True
    if color_by == "episode":
        return points.episode, True
    v = np.asarray(points.labels[color_by])
    categorical = v.dtype.kind in "OUSb" or (v.dtype.kind in "iu" and len(np.unique(v)) <= 20)
    return v, categorical


def _paths(points: EmbeddedStates, rows: np.ndarray) -> tuple[list, list]:
    """x, y of every episode's path in update order, episodes separated by None (one line trace for all)."""
    xs, ys = [], []
    for e in np.unique(points.episode[rows]):
        r = rows[points.episode[rows] == e]
        r = r[np.argsort(points.update[r], kind="stable")]
        xs += points.coords[r, 0].tolist() + [None]
        ys += points.coords[r, 1].tolist() + [None]
    return xs, ys


def trajectory_figure(points: EmbeddedStates, *, color_by: str = "time", highlight: int | None = None,
                      current: tuple[int, int] | None = None, background: EmbeddedStates | None = None,
                      title: str | None = None):
    """Each episode's path through the map (thin grey line) with its states as markers coloured by
    `color_by`: "time" (frame), "task", "episode" or a label name (e.g. "cue"). `highlight` draws one
    episode bold and fades the rest; `current=(episode, frame)` marks the memory in effect at that frame
    with a star; `background` (e.g. the fitted states, when `points` were projected) is drawn in grey
    underneath. Every marker's customdata is `[episode, frame, update]` (click -> camera frame)."""
    import plotly.express as px
    import plotly.graph_objects as go

    if points.coords.shape[1] < 2:
        raise AnalysisInputError(f"a trajectory figure needs 2-D coordinates; these have {points.coords.shape[1]}.")
    if highlight is not None and highlight not in set(points.episode.tolist()):
        raise AnalysisInputError(f"episode {highlight} is not among the embedded episodes "
                                 f"({sorted(set(points.episode.tolist()))[:20]}); pick one of those to highlight.")
    values, categorical = _color_values(points, color_by)
    scatter = go.Scattergl if len(points) > 20_000 else go.Scatter
    fig = go.Figure()
    if background is not None:
        fig.add_trace(scatter(x=background.coords[:, 0], y=background.coords[:, 1], mode="markers",
                              name="fitted states",
                              marker={"color": "lightgray", "size": 4}, hoverinfo="skip"))
    rows = np.arange(len(points))
    faded = highlight is not None
    xs, ys = _paths(points, rows)
    fig.add_trace(scatter(x=xs, y=ys, mode="lines", name="episode paths", hoverinfo="skip",
                          line={"color": "rgba(120,120,120,%s)" % (0.15 if faded else 0.35), "width": 1}))
    custom = np.stack([points.episode, points.frame, points.update], axis=-1)
    hover = ("episode %{customdata[0]}, frame %{customdata[1]} (update %{customdata[2]})<br>"
             + color_by + " %{text}<extra></extra>")
    opacity = 0.35 if faded else 0.9
    if categorical:
        palette = px.colors.qualitative.Plotly
        for i, cat in enumerate(np.unique(values)):
            sel = values == cat
            fig.add_trace(scatter(x=points.coords[sel, 0], y=points.coords[sel, 1], mode="markers",
                                  name=f"{color_by}={cat}", customdata=custom[sel], text=values[sel].astype(str),
                                  hovertemplate=hover, opacity=opacity,
                                  marker={"size": 7, "color": palette[i % len(palette)]}))
    else:
        fig.add_trace(scatter(x=points.coords[:, 0], y=points.coords[:, 1], mode="markers", name=color_by,
                              customdata=custom, text=np.char.mod("%.4g", values.astype(float)), hovertemplate=hover,
                              opacity=opacity, showlegend=False,
                              marker={"size": 7, "color": values, "colorscale": "Viridis",
                                      "colorbar": {"title": {"text": "frame" if color_by == "time" else color_by}}}))
    if highlight is not None:
        sel = np.flatnonzero(points.episode == highlight)
        sel = sel[np.argsort(points.update[sel], kind="stable")]
        fig.add_trace(scatter(x=points.coords[sel, 0], y=points.coords[sel, 1], mode="lines+markers",
                              name=f"episode {highlight}", line={"color": "black", "width": 3},
                              marker={"size": 9, "color": "black"}, customdata=custom[sel],
                              hovertemplate="episode %{customdata[0]}, frame %{customdata[1]}<extra></extra>"))
    if current is not None:
        r = points.row_at(*current)
        fig.add_trace(scatter(x=[points.coords[r, 0]], y=[points.coords[r, 1]], mode="markers",
                              name=f"now: episode {current[0]}, frame {current[1]}", customdata=[custom[r]],
                              hovertemplate="episode %{customdata[0]}, update at frame %{customdata[1]}<extra></extra>",
                              marker={"symbol": "star", "size": 20, "color": "red",
                                      "line": {"color": "black", "width": 1}}))
    n_eps = len(np.unique(points.episode))
    fig.update_layout(title=title or f"UMAP of memory states ({len(points)} updates of {n_eps} episodes), "
                                     f"coloured by {color_by}",
                      xaxis_title="UMAP 1", yaxis_title="UMAP 2", template="plotly_white", margin={"t": 70},
                      # a continuous colour bar takes the right-hand side: the legend goes below the plot
                      legend=None if categorical else {"orientation": "h", "y": -0.15, "x": 0})
    return fig


@dataclass
class UmapView:
    """A fitted `MemoryMap` and the trajectory figure drawn from it."""

    embedding: MemoryMap
    points: EmbeddedStates
    figure: object = field(default=None, repr=False)

    def save(self, path, **kw):
        return save_figure(self.figure, path, **kw)


def memory_umap(store, episodes=None, *, color_by: str = "time", highlight: int | None = None,
                current: tuple[int, int] | None = None, title: str | None = None, **params) -> UmapView:
    """Fit a map (`fit_map(store, episodes, **params)`) and draw the trajectories.
    Returns `UmapView(embedding, points, figure)`."""
    store = as_store(store)
    check_color_by(color_by, available_labels(store))  # before the (slow) fit
    fitted = fit_map(store, episodes, **params)
    fig = trajectory_figure(fitted.points, color_by=color_by, highlight=highlight, current=current, title=title)
    return UmapView(fitted, fitted.points, fig)
