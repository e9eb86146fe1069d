"""The page `memlens app` shows while gradio loads: the first episode's frame, heat map and map, at once.

Importing gradio takes 5-6 s on the 2-core test machine and its page about 6 s more to draw, so a gradio
page cannot open within the app's 5 s budget (docs/app.md). `memlens app` therefore first serves this page
from the standard library's HTTP server on the app's own port: the step's cameras and info line, and the
heat map and the map of every memory state that the gradio page opens on, drawn as pictures by matplotlib
(its Agg renderer: 1 s to import; plotly.js, 4.8 MB, takes the browser 3-5 s to compile here). Meanwhile
the gradio app is imported and built; then this server stops, gradio takes the port (`Preview.stop`, then
`launch`), and the page, which polls `/memlens-preview/ready` until gradio answers it (404), loads the gradio page in a frame over itself and
shows it once it has drawn. A page opened after that is the gradio page itself.

    >>> preview = Preview(view, "127.0.0.1", 7860).start()   # serves the page now  # doctest: +SKIP
    >>> ...                                                     # import gradio, build the app
    >>> preview.stop(); app.launch(server_port=7860)            # doctest: +SKIP

It serves three things and nothing from disk: `/` (this page, the frame and heat map inline), the map's
picture once drawn (`/memlens-preview/map.png`) and `/memlens-preview/ready`; everything else answers 404
until gradio has the port.
"""

from __future__ import annotations

import base64
import html
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from memlens.apps.panels import CURSOR, drawn_rows, map_title

MAP_PNG = "/memlens-preview/map.png"
READY_POLL_MS = 300  # how often the page asks whether gradio has taken over the port


def _png_data_url(image) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _markdown_line(text: str) -> str:
    """The info line's markdown (bold, italics, line breaks) as HTML, everything else escaped."""
    import re

    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"\*(.+?)\*", r"<i>\1</i>", out)
    return out.replace("  \n", "<br>")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>memlens · {title}</title>
