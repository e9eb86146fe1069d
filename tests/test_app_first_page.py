"""The app's first page (memlens.apps.preview): the figures at once, then the gradio page in its place."""

import socket
import threading

import numpy as np
import pytest

from memlens.apps import gradio_app
from memlens.apps.gradio_app import TraceView, port_is_free
from memlens.apps.preview import preview_page

from conftest import derived_store
from test_app import _free_port, _plot_xy, browser


def test_the_map_pca_is_scikit_learns_pca_without_importing_it(analysis_traces):
    import subprocess
    import sys

    from sklearn.decomposition import PCA

    from memlens.analysis.data import memory_states
    from memlens.analysis.store_embedding import pca_points
    from memlens.store import TraceStore

    ms = memory_states(TraceStore.open(analysis_traces))
    pts, var = pca_points(ms)
    ref = PCA(2).fit(ms.features())
    np.testing.assert_allclose(var, ref.explained_variance_ratio_, rtol=1e-3)
    coords = ref.transform(ms.features())
    for i in range(2):  # the same axes (signs may differ)
        assert abs(np.corrcoef(coords[:, i], pts.coords[:, i])[0, 1]) > 0.999
    code = ("import sys; from memlens.analysis.data import memory_states; from memlens.store import TraceStore; "
            "from memlens.analysis.store_embedding import pca_points; "
            f"pca_points(memory_states(TraceStore.open({str(analysis_traces)!r}))); "
            "print('sklearn' in sys.modules, 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]  # 3.6 s of imports the first page does not pay


def test_a_stopped_servers_waiting_connections_do_not_make_its_port_busy():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.listen()
    assert not port_is_free("127.0.0.1", port)
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()  # the server closes first: its side of the connection waits out TIME_WAIT on `port`
    client.recv(1)
    client.close()
    listener.close()
    assert port_is_free("127.0.0.1", port)  # a restarted `memlens app` on the same port must not be refused


def test_the_first_page_of_a_store_without_memory_tokens_shows_its_cameras(analysis_traces, tmp_path):
    from memlens.store import TraceStore

    eps = TraceStore.open(analysis_traces).episodes()[:2]
    store = derived_store(analysis_traces, tmp_path / "baseline", episodes=eps,
                          drop=("memory/write", "memory/read", "attention/"))
    view = TraceView(store)
    assert not view.has_memory
    page = preview_page(view)
    assert page.count("<img") == 1 and 'id="camera"' in page and "episode " in page


@pytest.mark.browser
def test_the_first_page_shows_the_figures_then_the_gradio_page_takes_its_place(analysis_traces, tmp_path,
                                                                               monkeypatch):
    from playwright.sync_api import sync_playwright

    built = threading.Event()
    release = threading.Event()
    real_build = gradio_app.build_app

    def build_when_released(*args, **kwargs):  # the real build, held until the first page has been looked at
        release.wait(120)
        app = real_build(*args, **kwargs)
        built.set()
        return app

    monkeypatch.setattr(gradio_app, "build_app", build_when_released)
    port = _free_port()
    served = {}
    thread = threading.Thread(target=lambda: served.setdefault(
        "app", gradio_app.serve(analysis_traces, port=port, block=False, preview=True)), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"
    with sync_playwright() as p:
        b = browser(p)
        try:
            page = b.new_page(viewport={"width": 1500, "height": 1400})
            for _ in range(600):  # the first page's server answers once its pictures are drawn
                try:
                    page.goto(url, wait_until="load", timeout=5000)
                    break
                except Exception:  # noqa: BLE001 (connection refused until then)
                    page.wait_for_timeout(100)
            assert not built.is_set()
            status = page.locator("#status").inner_text()
            assert "loading gradio" in status
            for pic in ("#camera img", "#heatmap img", "#map img"):
                box = page.locator(pic).bounding_box()
                assert box and box["width"] > 200, pic
                assert page.evaluate("(s) => document.querySelector(s).naturalWidth", pic) > 200
            assert page.locator("#map img").get_attribute("alt").split(" of ")[0] in ("PCA", "UMAP")
            assert "episode " in page.locator("#info").inner_text()
            page.screenshot(path=str(tmp_path / "first_page.png"))
            assert page.locator("#app").count() == 0
            release.set()
            # the page notices gradio on the port, draws it in a frame over itself, then shows it
            page.wait_for_function("() => { const f = document.querySelector('#app'); return f && "
                                   "f.style.visibility === 'visible' && f.contentDocument.querySelector("
                                   "'#map .js-plotly-plot .gtitle') && f.contentDocument.querySelector('#camera img'); }",
                                   timeout=120_000, polling=100)
            assert page.locator("#preview").is_hidden()
            app = served["app"]
            view = app.memlens_view
            frame = page.query_selector("#app").content_frame()
            frame.wait_for_function("() => document.querySelector('#heatmap .js-plotly-plot').__memlensBound",
                                    timeout=60_000)
            # the page in the frame is the interactive one: a heat-map cell -> its step
            ep = view.episodes[0]
            frames = view.episode_data(ep)["update_frame"]
            xy = _plot_xy(frame, "heatmap", float(frames[2]) + 0.5, 1)  # the frame fills the window from (0, 0)
            page.mouse.move(*xy)
            page.wait_for_timeout(300)
            page.mouse.click(*xy)
            frame.wait_for_function("(t) => document.querySelector('#info').innerText.includes(t)",
                                    arg=f"step {int(frames[2])} ", timeout=60_000)
            # a page opened now is the gradio page itself
            again = b.new_page(viewport={"width": 1200, "height": 900})
            again.goto(url, wait_until="load")
            again.locator("#map .js-plotly-plot").wait_for(timeout=60_000)
            assert again.locator("#app").count() == 0
        finally:
            release.set()
            b.close()
            thread.join(60)
            if "app" in served:
                served["app"].close()
