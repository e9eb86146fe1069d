"""The Gradio app: a live server driven by gradio_client for each panel, and a real headless Chromium."""

import re
import shutil
import socket

import numpy as np
import pytest

from memlens.apps.gradio_app import TraceView, check_port, free_port, serve
from memlens.errors import UserError

from conftest import derived_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(analysis_traces, tmp_path_factory):
    port = _free_port()
    app = serve(analysis_traces, port=port, block=False)
    yield f"http://127.0.0.1:{port}/", app
    app.close()


@pytest.fixture(scope="module")
def view(server):
    """The server's own view (its UMAP is the one the page shows)."""
    assert isinstance(server[1].memlens_view, TraceView)
    return server[1].memlens_view


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[0], verbose=False)


def test_heatmap_cells_and_umap_points_map_back_to_their_steps(view):
    ep = view.episodes[3]
    d = view.episode_data(ep)
    pic = view.heatmap(ep)
    assert pic.base.shape[0] == d["norms"].shape[1] * pic.ch  # one row of cells per memory token
    np.testing.assert_allclose(d["norms"], np.linalg.norm(view.store.episode(ep).load("memory/write"), axis=-1), rtol=1e-5)
    for u, frame in enumerate(d["update_frame"]):  # the middle of column u is update u
        assert view.heatmap_click(ep, u * pic.cw + pic.cw // 2, pic.ch // 2) == frame
    scatter, eps, upd = view.embedding()
    rows = np.flatnonzero(eps == ep)
    for r in rows:
        x, y = scatter.px[r]
        got_ep, got_step = view.umap_click(x, y)
        # the nearest point to a point is itself unless another lies on it (then same map position)
        assert np.allclose(scatter.px[view.embedding()[0].nearest(x, y)], (x, y))
        if (got_ep, got_step) == (ep, int(d["update_frame"][upd[r]])):
            continue
        assert np.hypot(*(scatter.px[r] - scatter.px[scatter.nearest(x, y)])) < 1e-6


def test_the_cursor_moves_with_the_step(view):
    ep = view.episodes[0]
    a, b = view.heatmap_picture(ep, 0), view.heatmap_picture(ep, 25)
    cursor = np.all(a == (255, 40, 40), axis=-1).any(axis=0)  # columns holding cursor pixels
    moved = np.all(b == (255, 40, 40), axis=-1).any(axis=0)
    pic = view.heatmap(ep)
    u = int(view.episode_data(ep)["update_of_frame"][25])
    assert cursor[: pic.cw + 1].any() and not cursor[u * pic.cw + 2: (u + 1) * pic.cw - 2].any()
    assert moved[u * pic.cw - 1: u * pic.cw + 1].any() and not moved[: pic.cw - 2].any()


def test_the_view_reads_each_array_from_disk_once_and_shares_it_read_only(view, analysis_traces):
    from memlens.apps.gradio_app import CachedStore
    from memlens.store import TraceStore

    ep = view.episodes[4]
    a = view.store.episode(ep).load("memory/write")
    assert view.store.episode(ep).load("memory/write") is a and not a.flags.writeable
    np.testing.assert_array_equal(a, TraceStore.open(analysis_traces).episode(ep).load("memory/write"))
    small = CachedStore.open(analysis_traces)
    first = [small.episode(e).load("memory/write") for e in view.episodes[:3]]
    small = CachedStore.open(analysis_traces)
    small.max_bytes = first[1].nbytes + first[2].nbytes  # room for the last two: the least recently used goes
    first = [small.episode(e).load("memory/write") for e in view.episodes[:3]]
    assert small.episode(view.episodes[2]).load("memory/write") is first[2]
    again = small.episode(view.episodes[0]).load("memory/write")
    assert again is not first[0]
    np.testing.assert_array_equal(again, first[0])


def test_step_and_episode_callbacks_over_a_live_server(client, view):
    ep = view.episodes[2]
    frame_path, heat_path, umap_path, info = client.predict(str(ep), 17, api_name="/step")
    from PIL import Image

    frame = np.asarray(Image.open(frame_path).convert("RGB"))
    np.testing.assert_array_equal(frame, view.frame(ep, 17))  # the camera image of that step, losslessly
    assert np.asarray(Image.open(heat_path)).shape[1] == view.heatmap(ep).base.shape[1]
    assert np.asarray(Image.open(umap_path)).shape[:2] == (480, 480)
    assert f"**episode {ep}** · step 17" in info and "cue=" in info
    out = client.predict(str(view.episodes[5]), None, api_name="/episode")
    slider = out[0]
    assert slider["maximum"] == view.episode_data(view.episodes[5])["length"] - 1 and slider["value"] == 0


def test_click_endpoints_over_a_live_server(client, view):
    ep = view.episodes[1]
    pic = view.heatmap(ep)
    assert client.predict(str(ep), 2 * pic.cw + 1, 3, api_name="/heatmap_cell_to_step") == int(
        view.episode_data(ep)["update_frame"][2])
    scatter, eps, upd = view.embedding()
    r = int(np.flatnonzero(eps == ep)[3])
    got_ep, got_step = client.predict(*map(float, scatter.px[r]), api_name="/umap_point_to_step")
    r2 = scatter.nearest(*scatter.px[r])
    assert (int(got_ep), got_step) == (int(eps[r2]), int(view.episode_data(int(eps[r2]))["update_frame"][upd[r2]]))


def test_probe_and_attention_panels_over_a_live_server(client, view):
    summary, plot = client.predict("cue", "memory", api_name="/probe")
    assert summary.startswith("cue from memory: accuracy") and "control" in summary and "selectivity" in summary
    assert plot is not None
    summary, plot = client.predict("delay_steps", "memory", api_name="/probe")  # 30 in every episode
    assert "Cannot train this probe" in summary and "nothing to decode" in summary and plot is None
    text = client.predict(str(view.episodes[0]), api_name="/attention_summary")
    assert "from memory" in text and "language" in text


def test_a_missing_or_corrupt_store_shows_a_message_and_the_server_keeps_running(analysis_traces, tmp_path):
    import httpx

    corrupt = tmp_path / "corrupt"
    shutil.copytree(analysis_traces, corrupt)
    (corrupt / "manifest.json").write_text("{ not json")
    for bad in (tmp_path / "missing", corrupt):
        port = _free_port()
        app = serve(bad, port=port, block=False)
        try:
            config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=30).json()
            texts = [c.get("props", {}).get("value") for c in config["components"]]
            message = next(t for t in texts if isinstance(t, str) and "Cannot show the trace store" in t)
            assert str(bad) in message and "memlens capture" in message
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200  # still serving
        finally:
            app.close()


