"""`memlens rerun`: the .rrd holds what the trace store holds, read back through Rerun's own reader."""

import io
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from memlens.cli import app
from memlens.store import TraceStore
from memlens.store.traces import frame

runner = CliRunner()
EPISODE = 2
ROOT = Path(__file__).resolve().parents[1]


def read_rrd(path) -> dict:
    """entity path -> {"static": {component: value}, "rows": {frame: {component: value}}} of the recording
    in an .rrd file, through `rerun.experimental.RrdReader` (the 0.33 reader; `rr.dataframe` is gone)."""
    from rerun.experimental import RrdReader

    out = {}
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        entity = out.setdefault(chunk.entity_path, {"static": {}, "rows": {}})
        data = [f.name for f in batch.schema if (f.metadata or {}).get(b"rerun:kind") == b"data"]
        if chunk.is_static:
            entity["static"].update({n: batch.column(n)[0].as_py() for n in data})
            continue
        frames = batch.column("frame").to_pylist()
        columns = {n: batch.column(n).to_pylist() for n in data}
        for i, f in enumerate(frames):
            entity["rows"].setdefault(f, {}).update({n: v[i] for n, v in columns.items()})
    return out


def series(rec: dict, entity: str, component: str = "Scalars:scalars") -> tuple[np.ndarray, list]:
    rows = rec[entity]["rows"]
    frames = np.array(sorted(rows))
    return frames, [rows[f][component] for f in frames]


def blueprint_views(path) -> dict[str, str]:
    """origin -> display name of every view in the .rrd's blueprint."""
    from rerun.experimental import RrdReader

    reader = RrdReader(path)
    views = {}
    for chunk in reader.stream(store=reader.blueprints()[0]):
        batch = chunk.to_record_batch()
        if "ViewBlueprint:space_origin" in batch.schema.names:
            origin = batch.column("ViewBlueprint:space_origin")[0].as_py()
            name = batch.column("ViewBlueprint:display_name")[0].as_py()
            origin = origin[0] if isinstance(origin, list) else origin
            views["/" + origin.lstrip("/")] = name[0] if isinstance(name, list) else name
    return views


@pytest.fixture(scope="module")
def embedding_points(analysis_traces, tmp_path_factory):
    """A saved embedding of the store's memory states with known coordinates (the UMAP fit itself, ~30 s of
    numba compilation in a fresh process, is the analysis tests' business)."""
    from memlens.analysis.embedding import EmbeddedStates, save_embedding_points
    from memlens.analysis.data import memory_states

    ms = memory_states(analysis_traces)
    coords = np.stack([ms.frame, ms.episode], axis=1).astype(np.float32) + 0.25
    folder = tmp_path_factory.mktemp("embedding")
    save_embedding_points(EmbeddedStates(coords, ms.episode, ms.update, ms.frame, ms.labels), folder / "embedding.npz")
    return folder


@pytest.fixture(scope="module")
def saved(analysis_traces, embedding_points, tmp_path_factory):
    """Episode 2 of the analysis traces saved through the CLI, and the file read back."""
    path = tmp_path_factory.mktemp("rrd") / "ep.rrd"
    result = runner.invoke(app, ["rerun", str(analysis_traces), "--episode", str(EPISODE), "--save", str(path),
                                 "--embedding", str(embedding_points)])
    assert result.exit_code == 0, result.output
    assert f"episode {EPISODE}" in result.output and path.is_file()
    return path, read_rrd(path)


def test_the_recording_holds_every_view_with_one_row_per_frame(saved, analysis_traces):
    path, rec = saved
    trace = TraceStore.open(analysis_traces).episode(EPISODE)
    length, tokens = int(trace.attrs["length"]), trace["memory/write"].shape[1]
    groups = ["camera_top", "language", "memory", "state", "actions"]
    per_frame = (["/camera/top", "/memory/heatmap/cursor", "/embedding/current", "/labels/cue", "/labels/phase",
                  "/action/0/predicted", "/action/0/dataset"]
                 + [f"/memory/norm/token_{m}" for m in range(tokens)]
                 + [f"/attention/{w}/{g}" for w in ("memory_to", "action_to") for g in groups])
    for entity in per_frame:
        assert entity in rec, f"{entity} missing; the recording has {sorted(rec)}"
        assert sorted(rec[entity]["rows"]) == list(range(length)), entity
    for entity in ["/memory/heatmap", "/embedding/all", "/embedding/path", "/episode"]:
        assert rec[entity]["static"], entity
    views = blueprint_views(path)
    for origin in ["/camera/top", "/memory/norm", "/memory/heatmap", "/embedding", "/attention/memory_to",
                   "/attention/action_to", "/action/0", "/labels"]:
        assert origin in views, f"no view of {origin} in the blueprint; it has {views}"


