"""The memlens app: look at a trace store, step by step, tied to the camera frames.

    memlens app traces/cue                 # http://127.0.0.1:7860
    gradio apps/memlens_app.py             # live reload while editing (MEMLENS_TRACES=traces/cue)

Panels: an episode picker and a step slider with every camera of the step (small frames scaled up,
nearest neighbour) and the task; the memory heat map (tokens x updates, with axes, colour bar and hover)
with a cursor on the step; the map of every memory state (a PCA at once, the UMAP when fitted or saved)
with this episode's path and the current point; the episode table with filters; clicking a heat-map
cell, a map point or a table row jumps to that step (and episode) and its frame; probe, attention and
compare panels. `memlens.apps.view.TraceView` computes everything shown; this module lays it out.

Safety: the server binds 127.0.0.1 unless told otherwise, serves no files from disk (every picture is
returned as an array), and never unpickles anything (the saved UMAP is a plain `.npz`).
"""

import json
import socket

from memlens.apps.view import HEATMAP_CHOICES, CachedStore, TraceView
from memlens.errors import UserError
from memlens.store import TraceStoreError

__all__ = ["CachedStore", "TraceView", "build_app", "check_port", "free_port", "open_view", "serve"]

MAP_POLL_SECONDS = 1.0  # how often the page asks whether the UMAP is ready (only while it is being fitted)

# Forwards a click on a cell of the heat map or a point of the map to the server: plotly's `plotly_click`
# gives the clicked point's customdata, which goes into a hidden textbox whose `input` event the server
# handles. Gradio draws a plot with Plotly.react into one div per plot (listeners survive a redraw); a
# MutationObserver binds each new div once.
CLICK_JS = """
() => {
  const targets = [["heatmap", "heat_click"], ["map", "map_click"]];
  const bind = () => {
    for (const [plot, box] of targets) {
      const gd = document.querySelector(`#${plot} .js-plotly-plot`);
      if (!gd || gd.__memlensBound || typeof gd.on !== "function") continue;
      gd.__memlensBound = true;
      gd.on("plotly_click", (ev) => {
        const p = ev && ev.points && ev.points[0];
        if (!p || p.customdata === undefined) return;
        const input = document.querySelector(`#${box} textarea, #${box} input`);
        if (!input) return;
        input.value = JSON.stringify({customdata: Array.from(p.customdata, Number), at: Date.now()});
        input.dispatchEvent(new Event("input", {bubbles: true}));
      });
    }
  };
  new MutationObserver(bind).observe(document.body, {childList: true, subtree: true});
  bind();
}
"""
CSS = "#camera img { image-rendering: pixelated; }"


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


def _filters(rows: list[dict]) -> list[str]:
    """The table's filter choices: every value of every column with at most 20 distinct values."""
    out = ["all episodes"]
    for col in [c for c in (rows[0] if rows else {}) if c not in ("episode", "length")]:
        values = sorted({str(r.get(col)) for r in rows})
        if 1 < len(values) <= 20:
            out += [f"{col} = {v}" for v in values]
    return out


def _filtered(rows: list[dict], choice: str | None):
    import pandas as pd

    if choice and " = " in choice:
        col, value = choice.split(" = ", 1)
        rows = [r for r in rows if str(r.get(col)) == value]
    return pd.DataFrame(rows)


def _click(text: str) -> list:
    try:
        return json.loads(text)["customdata"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"a click message must be JSON with its point's customdata, got {text!r:.80}.") from exc


