"""`TraceView`: everything the app shows, computed from one trace store (no gradio here; tests call it directly).

    >>> view = TraceView("traces/cue")                                     # doctest: +SKIP
    >>> view.frame(3, 25)                  # every camera of step 25, side by side, legible  # doctest: +SKIP
    >>> view.heatmap_figure(3, 25)         # plotly: tokens x updates, cursor on step 25     # doctest: +SKIP
    >>> view.map_figure(3, 25)             # plotly: every memory state, episode 3's path    # doctest: +SKIP
    >>> view.table()                       # one row per episode: task, length, success, labels  # doctest: +SKIP

The map of memory states is the store's saved UMAP when there is one for its current episodes
(`memlens.analysis.store_embedding`); otherwise a PCA, shown at once, while the UMAP is fitted in a
background thread (`start_umap`) and saved beside the traces for the next time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np

from memlens.analysis.data import memory_states, token_norms
from memlens.apps.panels import MapFigure, heatmap_figure
from memlens.errors import UserError
from memlens.store import TraceStore

PANEL_PROBE_FOLDS, PANEL_PROBE_COMPONENTS, PANEL_PROBE_EPISODES = 3, 32, 300
CAMERA_HEIGHT = 256  # small frames are scaled up (nearest neighbour, whole factors) to at least this
HEATMAP_CHOICES = ("delta", "standardised", "norm")


class CachedStore(TraceStore):
    """The app's read-only store: whole arrays read with `episode(k).load(name)` stay in memory, up to
    `max_bytes` (the least recently used are dropped first), so the probe, the attention and the episode
    panels read each array from disk once. Slices (`episode(k)[name][i]`: the camera frame of a step)
    stay lazy reads, as in `TraceStore`. Committed episodes never change, so nothing goes stale."""

    max_bytes = 512 << 20

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._arrays: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def episode(self, ep: int) -> CachedEpisode:
        return CachedEpisode(super().episode(ep), self)

    def cached_load(self, trace, name: str) -> np.ndarray:
        key = (trace.index, name)
        with self._lock:
            if key in self._arrays:
                self._arrays.move_to_end(key)
                return self._arrays[key]
        arr = trace.load(name)
        arr.flags.writeable = False  # shared by every reader
        with self._lock:
            if key not in self._arrays and arr.nbytes <= self.max_bytes:
                self._arrays[key] = arr
                self._bytes += arr.nbytes
                while self._bytes > self.max_bytes:
                    self._bytes -= self._arrays.popitem(last=False)[1].nbytes
        return arr


class CachedEpisode:
    """An `EpisodeTrace` whose `load` goes through its `CachedStore` (everything else is the trace's own)."""

    def __init__(self, trace, store: CachedStore):
        self._trace, self._store = trace, store

    def __getattr__(self, name):
        return getattr(self._trace, name)

    def __contains__(self, name: str) -> bool:
        return name in self._trace

    def __getitem__(self, name: str):
        return self._trace[name]

    def load(self, name: str) -> np.ndarray:
        return self._store.cached_load(self._trace, name)

    def __repr__(self) -> str:
        return repr(self._trace)


def legible(images: list[np.ndarray], min_height: int = CAMERA_HEIGHT, gap: int = 6) -> np.ndarray:
    """Camera images side by side, each scaled up by a whole factor (nearest neighbour) to at least
    `min_height` rows (`memlens.store.traces.side_by_side`)."""
    from memlens.store.traces import side_by_side

    return side_by_side(images, gap=gap, min_height=min_height)


class TraceView:
    """Everything the app shows, computed from one trace store and cached per episode."""

    def __init__(self, path):
        self.path = str(path)
        self.store = CachedStore.open(self.path)
        self.episodes = self.store.episodes()
        if not self.episodes:
            raise UserError(f"the trace store at {self.path} holds no episodes yet; run `memlens capture` into it.")
        self.has_memory = "memory/write" in self.store.episode(self.episodes[0])
        self._lock = threading.Lock()  # the page load and a first slider move must not gather twice
        self._pca_lock = threading.Lock()
        self._states = None
        self._maps: dict[str, object] = {}  # method -> EmbeddedStates ("pca", "umap")
        self._pca_variance = None
        self._umap_thread: threading.Thread | None = None
        self.umap_error: str | None = None
        self.episode_data = lru_cache(maxsize=256)(self._episode_data)
        self._map_figures = lru_cache(maxsize=16)(self._map_figure_base)
        self.table = lru_cache(maxsize=1)(self._table)  # committed episodes never change: rows read once
        self.probe = lru_cache(maxsize=32)(self._probe)
        self.attention = lru_cache(maxsize=64)(self._attention)

    # ---- per episode ------------------------------------------------------------------
    def _episode_data(self, ep: int) -> dict:
        trace = self.store.episode(ep)
        names = trace.names
        d = {"length": int(trace.attrs["length"]), "update_of_frame": trace.load("frame/update"),
             "labels": {n.removeprefix("label/"): trace.load(n) for n in names if n.startswith("label/")},
             "predicted": trace.load("action/predicted"),
             "dataset": trace.load("action/dataset") if "action/dataset" in names else None,
             "task": str(trace.attrs.get("task", "")), "success": trace.attrs.get("success"),
             "update_frame": trace.load("memory/update_frame")}
        d["memory"] = trace.load("memory/write") if self.has_memory else None
        d["norms"] = token_norms(d["memory"]) if self.has_memory else None
        return d

    def update_at(self, ep: int, step: int) -> int:
        return int(self.episode_data(ep)["update_of_frame"][step])

    def frame(self, ep: int, step: int) -> np.ndarray:
        """Every camera of the step, side by side, small frames scaled up (`camera_label` names them)."""
        from memlens.store.traces import frame, frame_cameras

        return legible([frame(self.store, ep, step, cam) for cam in frame_cameras(self.store, ep)])

    def camera_label(self, ep: int) -> str:
        from memlens.store.traces import frame_cameras

        names = [c.removeprefix("observation.images.") for c in frame_cameras(self.store, ep)]
        return f"camera{'s' if len(names) > 1 else ''}: {' | '.join(names)}"

    def info(self, ep: int, step: int) -> str:
        d = self.episode_data(ep)
        u = self.update_at(ep, step)
        labels = ", ".join(f"{k}={int(v[step])}" for k, v in sorted(d["labels"].items()))
        act = np.array2string(d["predicted"][step], precision=3)
        ds = "" if d["dataset"] is None else f" · dataset action {np.array2string(d['dataset'][step], precision=3)}"
        success = "" if d["success"] is None else f" · {'success' if d['success'] else 'failure'}"
        task = f"  \ntask: *{d['task']}*" if d["task"] else ""
        return (f"**episode {ep}** · step {step} / {d['length'] - 1} · memory update {u} (frame "
                f"{int(d['update_frame'][u])}) · {labels or 'no labels'}{success}{task}  \npredicted action "
                f"{act}{ds}")

    # ---- the heat map -----------------------------------------------------------------
    def heat_values(self, ep: int, value: str = "delta") -> np.ndarray:
        from memlens.analysis.heatmap import token_values

        return token_values(self.episode_data(ep)["memory"], value)

    def phase_events(self, ep: int) -> list[tuple[int, str]]:
        """(frame, name) of each change of the episode's `phase` label (none without one)."""
        from memlens.analysis.heatmap import phase_events

        phase = self.episode_data(ep)["labels"].get("phase")
        return [] if phase is None else phase_events(phase)

    def heatmap_figure(self, ep: int, step: int, value: str = "delta"):
        d = self.episode_data(ep)
        if d["norms"] is None:
            return None
        return heatmap_figure(self.heat_values(ep, value), d["update_frame"], value=value, episode=ep,
                              cursor=self.update_at(ep, step), events=self.phase_events(ep),
                              raw_range=(float(d["norms"].min()), float(d["norms"].max())))

    # ---- the map of every memory state ------------------------------------------------
    def states(self):
        with self._lock:
            if self._states is None:
                self._states = memory_states(self.store)
            return self._states

    def map_method(self) -> str:
        """"umap" once the UMAP is there (saved, or fitted in this process), else "pca"."""
        if "umap" not in self._maps:
            from memlens.analysis.store_embedding import cached_umap

            with self._lock:
                if "umap" not in self._maps and (pts := cached_umap(self.store)) is not None:
                    self._maps["umap"] = pts
        return "umap" if "umap" in self._maps else "pca"

    def map_points(self, method: str | None = None):
        method = method or self.map_method()
        if method == "pca" and "pca" not in self._maps:
            from memlens.analysis.store_embedding import pca_points

            with self._pca_lock:  # the first page's thread and the gradio build must not both compute it
                if "pca" not in self._maps:
                    pts, var = pca_points(self.states(), self.store)
                    with self._lock:
                        self._maps["pca"], self._pca_variance = pts, var
        return self._maps[method]

    def start_umap(self) -> bool:
        """Fit the UMAP in a background thread (once) unless it is saved; True while it is being fitted."""
        if self.map_method() == "umap" or not self.has_memory:
            return False
        with self._lock:
            if self._umap_thread is None:
                self._umap_thread = threading.Thread(target=self._fit_umap, name="memlens-umap", daemon=True)
                self._umap_thread.start()
        return self._umap_thread.is_alive()

    def _fit_umap(self) -> None:
        from memlens.analysis.store_embedding import umap_points

        try:
            pts = umap_points(self.store, self.states())
        except UserError as exc:  # e.g. too few states for a UMAP: the PCA stays
            self.umap_error = str(exc)
            return
        with self._lock:
            self._maps["umap"] = pts

    def wait_for_umap(self, timeout: float | None = None) -> str:
        self.start_umap()
        if self._umap_thread is not None:
            self._umap_thread.join(timeout)
        return self.map_method()

    def color_choices(self) -> list[str]:
        choices = ["time", "task"]
        if any(self.episode_data(e)["success"] is not None for e in self.episodes[:1]):
            choices.append("success")
        return choices + sorted(self.states().labels)

    def _success(self) -> dict[int, bool]:
        return {r["episode"]: r["success"] for r in self.table() if "success" in r}

    def map_axis_titles(self, method: str) -> tuple[str, str]:
        if method == "pca":
            self.map_points("pca")
            var = self._pca_variance if self._pca_variance is not None else np.zeros(2)
            return f"PC 1 ({100 * var[0]:.0f}% of variance)", f"PC 2 ({100 * var[1]:.0f}% of variance)"
        return "UMAP 1", "UMAP 2"

    def map_note(self, method: str) -> str:
        if method != "pca":
            return ""
        return ("UMAP being fitted in the background; it replaces this PCA when ready" if self.umap_error is None
                else f"no UMAP: {self.umap_error}")

    def map_position(self, ep: int, step: int, method: str | None = None) -> tuple[np.ndarray, int | None]:
        """The map's rows of episode `ep` and the row of the state in effect at `step` (None if not drawn)."""
        pts = self.map_points(method)
        rows = np.flatnonzero(pts.episode == ep)
        frame = int(self.episode_data(ep)["update_frame"][self.update_at(ep, step)])
        return rows, (pts.row_at(ep, frame) if len(rows) else None)

    def _map_figure_base(self, method: str, color_by: str) -> MapFigure:
        success = self._success() if color_by == "success" else None
        return MapFigure(self.map_points(method), method="PCA" if method == "pca" else "UMAP",
                         axis_titles=self.map_axis_titles(method), color_by=color_by, success=success)

    def map_figure(self, ep: int, step: int, color_by: str = "time", method: str | None = None):
        if not self.has_memory:
            return None
        method = method or self.map_method()
        base = self._map_figures(method, color_by)
        rows, current = self.map_position(ep, step, method)
        return base.figure(ep, rows, current, note=self.map_note(method))

    # ---- clicks -----------------------------------------------------------------------
    def click_target(self, customdata, ep: int | None = None) -> tuple[int, int]:
        """(episode, step) of a clicked heat-map cell (`[frame, update, episode]`) or map point
        (`[episode, frame, update]`), as the figures' customdata name them."""
        cd = [int(v) for v in customdata]
        if len(cd) != 3:
            raise UserError(f"a click must carry three numbers (its cell's or point's customdata), got {customdata!r}.")
        return (int(ep), cd[0]) if ep is not None else (cd[0], cd[1])

    # ---- the episode table ------------------------------------------------------------
    def _table(self) -> list[dict]:
        """One row per episode: episode, task (when the store has several), length, success (live
        captures), and every label that is constant over the episode (its value; "varies" otherwise)."""
        rows = []
        labels = sorted(self.states().labels) if self.has_memory else []
        st = self.states() if self.has_memory else None
        for e in self.episodes:
            attrs = self.store.episode(e).attrs
            row = {"episode": int(e), "task": str(attrs.get("task", "")), "length": int(attrs.get("length", 0))}
            if attrs.get("success") is not None:
                row["success"] = bool(attrs["success"])
            for name in labels:
                v = np.unique(st.labels[name][st.episode == e])
                row[name] = int(v[0]) if len(v) == 1 and v.dtype.kind in "iub" else (
                    str(v[0]) if len(v) == 1 else "varies")
            rows.append(row)
        if len({r["task"] for r in rows}) == 1:  # one task: said once in the info line, not in every row
            for r in rows:
                del r["task"]
        return rows

    # ---- probe, attention and compare panels (the analysis API, unchanged) ------------------
    def labels(self) -> list[str]:
        from memlens.analysis.data import available_labels

        return available_labels(self.store) + ["task", "future_action"]

    def feature_sets(self) -> list[str]:
        trace = self.store.episode(self.episodes[0])
        sets = ["memory"] if self.has_memory else []
        if self.has_memory:
            sets += [f"token:{i}" for i in range(trace.shapes["memory/write"][1])] + ["initial"]
        if "hidden/memory" in trace:
            sets += [f"layer:{i}" for i in range(trace.shapes["hidden/memory"][1])]
        if "hidden/observation" in trace:
            sets.append("observation")
        return sets

    def _probe(self, label: str, features: str):
        """The panel's probe: the analysis API's grouped, controlled probe, sized for an interaction
        (at most 300 episodes, a fixed random subset; 3 folds; 32 PCA components: under 1 s on a store of
        1,000 episodes, against ~16 s for the full 5-fold, 128-component probe on all of them)."""
        from memlens.analysis.probes import MemoryProbe, probe_data, probe_on

        eps = self.episodes
        if len(eps) > PANEL_PROBE_EPISODES:  # a fixed random subset: the same one for every choice
            eps = sorted(np.random.default_rng(0).choice(eps, PANEL_PROBE_EPISODES, replace=False).tolist())
        data = probe_data(self.store, label, features=features, episodes=eps)
        est = MemoryProbe(data.kind, n_components=PANEL_PROBE_COMPONENTS, max_iter=100)
        res = probe_on(data, n_splits=PANEL_PROBE_FOLDS, estimator=est)
        subset = f"{len(eps)} of {len(self.episodes)} episodes, " if len(eps) < len(self.episodes) else ""
        return (f"{res.summary()}  \n*interactive probe: {subset}{PANEL_PROBE_FOLDS} folds, {PANEL_PROBE_COMPONENTS} "
                "PCA components; `memlens.analysis.probe` runs the full one*"), res.figure

    def _attention(self, ep: int):
        from memlens.analysis.attention import attention_over_time

        att = attention_over_time(self.store, ep)
        reads = att.action_from_memory
        text = ("" if reads is None else f"actions read {100 * float(reads.mean()):.1f}% of their attention from "
                f"memory (mean over updates, layers and heads); groups: {', '.join(att.groups)}")
        return att.figure, text

    def compare(self, other):
        from memlens.analysis.compare import compare_checkpoints

        res = compare_checkpoints(self.store, other, names=("this", "other"))
        rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                         for k, v in res.summary.items())
        text = (f"**this** `{res.stores[0]}` ({res.checkpoints[0]})  \n**other** `{res.stores[1]}` "
                f"({res.checkpoints[1]})\n\n| measure | value |\n|---|---|\n{rows}\n\n" + "  \n".join(res.notes))
        return text, res.figure
