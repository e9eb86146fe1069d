"""A Rerun recording of one captured episode: camera, memory, attention, UMAP and actions on one timeline.

    memlens rerun traces/cue --episode 3                  # native viewer (needs a display)
    memlens rerun traces/cue --episode 3 --save ep3.rrd   # a file: `rerun ep3.rrd` opens it anywhere
    memlens rerun traces/cue --serve                      # web viewer on http://127.0.0.1:9090

    >>> from memlens.apps.rerun_viewer import save_rrd
    >>> save_rrd("traces/cue", "ep3.rrd", episode=3)     # doctest: +SKIP

Everything lives on the sequence timeline `frame` (the episode's frame index; `time` holds the frame's
timestamp). Entity paths:

    camera/<name>                 Image (raw RGB) or EncodedImage (JPEG) of every frame, per camera
    memory/norm/token_<m>         Scalars: L2 norm of memory token m in effect at each frame
    memory/heatmap                DepthImage [M*row, T] (static): token norms, tokens down, frames across
    memory/heatmap/cursor         Boxes2D: the column of the current frame
    attention/memory_to/<group>   Scalars: share of the memory tokens' attention on each prefix group
    attention/action_to/<group>   Scalars: share of the action tokens' attention on each prefix group
    embedding/all                 Points2D (static): UMAP of every memory state of the store, coloured by cue
    embedding/path                LineStrips2D (static): this episode's path through the UMAP
    embedding/current             Points2D: the memory state in effect at each frame
    action/<a>/predicted|dataset  Scalars: predicted and recorded action, dimension a
    labels/<name>                 Scalars (value) and StateChange (text lane) of each per-frame label
    episode                       TextDocument (static): episode, task, length, labels, checkpoint

"In effect at frame t" is the memory written by the update of `frame/update[t]`, the chunk computation at
or before t (the memory the next chunk reads); memory and attention values are held between updates
and drawn as steps. Bulk data goes out with `rr.send_columns`, one call per entity for the whole episode.
"""

from __future__ import annotations

import io
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from memlens.analysis.data import as_store, token_norms
from memlens.errors import UserError
from memlens.store import TraceStore
from memlens.tasks.worlds import PHASE_CUE, PHASE_DELAY, PHASE_GO

APP_ID = "memlens"
TIMELINE = "frame"
JPEG_ABOVE_PIXELS = 256 * 256  # "auto" images: raw RGB up to this size per frame, JPEG above it
JPEG_QUALITY = 90
IMAGE_MODES = ("auto", "raw", "jpeg", "none")
_PHASES = {PHASE_CUE: "cue", PHASE_DELAY: "delay", PHASE_GO: "go"}  # names of the label/phase values
_PALETTE = [(102, 194, 165), (252, 141, 98), (141, 160, 203), (231, 138, 195), (166, 216, 84), (255, 217, 47),
            (229, 196, 148), (179, 179, 179)]  # plotly's Set2, as in the analysis figures


class RerunViewerError(UserError):
    """Input the Rerun viewer cannot show (no such episode, an unreadable dataset, no display)."""


@dataclass
class Contents:
    """What went into a recording: entity paths per view group (the blueprint is built from these)."""

    episode: int
    length: int
    cameras: list[str] = field(default_factory=list)  # entity paths
    tokens: int = 0
    attention_groups: list[str] = field(default_factory=list)
    has_memory_attention: bool = False
    embedding: bool = False
    action_dims: int = 0
    labels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left out, and why


def _indexes(trace) -> list:
    """The `frame` (and `time`) index columns of an episode: one row per frame."""
    length = int(trace.attrs["length"])
    frames = trace.load("frame/index").astype(np.int64) if "frame/index" in trace else np.arange(length)
    cols = [rr.TimeColumn(TIMELINE, sequence=frames)]
    if "frame/timestamp" in trace:
        cols.append(rr.TimeColumn("time", duration=trace.load("frame/timestamp").astype(np.float64)))
    return cols