<style>
  body {{ font-family: "Source Sans Pro", ui-sans-serif, system-ui, sans-serif; margin: 16px 24px; color: #1f2937; }}
  h1 {{ font-size: 1.6em; margin: 0 0 8px; }}
  #status {{ background: #fff7e6; border: 1px solid #f5c26b; border-radius: 6px; padding: 6px 10px; margin: 8px 0; }}
  .row {{ display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }}
  #camera {{ flex: 2; min-width: 320px; }}
  #camera img {{ image-rendering: pixelated; width: 100%; max-width: 720px; border: 1px solid #e5e7eb; }}
  .label {{ font-size: 0.85em; color: #6b7280; margin-bottom: 4px; }}
  #heatmap {{ flex: 3; min-width: 360px; }}
  #heatmap img, #map img {{ max-width: 100%; }}
  #app {{ position: fixed; inset: 0; width: 100%; height: 100%; border: 0; background: white; visibility: hidden; }}
</style>
</head>
<body>
<div id="preview">
<h1>memlens · <code>{title}</code></h1>
<div id="status">Opening the interactive page (loading gradio) &hellip; these are its first episode's
figures as pictures; hover, clicks, the step slider and the episode table arrive with it.</div>
<div id="info">{info}</div>
<div class="row">
  <div id="camera"><div class="label">{camera_label}</div><img alt="camera frame" src="{frame}"></div>
  <div id="heatmap">{heatmap}</div>
</div>
<div id="map">{map}</div>
</div>
<script>
(() => {{
  const drawn = (d) => !!(d && d.querySelector("#camera img") && ({ready_check}));
  const reveal = (frame) => {{
    frame.style.visibility = "visible";
    document.getElementById("preview").style.display = "none";
    try {{ document.title = frame.contentDocument.title || document.title; }} catch (e) {{}}
  }};
  const handOver = () => {{
    document.getElementById("status").textContent = "The interactive page is drawing ...";
    const frame = document.createElement("iframe");
    frame.id = "app"; frame.src = "/"; frame.title = "memlens";
    document.body.appendChild(frame);
    const t0 = Date.now();
    const check = () => {{
      let doc = null;
      try {{ doc = frame.contentDocument; }} catch (e) {{}}
      if (drawn(doc) || Date.now() - t0 > 60000) return reveal(frame);
      setTimeout(check, 100);
    }};
    check();
  }};
  const poll = async () => {{
    try {{
      const r = await fetch("/memlens-preview/ready", {{cache: "no-store"}});
      if (r.status === 404) return handOver();  // gradio has the port (this page's server answers 200)
    }} catch (e) {{}}
    setTimeout(poll, {poll_ms});
  }};
  setTimeout(poll, {poll_ms});
}})();
</script>
</body></html>
"""


def preview_page(view, title: str | None = None) -> str:
    """The page for `view`'s first episode at step 0 (the step the gradio page opens on). The map is an
    `<img>` of `MAP_PNG`, which the server answers once `MapPicture` has drawn it."""
    ep = view.episodes[0]
    pictures = {"heatmap": "", "map": ""}
    if view.has_memory:
        method = "UMAP" if view.map_method() == "umap" else "PCA"
        pictures = {"heatmap": _img(heatmap_picture(view, ep, 0), "memory heat map"),
                    "map": f'<img alt="{method} of every memory state" src="{MAP_PNG}">'}
    ready = ("d.querySelector('#heatmap .js-plotly-plot') && d.querySelector('#map .js-plotly-plot')"
             if view.has_memory else "true")
    return PAGE.format(title=html.escape(title or view.path), info=_markdown_line(view.info(ep, 0)),
                       camera_label=html.escape(view.camera_label(ep)), frame=_png_data_url(view.frame(ep, 0)),
                       ready_check=ready, poll_ms=READY_POLL_MS, **pictures)


class MapPicture:
    """The map of every memory state for the first page, drawn in a thread: gathering the states and their
    PCA take about 1 s at 1,000 episodes and 6 s at 10,000, so the page shows its frame and heat map first
    and the map when it is ready."""

    def __init__(self, view):
        self.view, self.png, self.error = view, None, None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._draw, name="memlens-preview-map", daemon=True)

    def start(self) -> MapPicture:
        self._thread.start()
        return self

    def _draw(self) -> None:
        try:
            self.view.map_points()  # gather + PCA (numpy, zarr: mostly outside the GIL) beside the heat map
            self.png, _ = map_picture(self.view, self.view.episodes[0], 0)
        except Exception as exc:  # noqa: BLE001 (shown on the page's map; the gradio page reports it too)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _import_matplotlib() -> None:
    import importlib

    for name in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
        importlib.import_module(name)


def _figure(width: float, height: float, *, top: float, bottom: float):
    """A matplotlib figure with fixed margins in inches (a layout engine costs 0.1-0.2 s a picture here)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.1 / width, top=1 - top / height, bottom=bottom / height)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def heatmap_picture(view, ep: int, step: int, value: str = "delta") -> bytes:
    """The gradio page's heat map as a PNG: tokens x updates, axes, colour bar with its range, the update in
    effect boxed in red, the phase changes as dotted lines."""
    from matplotlib.patches import Rectangle

    from memlens.analysis.heatmap import VALUE_SHORT, VALUE_TITLES, update_edges, value_range

    d = view.episode_data(ep)
    values = np.asarray(view.heat_values(ep, value), dtype=np.float64)  # [U, M]
    frames = np.asarray(d["update_frame"], dtype=np.int64)
    n_upd, n_tok = values.shape
    edges = update_edges(frames)
    fig = _figure(7.2, 1.9 + 0.34 * n_tok, top=0.75, bottom=0.55)
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(edges, np.arange(n_tok + 1) - 0.5, np.ma.masked_invalid(values.T), cmap="viridis")
    lo, hi = value_range(values)
    fig.colorbar(mesh, ax=ax, pad=0.01).set_label(f"{VALUE_SHORT[value]} ({lo:.4g} to {hi:.4g})")
    events = view.phase_events(ep)
    for frame, name in events:
        ax.axvline(frame, color="white", linestyle=":", linewidth=1.5)
        ax.text(frame, -0.6, name, ha="center", va="bottom", fontsize=8)
    u = view.update_at(ep, step)
    if 0 <= u < n_upd:
        ax.add_patch(Rectangle((edges[u], -0.5), edges[u + 1] - edges[u], n_tok, fill=False, edgecolor=CURSOR,
                               linewidth=3))
    ax.set_yticks(np.arange(n_tok), [f"m{m}" for m in range(n_tok)])
    ax.set_ylim(n_tok - 0.5, -0.5)
    ax.set_xlabel("frame (memory update)")
    ax.set_ylabel("memory token")
    norms = d["norms"]
    ax.set_title(f"Memory tokens of episode {ep}: {VALUE_TITLES[value]}\nraw token norm {float(norms.min()):.4g} "
                 f"to {float(norms.max()):.4g}", fontsize=11, pad=14 if events else 6)
    return _png(fig)


def map_picture(view, ep: int, step: int) -> tuple[bytes, str]:
    """The gradio page's map of every memory state as a PNG (coloured by time: axes, colour bar, the
    episode's path and its current state starred), and its title."""
    method = view.map_method()
    pts = view.map_points(method)
    shown = drawn_rows(len(pts))
    rows, current = view.map_position(ep, step, method)
    rows = rows[np.argsort(pts.update[rows], kind="stable")]
    fig = _figure(9.0, 5.6, top=0.6, bottom=1.0)
    ax = fig.add_subplot()
    size = 36 if len(shown) <= 500 else 14 if len(shown) <= 5000 else 4
    sc = ax.scatter(pts.coords[shown, 0], pts.coords[shown, 1], c=pts.frame[shown], s=size, cmap="viridis",
                    alpha=0.75, linewidths=0, rasterized=True)
    fig.colorbar(sc, ax=ax, pad=0.01).set_label("frame")
    ax.plot(pts.coords[rows, 0], pts.coords[rows, 1], "-o", color="#222", markersize=4, linewidth=2,
            label=f"episode {ep}")
    if current is not None:
        ax.plot(pts.coords[current, 0], pts.coords[current, 1], "*", color=CURSOR, markersize=16,
                markeredgecolor="black", label="now")
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.1), ncol=2, frameon=False)
    x_title, y_title = view.map_axis_titles(method)
    ax.set_xlabel(x_title)
    ax.set_ylabel(y_title)
    title = map_title("PCA" if method == "pca" else "UMAP", len(shown), len(pts), len(np.unique(pts.episode)), "time")
    note = view.map_note(method)
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=11)
    return _png(fig), title


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a browser that left mid-answer is not an error
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class Preview:
    """The page above, served on (host, port) from a daemon thread until `stop`."""

    def __init__(self, view, host: str, port: int, title: str | None = None):
        self.view, self.host, self.port, self.title = view, host, port, title
        self.page: bytes | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Preview:
        """Build the page, then serve it (the port answers only once there is something to show)."""
        self.map = MapPicture(self.view).start() if self.view.has_memory else None
        _import_matplotlib()
        self.page = preview_page(self.view, self.title).encode()
        preview = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the standard library's name)
                path = self.path.split("?", 1)[0]
                if path == "/":
                    self._send(200, "text/html; charset=utf-8", preview.page, "no-store")
                elif path == MAP_PNG and preview.map is not None:
                    preview.map.done.wait(600)
                    if preview.map.png is not None:
                        self._send(200, "image/png", preview.map.png, "no-store")
                    else:
                        self._send(500, "text/plain; charset=utf-8",
                                   f"the map could not be drawn: {preview.map.error}".encode(), "no-store")
                elif path == "/favicon.ico":
                    self._send(204, "image/x-icon", b"", "max-age=3600")
                elif path == "/memlens-preview/ready":
                    self._send(200, "application/json", b'{"page": "preview"}', "no-store")
                else:  # gradio's routes (/config first): not yet
                    self._send(404, "text/plain; charset=utf-8", b"the interactive page is still loading", "no-store")

            def _send(self, code: int, kind: str, body: bytes, cache: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", cache)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet, as the gradio server is
                pass

        self._server = _Server((self.host, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="memlens-preview", daemon=True)
        self._thread.start()
        return self

    def wait_for_map(self, timeout: float | None = None) -> None:
        if self.map is not None:
            self.map.done.wait(timeout)

    def stop(self) -> None:
        """Stop serving and free the port (for gradio)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None