def test_token_norms_and_heat_map_are_the_stored_memory_in_effect_at_each_frame(saved, analysis_traces):
    _, rec = saved
    trace = TraceStore.open(analysis_traces).episode(EPISODE)
    expected = np.linalg.norm(trace.load("memory/write"), axis=-1)[trace.load("frame/update")]  # [T, M]
    for m in range(expected.shape[1]):
        frames, values = series(rec, f"/memory/norm/token_{m}")
        np.testing.assert_allclose(np.concatenate(values), expected[:, m], rtol=1e-6)
    heat = rec["/memory/heatmap"]["static"]
    fmt = heat["DepthImage:format"][0]
    image = np.frombuffer(bytes(heat["DepthImage:buffer"][0]), dtype=np.float32).reshape(fmt["height"], fmt["width"])
    row = fmt["height"] // expected.shape[1]
    np.testing.assert_allclose(image[::row], expected.T, rtol=1e-6)  # tokens down, frames across
    _, cursor = series(rec, "/memory/heatmap/cursor", "Boxes2D:centers")
    assert [c[0][0] for c in cursor] == list(np.arange(len(expected)) + 0.5)


def test_camera_images_are_the_frames_of_the_trace(saved, analysis_traces):
    _, rec = saved
    store = TraceStore.open(analysis_traces)
    frames, buffers = series(rec, "/camera/top", "Image:buffer")
    fmt = rec["/camera/top"]["rows"][0]["Image:format"][0]
    for step in (0, 17, len(frames) - 1):
        img = np.array(buffers[step][0], dtype=np.uint8).reshape(fmt["height"], fmt["width"], 3)
        np.testing.assert_array_equal(img, frame(store, EPISODE, step))


def test_attention_actions_labels_and_umap_match_the_store(saved, analysis_traces):
    from memlens.analysis.attention import attention_over_time

    _, rec = saved
    trace = TraceStore.open(analysis_traces).episode(EPISODE)
    upd = trace.load("frame/update")
    att = attention_over_time(analysis_traces, episode=EPISODE)
    _, mem_to_memory = series(rec, "/attention/memory_to/memory")
    memory = att.groups.index("memory")
    np.testing.assert_allclose(np.concatenate(mem_to_memory), att.memory_reads[upd, memory], rtol=1e-6)
    _, act_to_memory = series(rec, "/attention/action_to/memory")
    np.testing.assert_allclose(np.concatenate(act_to_memory), att.action_from_memory[upd], rtol=1e-6)
    _, pred = series(rec, "/action/1/predicted")
    np.testing.assert_allclose(np.concatenate(pred), trace.load("action/predicted")[:, 1], rtol=1e-6)
    _, phase = series(rec, "/labels/phase", "StateChange:state")
    assert phase[0] == ["phase: cue"] and phase[-1] == ["phase: go"]
    path = np.array(rec["/embedding/path"]["static"]["LineStrips2D:strips"][0])
    update_frames = trace.load("memory/update_frame")
    np.testing.assert_allclose(path, np.stack([update_frames, np.full(len(update_frames), EPISODE)], 1) + 0.25)
    _, now = series(rec, "/embedding/current", "Points2D:positions")
    np.testing.assert_allclose(np.array([p[0] for p in now]), path[upd], rtol=1e-6)  # the update in effect


def test_without_a_saved_embedding_a_umap_is_fitted_on_the_whole_store(analysis_traces):
    from memlens.analysis import fit_map, memory_states
    from memlens.apps.rerun_viewer import fit_embedding

    store = TraceStore.open(analysis_traces)
    points = fit_embedding(store)  # a real umap-learn fit (numba is compiled once per test process)
    states = memory_states(store)
    assert points.coords.shape == (len(states.X), 2)
    np.testing.assert_array_equal(points.episode, states.episode)
    np.testing.assert_array_equal(points.frame, states.frame)
    np.testing.assert_allclose(points.coords, fit_map(store, random_state=0).points.coords)  # seeded: reproducible


def test_a_saved_embedding_without_the_episode_is_refused(analysis_traces, tmp_path):
    from memlens.analysis.embedding import EmbeddedStates, save_embedding_points

    n = 12
    save_embedding_points(EmbeddedStates(np.zeros((n, 2), np.float32), np.full(n, 99), np.arange(n), np.arange(n)),
                          tmp_path / "embedding.npz")
    result = runner.invoke(app, ["rerun", str(analysis_traces), "--embedding", str(tmp_path), "--images", "none",
                                 "--save", str(tmp_path / "a.rrd")])
    assert result.exit_code == 2 and "does not hold episode 0" in result.output