def _per_frame(values: np.ndarray, trace) -> np.ndarray:
    """`[U, ...]` per-update values -> `[T, ...]`: the value of the update in effect at each frame."""
    return values[trace.load("frame/update")]


def _series_style(rec, path: str, name: str, color=None, *, step: bool = False) -> None:
    rec.log(path, rr.SeriesLines(names=name, colors=color,
                                 interpolation_mode="StepAfter" if step else None), static=True)


# --- one log function per concept ---------------------------------------------------------------------
def camera_names(store: TraceStore, trace) -> list[str]:
    """Cameras of an episode: frames stored with a live rollout, else the replayed dataset's camera keys."""
    stored = [n.removeprefix("frames/") for n in trace.names if n.startswith("frames/")]
    if stored:
        return stored
    from memlens.store.traces import cameras

    return cameras(store)


def _entity_name(camera: str) -> str:
    return camera.removeprefix("observation.images.").replace(".", "_")


def log_cameras(rec, store: TraceStore, episode: int, index, *, images: str = "auto") -> list[str]:
    """Every frame of every camera as one column per camera: raw RGB, or JPEG (`images="jpeg"`, or "auto"
    for frames above `JPEG_ABOVE_PIXELS`)."""
    from memlens.store.traces import frame

    trace = store.episode(episode)
    length = int(trace.attrs["length"])
    try:
        names = camera_names(store, trace)
        frames = {cam: np.stack([frame(store, episode, t, cam) for t in range(length)]) for cam in names}
    except UserError as exc:
        hint = "To see the rest of the episode without the cameras, pass --images none."
        raise RerunViewerError(f"{exc} {hint}") from exc
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        ds = store.provenance.get("dataset", {})
        raise RerunViewerError(
            f"cannot read the camera frames of episode {episode}: the trace store replayed the dataset "
            f"{ds.get('repo_id')!r} at {ds.get('root')!r}, and reading it failed ({type(exc).__name__}: {exc}). "
            "Put the dataset back at that path, or pass --images none to leave the cameras out.") from exc
    paths = []
    for cam, stack in frames.items():  # [T, H, W, 3] uint8
        path = f"camera/{_entity_name(cam)}"
        h, w = stack.shape[1:3]
        jpeg = images == "jpeg" or (images == "auto" and h * w > JPEG_ABOVE_PIXELS)
        if jpeg:
            blobs = [_jpeg(img) for img in stack]
            rec.send_columns(path, indexes=index,
                             columns=rr.EncodedImage.columns(blob=blobs, media_type=["image/jpeg"] * length))
        else:
            fmt = rr.components.ImageFormat(width=w, height=h, color_model="RGB", channel_datatype="U8")
            rec.send_columns(path, indexes=index,
                             columns=rr.Image.columns(buffer=stack.reshape(length, -1), format=[fmt] * length))
        paths.append(path)
    return paths


def _jpeg(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)  # 4:4:4: sharp colour edges
    return buf.getvalue()


def heatmap_row_height(length: int, tokens: int) -> int:
    """Pixel rows per token in the heat-map image, so that it is about 4:1 wide rather than a thin strip."""
    return max(1, round(length / (4 * tokens)))


def log_memory(rec, trace, index) -> int:
    """Token norms (one Scalars entity per token), the heat map (static) and its cursor. Returns M."""
    norms = _per_frame(token_norms(trace.load("memory/write")), trace)  # [T, M]
    length, tokens = norms.shape
    for m in range(tokens):
        path = f"memory/norm/token_{m}"
        _series_style(rec, path, f"m{m}", _PALETTE[m % len(_PALETTE)], step=True)
        rec.send_columns(path, indexes=index, columns=rr.Scalars.columns(scalars=norms[:, m]))
    row = heatmap_row_height(length, tokens)
    image = np.repeat(norms.T.astype(np.float32), row, axis=0)  # [M*row, T]
    lo, hi = float(norms.min()), float(norms.max())
    rec.log("memory/heatmap", rr.DepthImage(image, meter=1.0, colormap="Viridis", magnification_filter="Nearest",
                                            depth_range=(lo, hi if hi > lo else lo + 1)), static=True)
    half_h = tokens * row / 2
    rec.send_columns("memory/heatmap/cursor", indexes=index, columns=rr.Boxes2D.columns(
        centers=np.stack([np.arange(length) + 0.5, np.full(length, half_h)], axis=1),
        half_sizes=np.tile([0.5, half_h], (length, 1)), colors=np.tile([255, 40, 40], (length, 1)),
    ))
    return tokens


