"""`memlens capture` end to end on a tiny trained checkpoint: store contents, resume, batching, bad input."""

import numpy as np
import pytest
from typer.testing import CliRunner

from memlens.capture.dataset import capture
from memlens.cli import app
from memlens.errors import UserError
from memlens.store import TraceStore


@pytest.fixture(scope="module")
def traces(memory_checkpoint, cue_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("traces") / "cue"
    capture(str(memory_checkpoint), str(cue_dataset), str(out), episodes=[0, 1, 2], attention=True, hidden=True)
    return out


def test_capture_records_memory_attention_actions_and_labels_for_every_step(traces, memory_checkpoint, cue_dataset):
    from memlens.runtime import load_policy, open_dataset

    store = TraceStore.open(traces)
    assert store.episodes() == [0, 1, 2]
    ds = open_dataset(cue_dataset)
    cfg = load_policy(memory_checkpoint).config
    ep = store.episode(1)
    t = int(ds.meta.episodes[1]["length"])
    u = -(-t // cfg.n_action_steps)
    assert ep.shapes["memory/write"] == (u, 4, 128) and ep.shapes["action/predicted"] == (t, 2)
    assert ep.load("memory/update_frame").tolist() == list(range(0, t, cfg.n_action_steps))
    read, write = ep.load("memory/read"), ep.load("memory/write")
    assert np.allclose(read[1:], write[:-1])  # each chunk reads what the previous one wrote
    assert ep.load("frame/index").tolist() == list(range(t))
    assert ep.attrs["labels"]["cue"] == int(ep.load("label/cue")[0])
    m2g = ep.load("attention/mem_to_groups")
    assert np.allclose(m2g.sum(-1), 1, atol=1e-4)
    assert store.manifest["provenance"]["checkpoint_sha256"] and "memory/write" in store.sites


def test_batched_replay_gives_the_same_trace_as_one_episode_at_a_time(traces, memory_checkpoint, cue_dataset, tmp_path):
    capture(str(memory_checkpoint), str(cue_dataset), str(tmp_path / "b"), episodes=[0, 1, 2], attention=True,
            hidden=True, batch_episodes=3)
    one, batched = TraceStore.open(traces), TraceStore.open(tmp_path / "b")
    for ep in (0, 1, 2):
        for name in ("memory/write", "attention/mem_to_groups", "frame/update"):
            assert np.allclose(one.episode(ep).load(name), batched.episode(ep).load(name), atol=1e-4), (ep, name)


def test_rerunning_capture_resumes_and_skips_committed_episodes(memory_checkpoint, cue_dataset, tmp_path):
    out = tmp_path / "resume"
    capture(str(memory_checkpoint), str(cue_dataset), str(out), episodes=[0])
    seen = []
    capture(str(memory_checkpoint), str(cue_dataset), str(out), episodes=[0, 1],
            progress=lambda kind, done, total: seen.append((kind, done)))
    assert seen[0] == ("skip", 1) and TraceStore.open(out).episodes() == [0, 1]


def test_a_checkpoint_without_memory_is_explained_and_attention_only_capture_works(baseline_checkpoint, cue_dataset, tmp_path):
    with pytest.raises(UserError, match="no memory tokens.*--attention-only"):
        capture(str(baseline_checkpoint), str(cue_dataset), str(tmp_path / "x"), episodes=[0])
    store = capture(str(baseline_checkpoint), str(cue_dataset), str(tmp_path / "x"), episodes=[0], attention_only=True)
    ep = store.episode(0)
    assert "attention/action_to_groups" in ep.names and "memory/write" not in ep.names


def test_bad_capture_input_gets_one_clear_paragraph(memory_checkpoint, cue_dataset, tmp_path):
    runner = CliRunner()
    cases = [
        ([str(tmp_path / "missing"), str(cue_dataset)], "config.json"),
        ([str(memory_checkpoint), str(cue_dataset), "--episodes", "0:99"], "out of range"),
    ]
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore" / "thesis.tex").write_text("precious")
    cases.append(([str(memory_checkpoint), str(cue_dataset), "--episodes", "0"], "thesis.tex"))
    for i, (args, message) in enumerate(cases):
        out = tmp_path / "notastore" if message == "thesis.tex" else tmp_path / f"out{i}"
        result = runner.invoke(app, ["capture", *args, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert (tmp_path / "notastore" / "thesis.tex").read_text() == "precious"


def test_the_camera_frame_of_any_step_comes_back_from_the_dataset(traces, cue_dataset):
    from memlens.runtime.replay import open_dataset
    from memlens.store.traces import frame, open_traces

    store = open_traces(traces)
    img = frame(store, 1, step=5)
    ds = open_dataset(cue_dataset)
    expected = ds[int(ds.meta.episodes[1]["dataset_from_index"]) + 5]["observation.images.top"]
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert np.abs(img.astype(int) - (expected.permute(1, 2, 0).numpy() * 255).round().astype(int)).max() <= 1
    with pytest.raises(IndexError, match="out of range"):
        frame(store, 1, step=999)


def test_a_dataset_missing_a_policy_input_is_refused_with_expected_and_found_keys(memory_checkpoint, cue_dataset, tmp_path):
    from conftest import add_wrist_camera, edited_checkpoint

    ckpt = edited_checkpoint(memory_checkpoint, tmp_path / "two_cameras", add_wrist_camera)
    with pytest.raises(UserError, match=r"lacks inputs.*observation.images.wrist.*has.*observation.images.top"):
        capture(str(ckpt), str(cue_dataset), str(tmp_path / "t"))
    assert not (tmp_path / "t").exists()  # nothing written


def test_torchrun_shards_capture_across_two_processes_into_one_store(memory_checkpoint, cue_dataset, tmp_path):
    from conftest import BIN, run_ok

    out = tmp_path / "sharded"
    run_ok([BIN / "torchrun", "--nproc_per_node=2", "--no-python", BIN / "memlens", "capture", memory_checkpoint,
            cue_dataset, "--out", out, "--episodes", "0:4"], timeout=600)
    store = TraceStore.open(out)
    assert store.episodes() == [0, 1, 2, 3]
    single = capture(str(memory_checkpoint), str(cue_dataset), str(tmp_path / "single"), episodes=[3])
    assert np.allclose(store.episode(3).load("memory/write"), single.episode(3).load("memory/write"), atol=1e-5)


def test_live_rollouts_are_captured_with_their_rendered_frames_and_labels(memory_checkpoint, tmp_path):
    from memlens.capture.live import capture_env
    from memlens.tasks.worlds import MemoryWorld, make_spec
    from memlens.store.traces import frame

    store = capture_env(str(memory_checkpoint), "memlens_cue_recall", str(tmp_path / "live"), n_episodes=3,
                        variant="short", seed=11, attention=True, batch_episodes=2)
    assert store.episodes() == [0, 1, 2]
    ep = store.episode(2)
    t = ep.attrs["length"]
    assert ep.shapes["frames/top"] == (t, 64, 64, 3) and ep.shapes["action/predicted"] == (t, 2)
    assert ep.shapes["memory/write"][0] == -(-t // 10)
    world = MemoryWorld(make_spec("cue_recall", "short", 4))
    first = world.reset(seed=13)  # episode 2 of seed 11
    assert ep.attrs["labels"]["cue"] == world.labels["cue"]
    assert np.abs(frame(store, 2, 0).astype(int) - first["image"].astype(int)).max() <= 1


def test_live_order_rollouts_also_label_the_distractor_colour(memory_checkpoint, tmp_path):
    # same features as cue recall (64x64 camera, 4-d state, 2-d action), so the tiny checkpoint runs there
    from memlens.capture.live import capture_env
    from memlens.tasks.worlds import MemoryWorld, make_spec

    store = capture_env(str(memory_checkpoint), "memlens_order", str(tmp_path / "live"), n_episodes=1,
                        variant="short", seed=4)
    ep = store.episode(0)
    world = MemoryWorld(make_spec("order", "short", 4))
    world.reset(seed=4)
    assert ep.attrs["labels"]["second"] == world.second != world.cue
    assert set(np.asarray(ep["label/second"][:]).tolist()) == {world.second}