def build_app(traces, compare=None, view: TraceView | None = None):
    """The gradio Blocks app for the trace store at `traces` (and `compare`, a second store); `view`: the
    store's `TraceView` when the caller opened it already (the preview page's)."""
    import gradio as gr

    view, problem = (view, "") if view is not None else open_view(traces)
    with gr.Blocks(title="memlens") as app:
        app.memlens_view = view  # what the page shows (tests and notebooks read it)
        app.memlens_css = CSS
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
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                camera = gr.Image(view.frame(first, 0), label=view.camera_label(first), elem_id="camera",
                                  interactive=False, format="png", show_label=True)
            with gr.Column(scale=3, visible=view.has_memory):
                heat_value = gr.Radio(list(HEATMAP_CHOICES), value=HEATMAP_CHOICES[0], label="heat-map value "
                                      "(delta: change since the previous update; standardised: each token's norm "
                                      "as z-score; norm: raw)", elem_id="heat_value")
                heat = gr.Plot(view.heatmap_figure(first, 0, HEATMAP_CHOICES[0]), label="memory tokens (click a cell)",
                               elem_id="heatmap")
        with gr.Row(equal_height=False, visible=view.has_memory):
            with gr.Column(scale=3):
                color_by = gr.Dropdown(view.color_choices() if view.has_memory else ["time"], value="time",
                                       label="colour the map by", elem_id="color_by")
                mapplot = gr.Plot(view.map_figure(first, 0) if view.has_memory else None,
                                  label="memory states (click a point)", elem_id="map")
            with gr.Column(scale=2):
                rows = view.table()
                table_filter = gr.Dropdown(_filters(rows), value="all episodes", label="show", elem_id="table_filter")
                table = gr.Dataframe(_filtered(rows, None), label="episodes (select a row to open it)",
                                     interactive=False, elem_id="episodes", max_height=420)
        heat_click = gr.Textbox(visible="hidden", elem_id="heat_click")
        map_click = gr.Textbox(visible="hidden", elem_id="map_click")
        timer = gr.Timer(MAP_POLL_SECONDS, active=False)

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

        def guarded(fn):
            def run(*args):
                try:
                    return fn(*args)
                except (UserError, TraceStoreError, OSError, IndexError, KeyError, ValueError) as exc:
                    raise gr.Error(str(exc)) from exc
            return run

        def on_step(ep, s, value, colour):
            ep, s = int(ep), int(s)
            return (view.frame(ep, s), view.heatmap_figure(ep, s, value), view.map_figure(ep, s, colour),
                    view.info(ep, s))

        def on_episode(ep, pend, value, colour):
            ep = int(ep)
            n = view.episode_data(ep)["length"]
            s = min(int(pend) if pend is not None else 0, n - 1)
            frame, heatmap, points, text = on_step(ep, s, value, colour)
            return (_step_slider(n, s), None, gr.Image(frame, label=view.camera_label(ep)), heatmap, points, text,
                    *on_attention(ep))

        def heatmap_cell_to_step(ep: str, click: str) -> int:
            """Step of the clicked heat-map cell; `click` is the page's click message (its customdata)."""
            return view.click_target(_click(click), int(ep))[1]

        def map_point_to_step(click: str) -> tuple[str, int]:
            """(episode, step) of the clicked map point; `click` is the page's click message (its customdata)."""
            ep, s = view.click_target(_click(click))
            return str(ep), s

        def on_map_click(ep, click):
            new_ep, new_s = map_point_to_step(click)
            if new_ep == str(ep):
                return gr.update(), new_s, None
            return new_ep, gr.update(), new_s

        def on_row(evt: gr.SelectData):
            row = evt.row_value
            return str(int(row[0])) if row else gr.update()

        def on_map_ready(ep, s, colour):
            if view.start_umap():
                return gr.update(), gr.Timer(active=True)
            return view.map_figure(int(ep), int(s), colour), gr.Timer(active=False)

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

        baked = view.map_method() if view.has_memory else None  # the map the page's config carries

        def on_load():  # the page comes with its map; redrawn only if the UMAP arrived since the app was built
            fitting = view.start_umap() if view.has_memory else False
            fresh = view.map_figure(first, 0) if view.has_memory and view.map_method() != baked else gr.update()
            return fresh, gr.Timer(active=fitting), *on_attention(first), *on_compare()

        step.change(guarded(on_step), [episode, step, heat_value, color_by], [camera, heat, mapplot, info],
                    show_progress="hidden", api_name="step")
        episode.change(guarded(on_episode), [episode, pending, heat_value, color_by],
                       [step, pending, camera, heat, mapplot, info, attention_plot, attention_text],
                       api_name="episode")
        heat_value.change(guarded(lambda ep, s, v: view.heatmap_figure(int(ep), int(s), v)),
                          [episode, step, heat_value], [heat], api_name="heat_value")
        color_by.change(guarded(lambda ep, s, c: view.map_figure(int(ep), int(s), c)), [episode, step, color_by],
                        [mapplot], api_name="color_by")
        heat_click.change(guarded(heatmap_cell_to_step), [episode, heat_click], [step], api_visibility="private")
        map_click.change(guarded(on_map_click), [episode, map_click], [episode, step, pending],
                        api_visibility="private")
        table.select(on_row, None, [episode], api_visibility="private")
        table_filter.change(lambda c: _filtered(view.table(), c), [table_filter], [table], api_name="table")
        timer.tick(guarded(on_map_ready), [episode, step, color_by], [mapplot, timer], show_progress="hidden",
                   api_visibility="private")
        probe_button.click(on_probe, [probe_label, probe_features], [probe_text, probe_plot], api_name="probe")
        gr.api(heatmap_cell_to_step, api_name="heatmap_cell_to_step")
        gr.api(map_point_to_step, api_name="map_point_to_step")

        def attention_summary(ep: str) -> str:
            """The attention panel's text for episode `ep`."""
            return on_attention(ep)[1]

        gr.api(attention_summary, api_name="attention_summary")

        def compare_summary() -> str:
            """The compare panel's text."""
            return on_compare()[0]

        gr.api(compare_summary, api_name="compare_summary")
        app.load(on_load, None, [mapplot, timer, attention_plot, attention_text, compare_text, compare_plot],
                 show_progress="hidden")
        app.load(None, None, None, js=CLICK_JS)
    return app


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on (host, port). SO_REUSEADDR, as the servers themselves bind: connections of
    a server stopped a moment ago, waiting out TIME_WAIT, do not make the port busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


def serve(traces, *, host: str = "127.0.0.1", port: int = 7860, compare=None, block: bool = True,
          preview: bool = False):
    """Build and launch the app; a busy port is a UserError that suggests a free one. With `preview`, the
    port serves `memlens.apps.preview`'s page (the first episode's figures) while gradio is imported and
    the app built, then gradio takes it over (what `memlens app` does)."""
    check_port(host, port)
    view, first_page = None, None
    if preview:
        view, _ = open_view(traces)
        if view is not None:
            from memlens.apps.preview import Preview

            first_page = Preview(view, host, port, title=str(traces)).start()
            # gradio's import holds the GIL for seconds and would starve the map's gather and PCA (5.6 s
            # instead of 4 s for the full first page at 1,000 episodes); the app's build needs them anyway
            first_page.wait_for_map()
    try:
        app = build_app(traces, compare=compare, view=view)
        app.queue(default_concurrency_limit=4)
    finally:
        if first_page is not None:
            first_page.stop()
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=True,
               allowed_paths=[], quiet=True, css=CSS)
    return app