def log_attention(rec, store: TraceStore, episode: int, index) -> tuple[list[str], bool]:
    """Attention shares per prefix group (mean over layers, heads and memory tokens) held between updates."""
    from memlens.analysis.attention import attention_over_time

    trace = store.episode(episode)
    att = attention_over_time(store, episode=episode)
    reads = [("action_to", att.action_reads)]
    if att.memory_reads is not None:
        reads.insert(0, ("memory_to", att.memory_reads))
    for what, shares in reads:
        per_frame = _per_frame(shares, trace)  # [T, G]
        for g, group in enumerate(att.groups):
            path = f"attention/{what}/{_entity_name(group).replace(':', '_')}"
            _series_style(rec, path, group, _PALETTE[g % len(_PALETTE)], step=True)
            rec.send_columns(path, indexes=index, columns=rr.Scalars.columns(scalars=per_frame[:, g]))
    return att.groups, att.memory_reads is not None


def fit_embedding(store, embedding=None):
    """`EmbeddedStates` of the store's memory states: a UMAP fitted here (`embedding=None`), or the points of
    an embedding saved with `MemoryMap.save` (a directory; read without unpickling)."""
    from memlens.analysis.embedding import fit_map, load_embedding_points

    if embedding is not None:
        return load_embedding_points(embedding)
    return fit_map(store, random_state=0).points


def log_embedding(rec, points, trace, index) -> None:
    """UMAP points of all memory states (static, coloured by cue), this episode's path (static) and the
    memory state in effect at each frame (a moving point)."""
    episode = int(trace.attrs["episode_index"])
    xy = np.asarray(points.coords[:, :2], dtype=np.float32)
    cue = points.labels.get("cue")
    colors = (np.array([_PALETTE[int(c) % len(_PALETTE)] for c in cue], dtype=np.uint8) if cue is not None
              else np.full((len(xy), 3), 160, dtype=np.uint8))
    rec.log("embedding/all", rr.Points2D(xy, colors=colors, radii=-3.0), static=True)  # negative radii: UI points
    mine = np.flatnonzero(points.episode == episode)
    mine = mine[np.argsort(points.update[mine], kind="stable")]
    rec.log("embedding/path", rr.LineStrips2D([xy[mine]], colors=(40, 40, 40), radii=-1.5), static=True)
    frames = trace.load("frame/index") if "frame/index" in trace else np.arange(int(trace.attrs["length"]))
    now = xy[[points.row_at(episode, int(f)) for f in frames]]  # [T, 2]
    rec.send_columns("embedding/current", indexes=index, columns=rr.Points2D.columns(
        positions=now, radii=np.full(len(now), -8.0, dtype=np.float32), colors=np.tile([255, 40, 40], (len(now), 1)),
    ))


def log_actions(rec, trace, index) -> int:
    """Predicted and recorded actions, one Scalars entity per dimension and source. Returns A."""
    pred = trace.load("action/predicted")
    sources = [("predicted", pred, (31, 119, 180))]
    if "action/dataset" in trace:
        sources.append(("dataset", trace.load("action/dataset"), (160, 160, 160)))
    for a in range(pred.shape[1]):
        for name, values, color in sources:
            path = f"action/{a}/{name}"
            _series_style(rec, path, f"{name} [{a}]", color)
            rec.send_columns(path, indexes=index, columns=rr.Scalars.columns(scalars=values[:, a]))
    return pred.shape[1]


