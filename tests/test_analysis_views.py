"""The analysis views (heat map, dynamics, UMAP, attention over time) on a captured store: values checked
against the stored arrays, figures written to PNG and HTML, and bad input answered in one paragraph."""

import json
import struct

import numpy as np
import plotly.graph_objects as go
import pytest
from typer.testing import CliRunner

from sklearn.exceptions import NotFittedError

from memlens.analysis import (
    AnalysisInputError,
    MemoryEmbedding,
    MemoryMap,
    SubsampledPCA,
    attention_over_time,
    fit_map,
    load_embedding_points,
    memory_dynamics,
    memory_heatmap,
    memory_states,
)
from memlens.analysis.figures import nan_mean_std, stack_ragged
from memlens.cli import app
from memlens.store import TraceStore

from conftest import derived_store

runner = CliRunner()


@pytest.fixture(scope="module")
def store(analysis_traces):
    return TraceStore.open(analysis_traces)


@pytest.fixture(scope="module")
def embedding(analysis_traces):
    """One UMAP fit on all 16 episodes (the slow part of this file: numba compiles on first use)."""
    return fit_map(analysis_traces, random_state=0)


# --- heat map ---------------------------------------------------------------------------------------------
def test_heatmap_of_one_episode_is_the_norm_of_each_stored_memory_token(store):
    hm = memory_heatmap(store, episode=2)
    x = store.episode(2).load("memory/write")
    assert hm.values.shape == x.shape[:2]  # (updates, tokens)
    np.testing.assert_allclose(hm.values, np.linalg.norm(x, axis=-1), rtol=1e-6)
    np.testing.assert_array_equal(hm.frames, store.episode(2).load("memory/update_frame"))
    heat = hm.figure.data[0]
    assert isinstance(heat, go.Heatmap) and np.asarray(heat.z).shape == (x.shape[1], x.shape[0])
    assert len(heat.x) == len(hm.frames) + 1  # cell u spans [frame u, frame u+1)
    assert {a.text for a in hm.figure.layout.annotations} == {"cue hidden", "go"}  # phase changes marked


def test_delta_heatmap_is_the_change_since_the_previous_update_and_blank_at_update_0(store):
    hm = memory_heatmap(store, episode=5, value="delta")
    x = store.episode(5).load("memory/write")
    assert np.isnan(hm.values[0]).all()
    np.testing.assert_allclose(hm.values[1:], np.linalg.norm(x[1:] - x[:-1], axis=-1), rtol=1e-5)


def test_average_heatmap_aligns_episodes_of_different_lengths_by_update(analysis_traces, store, tmp_path):
    ragged = derived_store(analysis_traces, tmp_path / "ragged", keep_updates={1: 3, 4: 2})
    hm = memory_heatmap(ragged)
    norms = {e: np.linalg.norm(store.episode(e).load("memory/write"), axis=-1) for e in store.episodes()}
    n_upd = len(norms[0])
    assert hm.values.shape == (n_upd, norms[0].shape[1])
    assert hm.count.tolist() == [16, 16, 15] + [14] * (n_upd - 3)
    last = np.mean([norms[e][-1] for e in store.episodes() if e not in (1, 4)], axis=0)
    np.testing.assert_allclose(hm.values[-1], last, rtol=1e-6)
    np.testing.assert_allclose(hm.values[0], np.mean([norms[e][0] for e in norms], axis=0), rtol=1e-6)


def test_nan_mean_ignores_missing_updates():
    mean, std, count = nan_mean_std(stack_ragged([np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0])]))
    assert mean.tolist() == [2.0, 3.0, 3.0] and count.tolist() == [2, 2, 1] and std.tolist() == [1.0, 1.0, 0.0]


# --- dynamics ---------------------------------------------------------------------------------------------
def test_dynamics_puts_the_end_of_the_cue_at_frame_zero(store):
    dyn = memory_dynamics(store)
    for e in store.episodes():
        phase = store.episode(e).load("label/phase")
        assert dyn.event_frames[e] == int(np.flatnonzero(phase != 0)[0])
    ep = 7
    x = store.episode(ep).load("memory/write").astype(np.float64)
    frames = store.episode(ep).load("memory/update_frame")
    rows = dyn.episode == ep
    np.testing.assert_array_equal(dyn.rel_frame[rows], frames[1:] - dyn.event_frames[ep])
    cos = (x[1:] * x[:-1]).sum(-1) / (np.linalg.norm(x[1:], axis=-1) * np.linalg.norm(x[:-1], axis=-1))
    np.testing.assert_allclose(dyn.distance[rows], 1 - cos, atol=1e-9)
    assert 0 in dyn.rel_frames.tolist() and dyn.count[dyn.rel_frames.tolist().index(0)] == 16
    np.testing.assert_allclose(dyn.mean[dyn.rel_frames == 0][0],
                               dyn.distance[dyn.rel_frame == 0].mean(axis=0), rtol=1e-9)