def test_a_busy_port_is_a_clear_error_that_suggests_another(server):
    port = int(server[0].rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(UserError, match=rf"port {port} on 127.0.0.1 is already in use.*Try --port \d+"):
        check_port("127.0.0.1", port)
    assert free_port("127.0.0.1", port) not in (None, port)


def test_the_app_serves_no_files_from_disk(server, analysis_traces):
    import httpx

    url = server[0]
    for path in (f"file={analysis_traces}/manifest.json", "file=/etc/passwd", "gradio_api/file=/etc/passwd"):
        assert httpx.get(url + path, timeout=30).status_code in (403, 404)


@pytest.mark.browser
def test_a_real_browser_moves_the_slider_and_clicks_a_umap_point(server, view, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _ = server
    ep = view.episodes[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url, wait_until="load")  # the app keeps a connection open: never "networkidle"
            camera = page.locator("#camera img")
            heat = page.locator("#heatmap img")
            umap = page.locator("#umap img")
            umap.wait_for(timeout=60_000)
            before = (camera.get_attribute("src"), heat.get_attribute("src"))
            number = page.locator("#step input[type=number]")
            number.fill("25")
            number.press("Enter")
            page.wait_for_function("(b) => document.querySelector('#camera img').src !== b", arg=before[0],
                                   timeout=60_000)
            page.wait_for_function("(b) => document.querySelector('#heatmap img').src !== b", arg=before[1],
                                   timeout=60_000)
            assert "step 25" in page.locator("#info").inner_text()
            # click the first point of this episode's path (the cue frame; delay frames all look alike):
            # the slider and the frame jump to its step (its episode, if another episode's point lies on it)
            scatter, eps, upd = view.embedding()
            u = 0
            r = int(np.flatnonzero(eps == ep)[u])
            want_ep, want_step = view.umap_click(*scatter.px[r])
            box = umap.bounding_box()
            natural = umap.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            x, y = scatter.px[r]
            src = camera.get_attribute("src")
            umap.click(position={"x": x * box["width"] / natural[0], "y": y * box["height"] / natural[1]})
            page.wait_for_function(f"() => document.querySelector('#info').innerText.includes('step {want_step} ')",
                                   timeout=60_000)
            # cue frames of episodes with the same cue nearly coincide, so the browser's rounding of the click
            # may pick a neighbour: whatever it picked must be a point under the click, with that step
            got = re.search(r"episode (\d+) · step (\d+) ", page.locator("#info").inner_text())
            got_ep, got_step = int(got[1]), int(got[2])
            frames = view.episode_data(got_ep)["update_frame"]
            r2 = [i for i in np.flatnonzero(eps == got_ep) if int(frames[upd[i]]) == got_step]
            assert got_step == want_step and (got_ep == want_ep or min(
                np.hypot(*(np.asarray(scatter.px[i]) - (x, y))) for i in r2) <= 3), (got_ep, got_step, want_ep)
            assert page.locator("#step input[type=number]").input_value() == str(want_step)
            page.wait_for_function("(b) => document.querySelector('#camera img').src !== b", arg=src, timeout=60_000)
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()


def test_the_compare_panel_compares_two_stores_on_their_shared_episodes(analysis_traces, tmp_path):
    from gradio_client import Client

    other = tmp_path / "other"
    shutil.copytree(analysis_traces, other)
    port = _free_port()
    app = serve(analysis_traces, port=port, block=False, compare=other)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        text = client.predict(api_name="/compare_summary")
        assert "| n_episodes | 16 |" in text and "| action_l2 | 0 |" in text  # a store against its copy
    finally:
        app.close()


def test_memlens_app_on_a_busy_port_exits_with_one_clear_paragraph(analysis_traces):
    from typer.testing import CliRunner

    from memlens.cli import app as cli

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["app", str(analysis_traces), "--port", str(port)])
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.output and "Try --port" in result.output
    assert "Traceback" not in result.output


def test_the_launcher_script_builds_the_same_app_for_gradio_live_reload(analysis_traces, monkeypatch):
    import runpy
    from pathlib import Path

    import gradio as gr

    monkeypatch.setenv("MEMLENS_TRACES", str(analysis_traces))
    script = Path(__file__).resolve().parent.parent / "apps" / "memlens_app.py"
    module = runpy.run_path(str(script), run_name="memlens_app")  # what `gradio apps/memlens_app.py` imports
    demo = module["demo"]
    assert isinstance(demo, gr.Blocks) and isinstance(demo.memlens_view, TraceView)
    assert demo.memlens_view.episodes == TraceView(analysis_traces).episodes


def test_a_store_whose_first_episode_has_one_frame_opens(analysis_traces, tmp_path):
    from memlens.apps.gradio_app import build_app
    from memlens.store import TraceStore

    episodes = TraceStore.open(analysis_traces).episodes()[:3]
    derived_store(analysis_traces, tmp_path / "one_frame", episodes=episodes,
                  keep_updates={episodes[0]: (1, 1)})  # first episode: one memory update, one frame
    app = build_app(tmp_path / "one_frame")
    view = app.memlens_view
    first = view.episodes[0]
    assert view.episode_data(first)["length"] == 1
    assert view.frame(first, 0) is not None and view.heatmap_picture(first, 0) is not None
    slider = next(c for c in app.config["components"] if c.get("props", {}).get("elem_id") == "step")
    assert slider["props"]["interactive"] is False