def _label_text(name: str, value) -> str:
    value = int(value) if float(value).is_integer() else float(value)
    return f"{name}: {_PHASES.get(value, value)}" if name == "phase" else f"{name}: {value}"


def log_labels(rec, trace, index) -> list[str]:
    """Each per-frame label as a value (Scalars) and as a text lane (StateChange)."""
    names = sorted(n.removeprefix("label/") for n in trace.names if n.startswith("label/"))
    for name in names:
        values = trace.load(f"label/{name}")
        path = f"labels/{name}"
        _series_style(rec, path, name, step=True)
        rec.send_columns(path, indexes=index, columns=[
            *rr.Scalars.columns(scalars=values.astype(np.float64)),
            *rr.StateChange.columns(state=[_label_text(name, v) for v in values]),
        ])
    return names


# --- the recording --------------------------------------------------------------------------------------
def check_images(images: str) -> None:
    if images not in IMAGE_MODES:
        raise RerunViewerError(f"images must be one of {', '.join(IMAGE_MODES)}; got {images!r}.")


def resolve_episode(store: TraceStore, episode: int | None) -> int:
    have = store.episodes()
    if not have:
        raise RerunViewerError(f"the trace store at {store.url} holds no episodes yet. Run `memlens capture` into "
                               "it first.")
    if episode is None:
        return have[0]
    if episode not in set(have):
        raise RerunViewerError(f"episode {episode} is not in the trace store at {store.url}; it holds "
                               f"{len(have)} episodes ({', '.join(map(str, have[:10]))}"
                               f"{' ...' if len(have) > 10 else ''}). Pass one of those with --episode.")
    return int(episode)


def log_episode(rec, store, episode: int | None = None, *, images: str = "auto", umap: bool = True,
                embedding=None, say=None) -> Contents:
    """Log one episode of `store` into the recording stream `rec`.

    `images`: "auto" (raw RGB, JPEG above `JPEG_ABOVE_PIXELS`), "raw", "jpeg" or "none". `umap`: fit a UMAP
    of all memory states of the store (slow on big stores), or use the points of the saved `embedding`.
    `say`: a function that prints progress messages (the CLI passes `typer.echo`).
    """
    check_images(images)
    store = as_store(store)
    episode = resolve_episode(store, episode)
    trace = store.episode(episode)
    index = _indexes(trace)
    c = Contents(episode=episode, length=int(trace.attrs["length"]))
    rec.log("episode", rr.TextDocument(_description(store, trace), media_type="text/markdown"), static=True)
    if images != "none":
        c.cameras = log_cameras(rec, store, episode, index, images=images)
    if "memory/write" in trace:
        c.tokens = log_memory(rec, trace, index)
    else:
        c.notes.append("no memory arrays (captured from a checkpoint without memory)")
    if "attention/action_to_groups" in trace:
        c.attention_groups, c.has_memory_attention = log_attention(rec, store, episode, index)
    else:
        c.notes.append("no attention (captured without --attention)")
    if umap and c.tokens:
        c.embedding = _try_embedding(rec, store, trace, index, embedding, c.notes, say)
    c.action_dims = log_actions(rec, trace, index)
    c.labels = log_labels(rec, trace, index)
    for note in c.notes if say else ():
        say(f"note: {note}")
    return c


def _try_embedding(rec, store, trace, index, embedding, notes, say) -> bool:
    from memlens.analysis.data import AnalysisInputError

    if embedding is None and say:
        say("fitting a UMAP of the store's memory states (the first fit in a process also compiles numba code: "
            "~20-60 s; --no-umap skips it)")
    try:
        points = fit_embedding(store, embedding)
    except AnalysisInputError as exc:  # too few states for a UMAP: show the rest (a bad --embedding is an error)
        if embedding is not None:
            raise
        notes.append(f"no UMAP: {exc}")
        return False
    if not (points.episode == int(trace.attrs["episode_index"])).any():
        raise RerunViewerError(
            f"the saved embedding at {embedding} does not hold episode {trace.attrs['episode_index']} (it holds "
            f"episodes {sorted(set(points.episode.tolist()))[:10]}). Pass an embedding fitted on this store, or "
            "leave out --embedding to fit one here.")
    log_embedding(rec, points, trace, index)
    return True


