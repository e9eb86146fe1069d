"""The Gradio app: a live server driven by gradio_client for each panel, and a real headless Chromium."""

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


def _cells(fig):
    """(x edges, customdata [M, U, 3]) of the heat-map trace of a figure."""
    trace = fig.data[0]
    return np.asarray(trace.x), np.asarray(trace.customdata)


def test_heatmap_cells_and_map_points_name_their_steps(view):
    ep = view.episodes[3]
    d = view.episode_data(ep)
    np.testing.assert_allclose(d["norms"], np.linalg.norm(view.store.episode(ep).load("memory/write"), axis=-1), rtol=1e-5)
    fig = view.heatmap_figure(ep, 0, "norm")
    assert fig.layout.xaxis.title.text == "frame (memory update)" and fig.layout.yaxis.title.text == "memory token"
    np.testing.assert_allclose(np.asarray(fig.data[0].z).T, d["norms"], rtol=1e-6)
    edges, custom = _cells(fig)
    assert custom.shape == (d["norms"].shape[1], len(d["update_frame"]), 3)
    for u, frame in enumerate(d["update_frame"]):  # every cell of column u names update u's frame
        assert (custom[:, u, 0] == frame).all() and (custom[:, u, 1] == u).all() and edges[u] == frame
        assert view.click_target(custom[0, u], ep) == (ep, int(frame))
    title = fig.data[0].colorbar.title.text  # the value's true range is under the colour bar
    assert f"{d['norms'].min():.4g} to {d['norms'].max():.4g}" in title
    z = np.asarray(view.heatmap_figure(ep, 0, "standardised").data[0].z)  # each token spread over the scale
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-6)
    assert np.isnan(np.asarray(view.heatmap_figure(ep, 0, "delta").data[0].z)[:, 0]).all()  # no change at update 0
    pts = view.map_points()
    fig = view.map_figure(ep, 0)
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    background = fig.data[0]
    assert background.marker.colorbar.title.text == "frame"  # coloured by time, with its colour bar
    for cd in np.asarray(background.customdata)[:50]:  # a point names its episode, frame and update
        e, frame, u = map(int, cd)
        assert view.click_target(cd) == (e, frame) and int(view.episode_data(e)["update_frame"][u]) == frame
    path = next(t for t in fig.data if t.name == f"episode {ep}")
    assert len(path.x) == (pts.episode == ep).sum()
    cue = view.map_figure(ep, 0, "cue")
    assert {t.name for t in cue.data} >= {f"cue = {c}" for c in np.unique(pts.labels["cue"])}  # a legend entry per cue


def test_the_cursor_moves_with_the_step(view):
    ep = view.episodes[0]
    d = view.episode_data(ep)
    for step in (0, 25, d["length"] - 1):
        u = view.update_at(ep, step)
        box = view.heatmap_figure(ep, step).layout.shapes[-1]
        assert box.x0 == d["update_frame"][u] and box.x0 <= step < box.x1  # the red box spans the step's update
        now = next(t for t in view.map_figure(ep, step).data if t.name == "now")
        r = view.map_points().row_at(ep, step)
        assert (now.x[0], now.y[0]) == tuple(view.map_points().coords[r]) and int(now.customdata[0][1]) <= step


def test_the_camera_is_legible_and_several_cameras_sit_side_by_side():
    from memlens.apps.view import legible

    small = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    big = legible([small])
    assert big.shape == (256, 256, 3)
    np.testing.assert_array_equal(big[::4, ::4], small)  # nearest neighbour: every pixel a 4x4 block
    two = legible([small, np.zeros((32, 48, 3), np.uint8)])
    assert two.shape == (256, 256 + 6 + 48 * 8, 3)


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
    frame_path, heat, points, info = client.predict(str(ep), 17, "delta", "time", api_name="/step")
    from PIL import Image

    frame = np.asarray(Image.open(frame_path).convert("RGB"))
    np.testing.assert_array_equal(frame, view.frame(ep, 17))  # the camera image of that step, losslessly
    assert frame.shape[1] >= 256
    assert heat["type"] == "plotly" and "frame (memory update)" in heat["plot"]
    assert points["type"] == "plotly" and f"episode {ep}" in points["plot"]
    assert f"**episode {ep}** · step 17" in info and "cue=" in info and "task:" in info
    out = client.predict(str(view.episodes[5]), "delta", "time", api_name="/episode")
    slider = out[0]
    assert slider["maximum"] == view.episode_data(view.episodes[5])["length"] - 1 and slider["value"] == 0


