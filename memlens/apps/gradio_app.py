"""The memlens app: look at a trace store, step by step, tied to the camera frames.

    memlens app traces/cue                 # http://127.0.0.1:7860
    gradio apps/memlens_app.py             # live reload while editing (MEMLENS_TRACES=traces/cue)

Panels: an episode picker and a step slider with the camera frame(s) of the step; the token-norm heat
map with a cursor on the step; the UMAP of memory states with this episode's path and the current
point; clicking a heat-map cell or a UMAP point jumps to that step (and episode) and its frame; a
probe panel; an attention panel; a compare panel when a second store is given.

Safety: the server binds 127.0.0.1 unless told otherwise, serves no files from disk (every picture is
returned as an array), and never unpickles anything (the UMAP is fitted in the process).
"""

import socket
import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np

from memlens.analysis.data import memory_states, token_norms
from memlens.apps.render import HeatmapPicture, ScatterPicture
from memlens.errors import UserError
from memlens.store import TraceStore, TraceStoreError

PANEL_PROBE_FOLDS, PANEL_PROBE_COMPONENTS, PANEL_PROBE_EPISODES = 3, 32, 300


class CachedStore(TraceStore):
    """The app's read-only store: whole arrays read with `episode(k).load(name)` stay in memory, up to
    `max_bytes` (the least recently used are dropped first), so the embedding, the probe, the attention and
    the episode panels read each array from disk once. On 1,000 episodes, gathering every episode's memory
    states and labels for the UMAP costs 12-20 s of Zarr reads (3-5 ms per array, bench/bench_app.py); the
    probe panel reads the same arrays again. Slices (`episode(k)[name][i]`: the camera frame of a step) stay
    lazy reads, as in `TraceStore`. Committed episodes never change, so nothing goes stale (a store
    overwritten under a running app is not seen, as with the per-episode caches of `TraceView`)."""

    max_bytes = 512 << 20

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._arrays: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def episode(self, ep: int) -> "CachedEpisode":
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


class TraceView:
    """Everything the app shows, computed from one trace store and cached per episode (arrays read from
    the store are cached too: `CachedStore`; probe and attention panels per choice)."""

    def __init__(self, path):
        self.path = str(path)
        self.store = CachedStore.open(self.path)
        self.episodes = self.store.episodes()
        if not self.episodes:
            raise UserError(f"the trace store at {self.path} holds no episodes yet; run `memlens capture` into it.")
        self.has_memory = "memory/write" in self.store.episode(self.episodes[0])
        self._embedding = None
        self._embedding_lock = threading.Lock()  # the page load and a first slider move must not fit twice
        self.episode_data = lru_cache(maxsize=64)(self._episode_data)
        self.heatmap = lru_cache(maxsize=64)(self._heatmap)
        self.probe = lru_cache(maxsize=32)(self._probe)  # (summary, figure): small; the rows are not kept
        self.attention = lru_cache(maxsize=64)(self._attention)

    # ---- per episode ------------------------------------------------------------------
    def _episode_data(self, ep: int) -> dict:
        trace = self.store.episode(ep)
        names = trace.names
        d = {"length": int(trace.attrs["length"]), "update_of_frame": trace.load("frame/update"),
             "labels": {n.removeprefix("label/"): trace.load(n) for n in names if n.startswith("label/")},
             "predicted": trace.load("action/predicted"),
             "dataset": trace.load("action/dataset") if "action/dataset" in names else None,
             "task": trace.attrs.get("task", "")}
        d["update_frame"] = trace.load("memory/update_frame")
        d["norms"] = token_norms(trace.load("memory/write")) if self.has_memory else None
        return d

    def _heatmap(self, ep: int) -> HeatmapPicture | None:
        d = self.episode_data(ep)
        return None if d["norms"] is None else HeatmapPicture.draw(d["norms"])

    def frame(self, ep: int, step: int) -> np.ndarray:
        """Every camera of the step, side by side (`camera_label` names them)."""
        from memlens.store.traces import all_cameras

        return all_cameras(self.store, ep, step)

    def camera_label(self, ep: int) -> str:
        from memlens.store.traces import frame_cameras

        names = [c.removeprefix("observation.images.") for c in frame_cameras(self.store, ep)]
        return f"camera{'s' if len(names) > 1 else ''}: {' | '.join(names)}"

    def info(self, ep: int, step: int) -> str:
        d = self.episode_data(ep)
        u = int(d["update_of_frame"][step])
        labels = ", ".join(f"{k}={int(v[step])}" for k, v in sorted(d["labels"].items()))
        act = np.array2string(d["predicted"][step], precision=3)
        ds = "" if d["dataset"] is None else f" · dataset action {np.array2string(d['dataset'][step], precision=3)}"
        return (f"**episode {ep}** · step {step} / {d['length'] - 1} · memory update {u} (frame "
                f"{int(d['update_frame'][u])}) · {labels or 'no labels'}  \npredicted action {act}{ds}")

    # ---- the embedding over all episodes ------------------------------------------------
    def embedding(self):
        """(ScatterPicture, episode of each point, update of each point), fitted once, on first use."""
        with self._embedding_lock:
            if self._embedding is None:
                from memlens.analysis.embedding import fit_map

                ms = memory_states(self.store)
                coords = fit_map(ms, random_state=0).points.coords
                pic = ScatterPicture.draw(coords, ms.update.astype(float))
                self._embedding = (pic, ms.episode, ms.update)
        return self._embedding

    def umap_picture(self, ep: int, step: int) -> np.ndarray:
        pic, eps, upd = self.embedding()
        rows = np.flatnonzero(eps == ep)
        u = int(self.episode_data(ep)["update_of_frame"][step])
        return pic.with_path(rows, current=int(rows[u]) if u < len(rows) else None)

    def umap_click(self, x: float, y: float) -> tuple[int, int]:
        """(episode, step) of the point nearest the clicked pixel."""
        pic, eps, upd = self.embedding()
        i = pic.nearest(x, y)
        ep, u = int(eps[i]), int(upd[i])
        return ep, int(self.episode_data(ep)["update_frame"][u])

    def heatmap_click(self, ep: int, x: float, y: float) -> int:
        """Step (frame) of the memory update under the clicked heat-map cell."""
        col, _ = self.heatmap(ep).cell(int(x), int(y))
        return int(self.episode_data(ep)["update_frame"][col])

    def heatmap_picture(self, ep: int, step: int) -> np.ndarray | None:
        pic = self.heatmap(ep)
        return None if pic is None else pic.with_cursor(int(self.episode_data(ep)["update_of_frame"][step]))


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