def _description(store: TraceStore, trace) -> str:
    a = trace.attrs
    prov = store.provenance
    return (f"**episode {a.get('episode_index')}** of `{store.url}`: {a.get('task', '')}\n\n"
            f"length {a.get('length')} frames, {a.get('n_updates', '?')} memory updates, "
            f"labels {a.get('labels', {})}\n\n"
            f"checkpoint `{prov.get('checkpoint')}`")


def blueprint(c: Contents):
    """Cameras and the UMAP on the left; memory norms, heat map, attention, actions and labels on the right."""
    left = [rrb.Spatial2DView(origin=p, name=p.removeprefix("camera/")) for p in c.cameras]
    if c.embedding:
        left.append(rrb.Spatial2DView(origin="embedding", name="memory UMAP (red: now)"))
    left.append(rrb.TextDocumentView(origin="episode", name="episode"))
    right = []
    if c.tokens:
        right.append(rrb.TimeSeriesView(origin="memory/norm", name="memory token norms"))
        right.append(rrb.Spatial2DView(origin="memory/heatmap", name="memory heat map (tokens x frames)"))
    if c.attention_groups:
        shares = rrb.ScalarAxis(range=(0, 1))
        tabs = [rrb.TimeSeriesView(origin="attention/action_to", name="actions read", axis_y=shares)]
        if c.has_memory_attention:
            tabs.insert(0, rrb.TimeSeriesView(origin="attention/memory_to", name="memory reads", axis_y=shares))
        right.append(rrb.Tabs(*tabs, name="attention"))
    actions = [rrb.TimeSeriesView(origin=f"action/{a}", name=f"action {a}") for a in range(c.action_dims)]
    labels = [rrb.StateTimelineView(origin="labels", name="labels")] if c.labels else []
    right.append(rrb.Horizontal(*actions, *labels))
    return rrb.Blueprint(
        rrb.Horizontal(rrb.Vertical(*left, row_shares=[3] * (len(left) - 1) + [1]), rrb.Vertical(*right),
                       column_shares=[1, 2]),
        rrb.TimePanel(timeline=TIMELINE, state="collapsed"),  # the play bar only: more room for the views
        collapse_panels=True,
    )


def recording(store, episode: int | None = None):
    """A new recording stream for `episode` of `store` (nothing is sent until a sink is attached)."""
    store = as_store(store)
    episode = resolve_episode(store, episode)
    return rr.RecordingStream(APP_ID, recording_id=f"{store.url}#episode{episode}"), episode


def save_rrd(store, path, episode: int | None = None, **kw) -> Contents:
    """Write `episode` (default: the first) of `store` to the .rrd file `path`, blueprint included."""
    path = os.fspath(path)
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise RerunViewerError(f"cannot write {path!r}: its directory does not exist. Create it first, or save "
                               "somewhere else.")
    store = as_store(store)
    rec, episode = recording(store, episode)
    contents = _log_with_sink(rec, store, episode, lambda bp: rec.save(str(path), default_blueprint=bp), **kw)
    rec.flush()
    rec.disconnect()
    return contents


def _log_with_sink(rec, store, episode, attach, **kw) -> Contents:
    # The blueprint depends on what the episode holds, and a sink takes its blueprint when attached. A new
    # stream buffers what is logged before it has a sink and forwards it to the first sink: log, then attach.
    contents = log_episode(rec, store, episode, **kw)
    attach(blueprint(contents))
    return contents