def test_jpeg_images_decode_to_the_frames_and_the_episode_defaults_to_the_first(analysis_traces, tmp_path):
    from PIL import Image

    from memlens.apps.rerun_viewer import save_rrd

    contents = save_rrd(analysis_traces, tmp_path / "jpeg.rrd", images="jpeg", umap=False)
    store = TraceStore.open(analysis_traces)
    assert contents.episode == store.episodes()[0] and not contents.embedding
    rec = read_rrd(tmp_path / "jpeg.rrd")
    assert "/embedding/current" not in rec
    _, blobs = series(rec, "/camera/top", "EncodedImage:blob")
    decoded = np.asarray(Image.open(io.BytesIO(bytes(blobs[5][0]))).convert("RGB"), dtype=np.int16)
    assert np.abs(decoded - frame(store, contents.episode, 5)).mean() < 3  # JPEG at quality 90, 4:4:4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_serve_binds_the_loopback_interface_only(analysis_traces):
    from memlens.apps.rerun_viewer import serve, stop_server

    web, grpc = _free_port(), _free_port()
    proc, url = serve(analysis_traces, 0, web_port=web, grpc_port=grpc, block=False, umap=False, images="none")
    try:
        assert url.startswith(f"http://127.0.0.1:{web}/?url=rerun%2Bhttp%3A%2F%2F127.0.0.1%3A{grpc}%2Fproxy")
        assert urllib.request.urlopen(url, timeout=10).status == 200  # the web viewer's page
        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
        for port in (web, grpc):
            bound = [line.split()[3] for line in listening.splitlines() if line.split()[3].endswith(f":{port}")]
            assert bound == [f"127.0.0.1:{port}"], bound
    finally:
        stop_server(proc)
    assert _free(web) and _free(grpc)  # the viewer binary stopped too, not only the python -m rerun wrapper


@pytest.mark.parametrize("args, message", [
    (["--episode", "999"], "episode 999 is not in the trace store"),
    (["--save", "a.rrd", "--serve"], "not both"),
    (["--images", "png", "--save", "a.rrd"], "images must be one of auto, raw, jpeg, none"),
    (["--save", "no/such/dir/a.rrd"], "its directory does not exist"),
    (["--embedding", "no/such/dir", "--images", "none", "--save", "a.rrd"], "no saved memory embedding"),
])
def test_bad_arguments_are_one_clear_paragraph(analysis_traces, args, message):
    result = runner.invoke(app, ["rerun", str(analysis_traces), *args])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output and "Traceback" not in result.output


def test_a_missing_or_corrupt_store_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["rerun", str(tmp_path / "nope"), "--save", str(tmp_path / "a.rrd")])
    assert result.exit_code == 2 and "No trace store at" in result.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    result = runner.invoke(app, ["rerun", str(tmp_path / "bad"), "--save", str(tmp_path / "a.rrd")])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
    assert "manifest.json" in result.output
    assert not (tmp_path / "a.rrd").exists()


def test_an_unreadable_dataset_points_to_images_none(analysis_traces, tmp_path, monkeypatch):
    import memlens.store.traces

    def gone(*args, **kw):
        raise FileNotFoundError("meta/info.json")

    monkeypatch.setattr(memlens.store.traces, "frame", gone)
    result = runner.invoke(app, ["rerun", str(analysis_traces), "--no-umap", "--save", str(tmp_path / "a.rrd")])
    assert result.exit_code == 2 and "cannot read the camera frames" in result.output
    assert "--images none" in result.output


def test_without_a_display_the_native_viewer_says_what_to_do_instead(analysis_traces, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    result = runner.invoke(app, ["rerun", str(analysis_traces), "--no-umap"])
    assert result.exit_code == 2
    assert "no display" in result.output and "--save" in result.output and "--serve" in result.output


def test_the_launcher_script_runs_the_same_command(analysis_traces, tmp_path):
    cmd = [sys.executable, str(ROOT / "apps" / "rerun_viewer.py"), str(analysis_traces), "--episode", "1",
           "--no-umap", "--images", "none", "--save", str(tmp_path / "l.rrd")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "episode 1 (" in proc.stdout
    assert "/memory/norm/token_0" in read_rrd(tmp_path / "l.rrd")