def test_click_endpoints_over_a_live_server(client, view):
    import json

    ep = view.episodes[1]
    _, custom = _cells(view.heatmap_figure(ep, 0))
    click = json.dumps({"customdata": custom[0, 2].tolist(), "at": 1})
    assert client.predict(str(ep), click, api_name="/heatmap_cell_to_step") == int(view.episode_data(ep)["update_frame"][2])
    pts = view.map_points()
    r = int(np.flatnonzero(pts.episode == ep)[3])
    click = json.dumps({"customdata": [ep, int(pts.frame[r]), int(pts.update[r])], "at": 2})
    assert client.predict(click, api_name="/map_point_to_step") == (str(ep), int(pts.frame[r]))
    with pytest.raises(Exception, match="customdata"):
        client.predict(str(ep), "not json", api_name="/heatmap_cell_to_step")


def test_the_episode_table_lists_and_filters_episodes(client, view):
    rows = view.table()
    assert [r["episode"] for r in rows] == view.episodes
    assert all(r["cue"] == int(view.episode_data(r["episode"])["labels"]["cue"][0]) for r in rows)
    assert "task" not in rows[0]  # one task in the store: said in the info line instead
    cue = rows[0]["cue"]
    table = client.predict(f"cue = {cue}", api_name="/table")
    shown = [int(r[0]) for r in table["data"]]
    assert shown == [r["episode"] for r in rows if r["cue"] == cue] and 0 < len(shown) < len(rows)


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