def spawn(store, episode: int | None = None, **kw) -> Contents:
    """Show the episode in the native Rerun viewer (a new process); needs a display."""
    store = as_store(store)
    rec, episode = recording(store, episode)
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise RerunViewerError(
            "no display to open the native Rerun viewer on (neither DISPLAY nor WAYLAND_DISPLAY is set). Write a "
            "file with --save episode.rrd and open it where there is a display (`rerun episode.rrd`), or pass "
            "--serve to get a web viewer on http://127.0.0.1 (forward the ports over ssh).")
    contents = _log_with_sink(rec, store, episode, lambda bp: rec.spawn(default_blueprint=bp), **kw)
    rec.flush()
    return contents


def serve(store, episode: int | None = None, *, web_port: int = 9090, grpc_port: int = 9876,
          block: bool = True, **kw):
    """Serve the episode to a web viewer bound to 127.0.0.1, print its URL and (with `block`) wait for Ctrl-C.

    rerun-sdk 0.33's `rr.serve_grpc` and `rr.serve_web_viewer` listen on 0.0.0.0 and take no bind address,
    so the server is the `rerun` CLI (`--serve-web --bind 127.0.0.1`, the same server in its own process) and
    the recording connects to it over gRPC. Returns `(process, url)` when `block` is False; stop the server
    with `stop_server(process)`.
    """
    check_images(kw.get("images", "auto"))
    store = as_store(store)
    rec, episode = recording(store, episode)
    log = tempfile.TemporaryFile("w+")  # the server's log (read on a failed start; a pipe could fill up)
    for port in (web_port, grpc_port):
        if not _port_is_free(port):
            raise RerunViewerError(f"port {port} on 127.0.0.1 is taken (another Rerun viewer?). Pass a free one with "
                                   "--web-port / --grpc-port.")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rerun", "--serve-web", "--bind", "127.0.0.1", "--port", str(grpc_port),
         "--web-viewer-port", str(web_port), "--server-memory-limit", "25%"],
        stdout=subprocess.DEVNULL, stderr=log, text=True, start_new_session=True)  # one group to stop
    try:
        _wait_for_port(grpc_port, proc, log)
        grpc_url = f"rerun+http://127.0.0.1:{grpc_port}/proxy"
        _log_with_sink(rec, store, episode, lambda bp: rec.connect_grpc(grpc_url, default_blueprint=bp), **kw)
        rec.flush()
        rec.disconnect()  # the server keeps what it got for the viewers that connect later
        from urllib.parse import quote

        url = f"http://127.0.0.1:{web_port}/?url={quote(grpc_url, safe='')}"
        print(f"Rerun web viewer: {url}  (episode {episode}; Ctrl-C to stop)", flush=True)
        if not block:
            return proc, url
        if threading.current_thread() is threading.main_thread():  # `kill PID` stops the server too, like Ctrl-C
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        proc.wait()
    except BaseException:
        stop_server(proc)
        raise
    return proc, url


def stop_server(proc) -> None:
    """Stop a server started by `serve`: the `python -m rerun` wrapper and the viewer binary it runs as a child
    (terminating the wrapper alone would leave the binary serving), both in the session `serve` started."""
    def signal_all(sig):
        try:
            os.killpg(proc.pid, sig) if hasattr(os, "killpg") else proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def group_alive() -> bool:  # the wrapper exits first; its child may still be closing its sockets
        if not os.path.isdir("/proc"):
            return proc.poll() is None
        for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp
            except OSError:
                continue
            if int(fields[2]) == proc.pid and fields[0] != "Z":  # a zombie holds no socket
                return True
        return False

    signal_all(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while group_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_alive():
        signal_all(getattr(signal, "SIGKILL", signal.SIGTERM))
        proc.wait(timeout=5)
        while group_alive() and time.monotonic() < deadline + 5:
            time.sleep(0.05)


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a just-stopped server's TIME_WAIT is no owner
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_port(port: int, proc, log, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RerunViewerError(f"the Rerun server (`python -m rerun --serve-web`) stopped at start with exit "
                                   f"code {proc.returncode}: {log.read().strip()[-500:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RerunViewerError(f"the Rerun server did not listen on 127.0.0.1:{port} within {timeout:.0f} s.")
