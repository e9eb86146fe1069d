"""UMAP of memory states: fit a 2-D map on many episodes, project new episodes (or another store) into
it, and draw each episode's path through it.

    >>> from memlens.analysis import MemoryEmbedding, memory_umap
    >>> emb = MemoryEmbedding(random_state=0).fit("traces/cue")             # doctest: +SKIP
    >>> emb.embedding_.coords.shape              # [N, 2]: one row per memory update  # doctest: +SKIP
    (80, 2)
    >>> new = emb.transform("traces/other", episodes=[0, 1])     # same map, new states  # doctest: +SKIP
    >>> emb.figure(color_by="cue", highlight=3, current=(3, 25)).show()      # doctest: +SKIP
    >>> emb.save("artifacts/umap_cue")   # embedding.npz (plain arrays) + reducer.joblib (pickle)  # doctest: +SKIP
    >>> view = memory_umap("traces/cue", color_by="cue")         # fit + figure in one call  # doctest: +SKIP
    >>> view.save("umap.html")                                               # doctest: +SKIP

Rows are memory updates (`memory/write` by default); features are all memory tokens concatenated
(`[M*H]`) or one `token`. When the feature dimension exceeds `pca_dims` (default 50), a PCA (randomized
SVD, fitted on at most `pca_max_rows` rows) reduces it first: UMAP's neighbour search is then cheaper
and less noisy. Above 10,000 states the defaults (`init="auto"`, `n_epochs=None`) switch to PCA
initialisation and 100 epochs, 2.8x faster on 100,000 states (bench/bench_umap.py, docs/analysis.md); below,
they are umap-learn's (spectral initialisation, its own epoch count). `MemoryEmbedding` follows the
scikit-learn contract: `__init__` only stores its keyword arguments, `fit` returns `self`, learned
attributes end in `_`, `transform` checks it was fitted.

Saved embeddings are a directory: `embedding.npz` holds the fitted coordinates and the row index
(episode, update, frame, labels, task) as plain arrays that `load_embedding_points` reads without
unpickling (what a web app should use); `reducer.joblib` holds the fitted PCA and UMAP objects.
`MemoryEmbedding.load` unpickles that file, which can run arbitrary code: load only files you trust.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

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

FORMAT = "memlens.memory_embedding/1"
MIN_STATES = 10
# Above LARGE states the defaults trade a little layout polish for time (bench/bench_umap.py): PCA
# initialisation instead of spectral, and LARGE_EPOCHS optimisation epochs instead of umap-learn's 200.
LARGE, LARGE_EPOCHS = 10_000, 100
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


class MemoryEmbedding:
    """UMAP (optionally after PCA) fitted on memory states; see the module docstring."""

    def __init__(self, *, n_components: int = 2, token: int | None = None, site: str = "memory/write",
                 pca_dims: int | None = 50, pca_max_rows: int = 20_000, n_neighbors: int = 15,
                 min_dist: float = 0.1, metric: str = "euclidean", n_epochs: int | None = None,
                 init: str = "auto", low_memory: bool = True, random_state: int | None = 0):
        self.n_components = n_components
        self.token = token
        self.site = site
        self.pca_dims = pca_dims
        self.pca_max_rows = pca_max_rows
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.n_epochs = n_epochs
        self.init = init
        self.low_memory = low_memory
        self.random_state = random_state

    _PARAMS = ("n_components", "token", "site", "pca_dims", "pca_max_rows", "n_neighbors", "min_dist", "metric",
               "n_epochs", "init", "low_memory", "random_state")

    _FITTED = ("n_features_in_", "n_neighbors_", "init_", "n_epochs_", "fit_seconds_")

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._PARAMS}

    def __repr__(self) -> str:
        return f"MemoryEmbedding({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # --- features --------------------------------------------------------------------------------------
    def _features(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 2:
            if self.token is not None:
                raise AnalysisInputError("token= needs states shaped [N, M, H]; got a flat [N, F] array.")
            return x
        if x.ndim != 3:
            raise AnalysisInputError(f"memory states must be [N, M, H] or [N, F]; got shape {x.shape}.")
        if self.token is None:
            return x.reshape(len(x), -1)
        if not -x.shape[1] <= self.token < x.shape[1]:
            raise AnalysisInputError(f"token {self.token} is out of range: the states have {x.shape[1]} memory "
                                     f"tokens (0..{x.shape[1] - 1}).")
        return x[:, self.token]

    def _reduce(self, feats: np.ndarray) -> np.ndarray:
        return self.pca_.transform(feats).astype(np.float32) if self.pca_ is not None else feats

    # --- estimator --------------------------------------------------------------------------------------
    def fit(self, data, episodes=None) -> MemoryEmbedding:
        """Fit on the memory states of `data`: a trace store (or its path) with optional `episodes`, a
        `MemoryStates`, or an array `[N, M, H]` / `[N, F]`. Sets `embedding_` (`EmbeddedStates`), `pca_`,
        `reducer_`, `n_features_in_`, `fit_seconds_` (PCA and UMAP wall times); returns `self`."""
        import umap
        from sklearn.decomposition import PCA

        x, index = _rows(data, episodes, self.site)
        feats = self._features(x)
        n_eps = len(np.unique(index.episode))
        if len(feats) < MIN_STATES or (index.source != "array" and n_eps < MIN_EPISODES):
            raise AnalysisInputError(
                f"too few memory states for a UMAP: found {len(feats)} states in {n_eps} episode(s); expected at "
                f"least {MIN_STATES} states from at least {MIN_EPISODES} episodes (a map of one episode cannot "
                "show what differs between episodes). Capture more episodes, or select more with episodes=.")
        self.n_features_in_ = feats.shape[1]
        t0 = time.perf_counter()
        self.pca_ = None
        if self.pca_dims and feats.shape[1] > self.pca_dims:
            n_fit = min(len(feats), self.pca_max_rows)
            rng = np.random.default_rng(self.random_state)
            sample = feats if n_fit == len(feats) else feats[np.sort(rng.choice(len(feats), n_fit, replace=False))]
            self.pca_ = PCA(n_components=min(self.pca_dims, n_fit), svd_solver="randomized",
                            random_state=self.random_state).fit(sample)
        z = self._reduce(feats)
        t1 = time.perf_counter()
        self.n_neighbors_ = min(self.n_neighbors, len(z) - 1)
        large = len(z) > LARGE
        self.init_ = self.init if self.init != "auto" else ("pca" if large else "spectral")
        self.n_epochs_ = self.n_epochs if self.n_epochs is not None else (LARGE_EPOCHS if large else None)
        self.reducer_ = umap.UMAP(
            n_components=self.n_components, n_neighbors=self.n_neighbors_, min_dist=self.min_dist,
            metric=self.metric, n_epochs=self.n_epochs_, init=self.init_, low_memory=self.low_memory,
            random_state=self.random_state, transform_seed=42 if self.random_state is None else self.random_state)
        with warnings.catch_warnings():  # "n_jobs overridden by random_state", spectral init fallbacks
            warnings.simplefilter("ignore")
            coords = self.reducer_.fit_transform(z)
        index.coords = np.asarray(coords, dtype=np.float32)
        self.embedding_ = index
        self.fit_seconds_ = {"pca": t1 - t0, "umap": time.perf_counter() - t1}
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "embedding_"):
            raise AnalysisInputError("this MemoryEmbedding is not fitted yet: call fit(store) first, or load a "
                                     "saved one with MemoryEmbedding.load(path).")

    def transform(self, data, episodes=None) -> EmbeddedStates:
        """Project the memory states of `data` (as in `fit`: a store or path with `episodes`, `MemoryStates`,
        or an array) into the fitted map without refitting it. Returns `EmbeddedStates`."""
        self._check_fitted()
        x, index = _rows(data, episodes, self.site)
        feats = self._features(x)
        if feats.shape[1] != self.n_features_in_:
            raise AnalysisInputError(
                f"these memory states have {feats.shape[1]} features per row, the embedding was fitted on "
                f"{self.n_features_in_} (token={self.token}); expected states of the same memory size (M x H). "
                "Project stores captured from policies with the same memory shape.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            index.coords = np.asarray(self.reducer_.transform(self._reduce(feats)), dtype=np.float32)
        return index

    def fit_transform(self, data, episodes=None) -> EmbeddedStates:
        return self.fit(data, episodes).embedding_

    def figure(self, points: EmbeddedStates | None = None, **kw):
        """`trajectory_figure` of `points` (default: the fitted states); see it for the keywords."""
        self._check_fitted()
        if points is not None and "background" not in kw:
            kw["background"] = self.embedding_
        return trajectory_figure(points if points is not None else self.embedding_, **kw)

    # --- persistence ------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write `path/embedding.npz` (coordinates and row index, plain arrays) and `path/reducer.joblib`
        (the fitted PCA and UMAP, pickled). Returns the directory."""
        import joblib

        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_embedding_points(self.embedding_, path / POINTS_FILE, params=self.get_params())
        joblib.dump({"format": FORMAT, "params": self.get_params(), "pca": self.pca_, "reducer": self.reducer_,
                     "fitted": {k: getattr(self, k) for k in self._FITTED}}, path / REDUCER_FILE)
        return path

    @classmethod
    def load(cls, path) -> MemoryEmbedding:
        """Load a saved embedding with its reducer, ready to `transform`. This unpickles `reducer.joblib`,
        which can execute arbitrary code: load only files you trust (for the coordinates alone, use
        `load_embedding_points`, which does not unpickle)."""
        import joblib

        path = Path(path)
        if not (path / REDUCER_FILE).is_file():
            raise AnalysisInputError(f"no saved memory embedding at {str(path)!r}: expected a directory holding "
                                     f"{POINTS_FILE} and {REDUCER_FILE} (written by MemoryEmbedding.save).")
        state = joblib.load(path / REDUCER_FILE)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise AnalysisInputError(f"{str(path / REDUCER_FILE)!r} is not a memlens memory embedding (format "
                                     f"{FORMAT}); it holds {type(state).__name__}.")
        emb = cls(**state["params"])
        emb.pca_, emb.reducer_ = state["pca"], state["reducer"]
        for k, v in state["fitted"].items():
            setattr(emb, k, v)
        emb.embedding_ = load_embedding_points(path)
        return emb


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
    """The fitted coordinates and row index of a saved embedding (a directory from `MemoryEmbedding.save`
    or its `embedding.npz`), read without unpickling anything: safe for files from anywhere."""
    path = Path(path)
    file = path / POINTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise AnalysisInputError(f"no saved memory embedding at {str(path)!r}: expected {POINTS_FILE} (written by "
                                 "MemoryEmbedding.save).")
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
    """A fitted `MemoryEmbedding` and the trajectory figure drawn from it."""

    embedding: MemoryEmbedding
    points: EmbeddedStates
    figure: object = field(default=None, repr=False)

    def save(self, path, **kw):
        return save_figure(self.figure, path, **kw)


def memory_umap(store, episodes=None, *, color_by: str = "time", highlight: int | None = None,
                current: tuple[int, int] | None = None, title: str | None = None, **params) -> UmapView:
    """Fit a `MemoryEmbedding(**params)` on `store` (all `episodes` by default) and draw the trajectories.
    Returns `UmapView(embedding, points, figure)`."""
    store = as_store(store)
    check_color_by(color_by, available_labels(store))  # before the (slow) fit
    emb = MemoryEmbedding(**params).fit(store, episodes)
    fig = trajectory_figure(emb.embedding_, color_by=color_by, highlight=highlight, current=current, title=title)
    return UmapView(emb, emb.embedding_, fig)