def open_view(path) -> tuple[TraceView | None, str]:
    """(view, "") or (None, a message for the page): a bad store must not stop the server."""
    try:
        return TraceView(path), ""
    except (UserError, TraceStoreError, OSError, ValueError, KeyError) as exc:
        return None, (f"**Cannot show the trace store at `{path}`.** {exc} Expected a store written by "
                      "`memlens capture`; point the app at one (`memlens app PATH`) and reload the page.")


def _step_slider(n_frames: int, value: int, **kwargs):
    """The step slider of an episode of `n_frames` frames; a one-frame episode gets a fixed slider (gradio
    refuses a slider whose minimum equals its maximum)."""
    import gradio as gr

    return gr.Slider(0, max(n_frames - 1, 1), value=min(value, max(n_frames - 1, 0)), step=1, label="step",
                     interactive=n_frames > 1, **kwargs)


def build_app(traces, compare=None):
    """The gradio Blocks app for the trace store at `traces` (and `compare`, a second store)."""
    import gradio as gr

    view, problem = open_view(traces)
    with gr.Blocks(title="memlens") as app:
        app.memlens_view = view  # what the page shows (tests and notebooks read it)
        gr.Markdown(f"# memlens · `{traces}`")
        gr.Markdown(problem, elem_id="message", visible=bool(problem))
        if view is None:
            return app
        first = view.episodes[0]
        n0 = view.episode_data(first)["length"]
        with gr.Row():
            episode = gr.Dropdown([str(e) for e in view.episodes], value=str(first), label="episode", elem_id="episode")
            step = _step_slider(n0, 0, elem_id="step")
        info = gr.Markdown(view.info(first, 0), elem_id="info")
        pending = gr.State(None)  # step to land on after a click switched the episode
        with gr.Row():
            camera = gr.Image(view.frame(first, 0), label=view.camera_label(first), elem_id="camera", interactive=False, height=256,
                              format="png")
            heat = gr.Image(view.heatmap_picture(first, 0), label="memory token norms (click a cell)",
                            elem_id="heatmap", interactive=False, visible=view.has_memory, format="png")
        with gr.Row():
            umap = gr.Image(label="UMAP of memory states (click a point)", elem_id="umap", interactive=False,
                            visible=view.has_memory, format="png")

        with gr.Tab("probe"):
            labels = view.labels()
            with gr.Row():
                probe_label = gr.Dropdown(labels, value=labels[0] if labels else None, label="label",
                                          elem_id="probe_label")
                probe_features = gr.Dropdown(view.feature_sets(), value="memory", label="features",
                                             elem_id="probe_features")
                probe_button = gr.Button("train probe", elem_id="probe_train")
            probe_text = gr.Markdown(elem_id="probe_summary")
            probe_plot = gr.Plot(label="accuracy against step, next to its control", elem_id="probe_plot")
        with gr.Tab("attention"):
            attention_plot = gr.Plot(label="attention over time", elem_id="attention_plot")
            attention_text = gr.Markdown(elem_id="attention_summary")
        with gr.Tab("compare"):
            compare_text = gr.Markdown(elem_id="compare_summary")
            compare_plot = gr.Plot(elem_id="compare_plot")

        def on_step(ep, s):
            ep, s = int(ep), int(s)
            try:
                return (view.frame(ep, s), view.heatmap_picture(ep, s),
                        view.umap_picture(ep, s) if view.has_memory else None, view.info(ep, s))
            except (UserError, TraceStoreError, OSError, IndexError, KeyError) as exc:
                raise gr.Error(str(exc)) from exc

        def on_episode(ep, pend):
            ep = int(ep)
            s = int(pend) if pend is not None else 0
            n = view.episode_data(ep)["length"]
            s = min(s, n - 1)
            return (_step_slider(n, s), None, *on_step(ep, s),
                    *on_attention(ep))

        def heatmap_cell_to_step(ep: str, x: float, y: float) -> int:
            """Step (frame) of the memory update under pixel (x, y) of the heat-map image."""
            return view.heatmap_click(int(ep), float(x), float(y))

        def umap_point_to_step(x: float, y: float) -> tuple[str, int]:
            """(episode, step) of the UMAP point nearest pixel (x, y) of the UMAP image."""
            ep, s = view.umap_click(float(x), float(y))
            return str(ep), s

        def on_heat_click(ep, evt: gr.SelectData):
            return heatmap_cell_to_step(ep, *evt.index)

        def on_umap_click(ep, evt: gr.SelectData):
            new_ep, new_s = umap_point_to_step(*evt.index)
            if new_ep == str(ep):
                return gr.update(), new_s, None
            return new_ep, gr.update(), new_s

        def on_probe(label, features):
            try:
                return view.probe(label, features)
            except UserError as exc:
                return f"**Cannot train this probe.** {exc}", None

        def on_attention(ep):
            try:
                return view.attention(int(ep))
            except UserError as exc:
                return None, f"{exc}"

        def on_compare():
            if compare is None:
                return ("Start the app with a second store to compare two checkpoints on the same episodes: "
                        "`memlens app TRACES --compare OTHER_TRACES`."), None
            try:
                return view.compare(compare)
            except UserError as exc:
                return f"**Cannot compare.** {exc}", None

        step.change(on_step, [episode, step], [camera, heat, umap, info], show_progress="hidden", api_name="step")
        episode.change(on_episode, [episode, pending], [step, pending, camera, heat, umap, info, attention_plot,
                                                        attention_text], api_name="episode")
        heat.select(on_heat_click, [episode], [step], api_visibility="private")
        umap.select(on_umap_click, [episode], [episode, step, pending], api_visibility="private")
        probe_button.click(on_probe, [probe_label, probe_features], [probe_text, probe_plot], api_name="probe")
        gr.api(heatmap_cell_to_step, api_name="heatmap_cell_to_step")
        gr.api(umap_point_to_step, api_name="umap_point_to_step")
        def attention_summary(ep: str) -> str:
            """The attention panel's text for episode `ep`."""
            return on_attention(ep)[1]

        gr.api(attention_summary, api_name="attention_summary")

        def compare_summary() -> str:
            """The compare panel's text."""
            return on_compare()[0]

        gr.api(compare_summary, api_name="compare_summary")
        app.load(lambda: (view.umap_picture(first, 0) if view.has_memory else None, *on_attention(first),
                          *on_compare()),
                 None, [umap, attention_plot, attention_text, compare_text, compare_plot])
    return app


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str, start: int) -> int | None:
    return next((p for p in range(start + 1, start + 50) if port_is_free(host, p)), None)


def check_port(host: str, port: int) -> None:
    """UserError naming a free port if `port` is taken."""
    if not port_is_free(host, port):
        other = free_port(host, port)
        raise UserError(f"port {port} on {host} is already in use (another app or server is listening there). "
                        + (f"Try --port {other}." if other else "Pass a free port with --port."))


def serve(traces, *, host: str = "127.0.0.1", port: int = 7860, compare=None, block: bool = True):
    """Build and launch the app; a busy port is a UserError that suggests a free one."""
    check_port(host, port)
    app = build_app(traces, compare=compare)
    app.queue(default_concurrency_limit=4)
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=True,
               allowed_paths=[], quiet=True)
    return app