def _plot_xy(page, plot: str, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of data point (x, y) of the plotly figure in `#plot`."""
    return tuple(page.evaluate("""([id, x, y]) => { const gd = document.querySelector(`#${id} .js-plotly-plot`);
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
        return [r.left + xa._offset + xa.l2p(x), r.top + ya._offset + ya.l2p(y)]; }""", [plot, x, y]))


def _click(page, xy) -> None:
    page.mouse.move(*xy)  # plotly clicks the point under the hover
    page.wait_for_timeout(300)
    page.mouse.click(*xy)


def _info_says(page, text: str) -> None:
    page.wait_for_function("(t) => document.querySelector('#info').innerText.includes(t)", arg=text, timeout=60_000)


def browser(p):
    # SwiftShader gives headless Chromium WebGL, which plotly's scattergl (maps of many points) draws with
    return p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=[
        "--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--disable-background-networking",
        "--disable-component-update"])


@pytest.mark.browser
def test_a_real_browser_shows_labelled_figures_and_follows_clicks(server, view, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _ = server
    ep = view.episodes[0]
    assert view.wait_for_umap(timeout=600) == "umap"  # the map must not change from PCA to UMAP under a click
    with sync_playwright() as p:
        b = browser(p)
        try:
            page = b.new_page(viewport={"width": 1500, "height": 1500})
            page.goto(url, wait_until="load")  # the app keeps a connection open: never "networkidle"
            page.wait_for_function("() => { const t = document.querySelector('#map .gtitle'); "
                                   "return t && t.textContent.startsWith('UMAP'); }", timeout=60_000)
            page.locator("#heatmap .js-plotly-plot").wait_for(timeout=60_000)
            page.wait_for_function("() => document.querySelector('#heatmap .js-plotly-plot').__memlensBound "
                                   "&& document.querySelector('#map .js-plotly-plot').__memlensBound", timeout=60_000)
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 50_000
            heat_text = page.locator("#heatmap").inner_text()
            assert "frame (memory update)" in heat_text and "memory token" in heat_text and "change" in heat_text
            map_text = page.locator("#map").inner_text()
            assert "PC 1" in map_text or "UMAP 1" in map_text
            assert "frame" in map_text  # the colour bar's title
            assert page.locator("#camera img").bounding_box()["width"] > 200
            assert page.locator(".toast-body.error").count() == 0
            # a heat-map cell -> its update's step and frame
            frames = view.episode_data(ep)["update_frame"]
            src = page.locator("#camera img").get_attribute("src")
            _click(page, _plot_xy(page, "heatmap", float(frames[2]) + 0.5, 1))
            _info_says(page, f"step {int(frames[2])} ")
            page.wait_for_function("(b) => document.querySelector('#camera img').src !== b", arg=src, timeout=60_000)
            assert page.locator("#step input[type=number]").input_value() == str(int(frames[2]))
            # a point of another episode, the one farthest from this episode's path -> that episode and step
            pts = view.map_points()
            mine = pts.coords[pts.episode == ep]
            others = np.flatnonzero(pts.episode != ep)
            far = int(others[np.argmax([np.min(np.hypot(*(mine - pts.coords[r]).T)) for r in others])])
            page.wait_for_timeout(500)
            at = _plot_xy(page, "map", *map(float, pts.coords[far]))
            _click(page, at)
            got = page.wait_for_function("(e) => { const m = document.querySelector('#info').innerText.match("
                                         "/episode (\\d+) · step (\\d+) /); return m && m[1] !== e && m; }",
                                         arg=str(ep), timeout=60_000).json_value()
            got_ep, got_step = int(got[1]), int(got[2])
            # that point, or one drawn a marker's width or two from it (states of episodes with the same cue
            # nearly coincide, and plotly picks the point nearest the cursor within its 20 px hover distance;
            # WebGL and SVG traces pick differently among such neighbours)
            shown = _plot_xy(page, "map", *map(float, pts.coords[pts.row_at(got_ep, got_step)]))
            assert (got_ep, got_step) == (int(pts.episode[far]), int(pts.frame[far])) or np.hypot(
                shown[0] - at[0], shown[1] - at[1]) <= 12, (got_ep, got_step, int(pts.episode[far]))
            # a table row -> that episode
            i = next(i for i in range(1, 5) if view.episodes[i] != got_ep)  # rows in view, not the episode shown
            page.locator("#episodes div[role=row]").nth(i).locator("[role=gridcell]").first.click()
            _info_says(page, f"episode {view.episodes[i]} · step 0 ")
            assert page.locator("#episode input").input_value() == str(view.episodes[i])
            assert page.locator(".toast-body.error").count() == 0
        finally:
            b.close()


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
    assert view.frame(first, 0) is not None and view.heatmap_figure(first, 0) is not None
    assert view.map_figure(first, 0) is not None
    slider = next(c for c in app.config["components"] if c.get("props", {}).get("elem_id") == "step")
    assert slider["props"]["interactive"] is False


def _two_cameras_unicode_no_labels_no_attention(e, arrays, attrs):
    n = attrs["length"]
    rng = np.random.default_rng(e)
    arrays["frames/top"] = rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)
    arrays["frames/wrist"] = rng.integers(0, 255, (n, 24, 32, 3), dtype=np.uint8)
    attrs["task"] = "saisir la tasse à café ☕, 把杯子放下" if e % 2 else "reach the cue's colour"
    attrs["success"] = bool(e % 3)


@pytest.mark.browser
def test_a_store_without_labels_or_attention_with_two_cameras_and_unicode_tasks_opens(analysis_traces, tmp_path):
    from playwright.sync_api import sync_playwright

    site = lambda cam, h, w: {"kind": "frame", "shape": ["T", h, w, 3], "dtype": "uint8"}  # noqa: E731
    store = derived_store(analysis_traces, tmp_path / "odd", episodes=TraceStore_episodes(analysis_traces)[:6],
                          drop=("label/", "attention/", "hidden/"),
                          sites={"frames/top": site("top", 64, 64), "frames/wrist": site("wrist", 24, 32)},
                          change=_two_cameras_unicode_no_labels_no_attention)
    app = serve(store, port=_free_port(), block=False)
    view = app.memlens_view
    try:
        assert view.map_method() == "pca" and view.map_figure(view.episodes[0], 0).layout.xaxis.title.text.startswith("PC 1")
        assert view.camera_label(view.episodes[0]) == "cameras: top | wrist"
        both = view.frame(view.episodes[0], 0)
        assert both.shape == (24 * 11, 256 + 6 + 32 * 11, 3)  # each scaled by a whole factor to >= 256 rows
        assert "success" in view.color_choices() and "cue" not in view.color_choices()
        assert {r["success"] for r in view.table()} == {True, False} and "task" in view.table()[0]
        assert "☕" in view.info(view.episodes[1], 0)
        with sync_playwright() as p:
            b = browser(p)
            try:
                page = b.new_page(viewport={"width": 1500, "height": 1400})
                page.goto(f"http://127.0.0.1:{app.server_port}/", wait_until="load")
                page.locator("#map .js-plotly-plot").wait_for(timeout=60_000)
                # no UMAP saved for this new store: a PCA first, replaced by the UMAP once fitted and saved
                page.wait_for_function("() => { const t = document.querySelector('#map .gtitle'); "
                                       "return t && t.textContent.startsWith('UMAP'); }", timeout=300_000)
                assert (store / "derived" / "umap-memory_write.npz").is_file()
                page.locator("#table_filter input").click()
                page.get_by_role("option", name="success = False").click()
                page.wait_for_function("() => document.querySelectorAll('#episodes div[role=row]').length === 2",
                                       timeout=60_000)
                page.locator("#episodes div[role=row]").nth(1).locator("[role=gridcell]").first.click()
                _info_says(page, "episode 3 · step 0 ")
                assert "☕" in page.locator("#info").inner_text() or "reach" in page.locator("#info").inner_text()
                assert page.locator(".toast-body.error").count() == 0
                page.screenshot(path=str(tmp_path / "odd.png"), full_page=True)
            finally:
                b.close()
    finally:
        app.close()


def TraceStore_episodes(path):
    from memlens.store import TraceStore

    return TraceStore.open(path).episodes()