def test_dynamics_without_a_phase_label_says_which_labels_exist(analysis_traces, tmp_path):
    no_phase = derived_store(analysis_traces, tmp_path / "no_phase", drop=("label/phase",), episodes=range(3))
    with pytest.raises(AnalysisInputError, match=r"'phase' label.*\['cue', 'delay_steps', 'n_targets'\]"):
        memory_dynamics(no_phase)
    assert memory_dynamics(no_phase, event=10).event_frames[0] == 10  # a frame number needs no label


# --- attention --------------------------------------------------------------------------------------------
def test_attention_over_time_is_the_mean_share_per_group(store):
    att = attention_over_time(store, episode=3)
    trace = store.episode(3)
    assert att.groups == trace.attrs["attention_groups"]
    np.testing.assert_allclose(att.memory_reads, trace.load("attention/mem_to_groups").mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(att.action_reads, trace.load("attention/action_to_groups").mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(att.memory_reads.sum(-1), 1, atol=1e-5)
    assert (att.action_from_memory > 0).all()
    np.testing.assert_allclose(att.action_from_memory, att.action_reads[:, att.groups.index("memory")])
    last = attention_over_time(store, episode=3, layer=-1)
    np.testing.assert_allclose(last.action_reads, trace.load("attention/action_to_groups")[:, -1].mean(axis=1),
                               rtol=1e-5)


def test_attention_of_a_store_captured_without_attention_is_a_clear_error(analysis_traces, tmp_path):
    plain = derived_store(analysis_traces, tmp_path / "plain", drop=("attention/",), episodes=range(2))
    with pytest.raises(AnalysisInputError, match="captured without --attention"):
        attention_over_time(plain)


# --- UMAP -------------------------------------------------------------------------------------------------
def test_umap_projects_fitted_episodes_back_near_their_fitted_coordinates(analysis_traces, embedding):
    fit = embedding.points
    assert fit.coords.shape == (16 * 5, 2) and embedding.estimator.pca_ is not None  # 4 x 128 features > 50: PCA first
    again = embedding.project(analysis_traces, episodes=[0, 1, 2])
    own = np.isin(fit.episode, [0, 1, 2])
    np.testing.assert_array_equal(again.episode, fit.episode[own])
    spread = np.linalg.norm(fit.coords - fit.coords.mean(axis=0), axis=1).mean()
    assert np.median(np.linalg.norm(again.coords - fit.coords[own], axis=1)) < 0.1 * spread


def test_saved_embedding_loads_with_identical_coordinates_with_and_without_unpickling(analysis_traces, embedding,
                                                                                       tmp_path):
    path = embedding.save(tmp_path / "umap")
    points = load_embedding_points(path)  # plain npz: nothing unpickled
    loaded = MemoryMap.load(path)
    for p in (points, loaded.points):
        np.testing.assert_array_equal(p.coords, embedding.points.coords)
        for name in ("episode", "update", "frame", "task"):
            np.testing.assert_array_equal(getattr(p, name), getattr(embedding.points, name))
        np.testing.assert_array_equal(p.labels["cue"], embedding.points.labels["cue"])
    assert json.loads(str(np.load(path / "embedding.npz")["meta"]))["params"]["pca_dims"] == 50
    assert loaded.project(analysis_traces, episodes=[4]).coords.shape == (5, 2)


def test_trajectory_figure_colours_by_label_highlights_an_episode_and_marks_the_current_state(embedding):
    fig = embedding.figure(color_by="cue", highlight=3, current=(3, 25))
    names = [t.name for t in fig.data]
    assert {"cue=0", "cue=1", "cue=2", "cue=3", "episode 3"} <= set(names)
    star = fig.data[names.index("now: episode 3, frame 25")]
    row = embedding.points.row_at(3, 25)  # the update at frame 20 is in effect at frame 25
    assert embedding.points.frame[row] == 20 and star.x[0] == embedding.points.coords[row, 0]
    with pytest.raises(AnalysisInputError, match=r"'colour'.*\['cue', 'delay_steps', 'n_targets', 'phase'\]"):
        embedding.figure(color_by="colour")


def test_umap_refuses_too_few_episodes(store):
    with pytest.raises(AnalysisInputError, match="too few memory states.*5 states in 1 episode"):
        fit_map(store, episodes=[0])
    with pytest.raises(NotFittedError):
        MemoryEmbedding().transform(np.zeros((3, 4, 8), np.float32))


def test_the_embedding_and_the_reduction_follow_the_scikit_learn_contract(analysis_traces, embedding):
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.utils.estimator_checks import check_get_params_invariance, check_set_params

    est = MemoryEmbedding(pca_dims=8, n_neighbors=5, n_epochs=20, random_state=0)
    for check in (check_get_params_invariance, check_set_params):
        check("MemoryEmbedding", est)
        check("SubsampledPCA", SubsampledPCA(4, max_rows=20))
    assert clone(est).get_params() == est.get_params() and not hasattr(clone(embedding.estimator), "reducer_")
    assert est.set_params(min_dist=0.3).min_dist == 0.3
    x = np.random.default_rng(0).normal(size=(40, 4, 16)).astype(np.float32)
    pipe = make_pipeline(MemoryEmbedding(token=1, pca_dims=8, n_neighbors=5, n_epochs=20, random_state=0)).fit(x)
    coords = pipe.transform(x[:5])
    assert coords.shape == (5, 2) and pipe[0].n_features_in_ == 16 and pipe[0].pca_.components_.shape == (8, 16)
    # the map of a store is this estimator on that store's rows
    again = clone(embedding.estimator).fit_transform(memory_states(analysis_traces).X)
    np.testing.assert_allclose(again, embedding.points.coords)


def test_a_seeded_map_is_the_same_on_any_number_of_blas_threads(analysis_traces):
    from threadpoolctl import threadpool_info, threadpool_limits

    x = memory_states(analysis_traces).X
    flat = x.reshape(len(x), -1)
    assert len(np.unique(flat, axis=0)) < len(x)  # the store repeats states (the learned initial memory)
    assert any(i["user_api"] == "blas" for i in threadpool_info())
    default = MemoryEmbedding(random_state=0).fit(x)
    with threadpool_limits(1, user_api="blas"):  # a 1-core machine: before, the PCA's rounding moved every point
        one = MemoryEmbedding(random_state=0).fit(x)
    with threadpool_limits(2, user_api="blas"):
        two = MemoryEmbedding(random_state=0).fit(x)
    np.testing.assert_array_equal(default.embedding_, one.embedding_)
    np.testing.assert_array_equal(one.embedding_, two.embedding_)
    with threadpool_limits(1, user_api="blas"):
        np.testing.assert_array_equal(default.transform(x[:10]), two.transform(x[:10]))


# --- bad input and the CLI --------------------------------------------------------------------------------
def test_views_name_the_missing_episode_and_the_missing_memory(analysis_traces, tmp_path):
    with pytest.raises(AnalysisInputError, match=r"episodes \[99\] are not in the trace store.*16 episodes"):
        memory_heatmap(analysis_traces, episode=99)
    no_memory = derived_store(analysis_traces, tmp_path / "no_memory", drop=("memory/",), episodes=range(2))
    for view in (memory_heatmap, memory_dynamics, fit_map):
        with pytest.raises(AnalysisInputError, match="no 'memory/write' arrays"):
            view(no_memory)


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_command_writes_a_png_heatmap_and_html_views(analysis_traces, embedding, tmp_path):
    png = tmp_path / "memory_evolution.png"
    result = runner.invoke(app, ["plot", str(analysis_traces), "--kind", "heatmap", "--episode", "3",
                                 "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert png_size(png) == (2000, 1000)  # 1000 x 500 CSS pixels at scale 2
    for kind, extra in [("attention", ["--layer", "-1"]), ("dynamics", []), ("umap", ["--color-by", "cue"]),
                        ("heatmap", ["--value", "delta"])]:
        html = tmp_path / f"{kind}.html"
        result = runner.invoke(app, ["plot", str(analysis_traces), "--kind", kind, "--out", str(html), *extra])
        assert result.exit_code == 0, result.output
        text = html.read_text()
        assert text.lstrip().lower().startswith("<!doctype html>") and "Plotly.newPlot" in text


@pytest.mark.parametrize("args, message", [
    (["--kind", "bars", "--out", "x.png"], "--kind must be one of heatmap, dynamics, umap, attention"),
    (["--kind", "heatmap", "--out", "x.svg"], "must end in .png or .html"),
    (["--kind", "heatmap", "--episode", "42", "--out", "x.png"], "episodes [42] are not in the trace store"),
    (["--kind", "umap", "--color-by", "colour", "--out", "x.html"], "cannot colour by 'colour'"),
])
def test_plot_command_bad_input_is_one_paragraph_without_traceback(analysis_traces, tmp_path, args, message):
    result = runner.invoke(app, ["plot", str(analysis_traces), *args])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
    assert message in " ".join(result.output.split())


def test_dynamics_aligns_to_any_label_on_a_store_without_phase(analysis_traces, tmp_path):
    no_phase = derived_store(analysis_traces, tmp_path / "no_phase", drop=("label/phase",), episodes=range(3))
    source = TraceStore.open(analysis_traces)
    delay = source.episode(0).load("label/delay_steps")
    dyn = memory_dynamics(no_phase, event=f"delay_steps={int(delay[0])}")
    assert dyn.event_frames[0] == 0  # a per-frame label that holds its value from frame 0
    with pytest.raises(AnalysisInputError, match=r"label 'colour'.*\['cue', 'delay_steps', 'n_targets'\]"):
        memory_dynamics(no_phase, event="colour=1")
    out = tmp_path / "dyn.html"
    result = runner.invoke(app, ["plot", str(no_phase), "--kind", "dynamics", "--event", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "dynamics written" in result.output
    result = runner.invoke(app, ["plot", str(no_phase), "--kind", "dynamics", "--out", str(out)])
    assert result.exit_code == 2 and "--event" in result.output and "Traceback" not in result.output
