"""The trace store: format, atomic commits, resume, refusals, corruption, concurrent and killed writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import zarr

from memlens.store import (
    SCHEMA_VERSION,
    CorruptEpisodeError,
    EpisodeExistsError,
    EpisodeNotFoundError,
    NotATraceStoreError,
    ProvenanceMismatchError,
    ReadOnlyStoreError,
    SchemaVersionError,
    TraceStore,
)
from memlens.store.format import STAGING_DIR, choose_chunks

SITES = {
    "memory/write": {"kind": "memory", "shape": ["T", 2, 8], "dtype": "float16", "description": "memory written"},
    "attention/mem_to_groups": {"kind": "attention", "shape": ["U", 3, 2, 5], "dtype": "float16",
                                "description": "attention shares"},
    "action/predicted": {"kind": "action", "shape": ["T", 3], "dtype": "float32", "description": "actions"},
}


def manifest(**provenance):
    return {"provenance": {"checkpoint": {"path": "ckpt", "sha256": "abc123"}, "dataset": {"repo_id": "local/cue"},
                           "episodes": [0, 1, 2], **provenance}, "sites": SITES}


def episode_arrays(ep: int, T: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(ep)
    return {
        "memory/write": rng.standard_normal((T, 2, 8)).astype(np.float16),
        "attention/mem_to_groups": rng.random((max(1, T // 10), 3, 2, 5)).astype(np.float16),
        "action/predicted": rng.standard_normal((T, 3)).astype(np.float32),
    }


def assert_episode_is(store, ep, T=20):
    trace = store.episode(ep)
    trace.verify()
    for name, expected in episode_arrays(ep, T).items():
        np.testing.assert_array_equal(trace.load(name), expected)


def chunk_file(root: Path, ep: int, name: str, chunk: int = 0) -> Path:
    array_dir = root / "episodes" / f"{ep:06d}" / name / "c"
    return next(p for p in sorted(array_dir.rglob("*")) if p.is_file() and p.relative_to(array_dir).parts[0] == str(chunk))


# ---- round trip ------------------------------------------------------------------------------------


def test_an_episode_round_trips_its_arrays_and_attrs_and_reads_lazily(tmp_path):
    store = TraceStore.create(tmp_path / "trace", manifest=manifest())
    arrays = episode_arrays(3, T=600)
    store.write_episode(3, arrays, {"length": 600, "task": "remember the cue", "cue": np.int64(2)})

    trace = TraceStore.open(tmp_path / "trace")
    assert trace.read_only and trace.episodes() == [3] and trace.has_episode(3) and 4 not in trace
    assert trace.manifest["schema_version"] == SCHEMA_VERSION == 1
    assert trace.provenance["checkpoint"]["sha256"] == "abc123" and trace.sites == SITES
    ep = trace.episode(3)
    assert ep.attrs == {"episode_index": 3, "length": 600, "task": "remember the cue", "cue": 2}
    assert ep.names == ["action/predicted", "attention/mem_to_groups", "memory/write"]
    assert ep.shapes["memory/write"] == (600, 2, 8)
    lazy = ep["memory/write"]
    assert isinstance(lazy.zarr, zarr.Array) and lazy.chunks == (256, 2, 8) and lazy.shape == (600, 2, 8)
    np.testing.assert_array_equal(lazy[300:310, 1], arrays["memory/write"][300:310, 1])
    for name, expected in arrays.items():
        loaded = ep.load(name)
        assert loaded.dtype == expected.dtype
        np.testing.assert_array_equal(loaded, expected)
    # plain zarr reads it too: the store is a Zarr v3 hierarchy
    group = zarr.open_group(str(tmp_path / "trace" / "episodes" / "000003"), mode="r")
    np.testing.assert_array_equal(group["attention/mem_to_groups"][:], arrays["attention/mem_to_groups"])


def test_empty_and_zero_dim_arrays_round_trip(tmp_path):
    sites = {"frame/index": {"kind": "frame", "shape": ["T"], "dtype": "int64"},
             "score": {"kind": "scalar", "shape": [], "dtype": "float64"},
             "done": {"kind": "frame", "shape": ["T"], "dtype": "bool"}}
    store = TraceStore.create(tmp_path / "t", manifest={"provenance": {}, "sites": sites})
    store.write_episode(0, {"frame/index": np.zeros(0, np.int64), "score": np.float64(0.5), "done": np.zeros(0, bool)})
    ep = TraceStore.open(tmp_path / "t").episode(0)
    assert ep.load("frame/index").shape == (0,) and ep.load("score") == 0.5 and ep.load("done").dtype == bool


def test_chunks_are_256_steps_whole_along_other_axes_unless_large():
    assert choose_chunks((200, 4, 960), 2) == (200, 4, 960)
    assert choose_chunks((1000, 4, 960), 2) == (256, 4, 960)
    big = choose_chunks((1000, 16, 15, 256, 256), 4)
    assert np.prod(big) * 4 <= 8 * 2**20 and big[0] == 1
    assert choose_chunks((0, 3), 4) == (1, 3) and choose_chunks((), 8) == ()


# ---- create, resume, overwrite, refusals -----------------------------------------------------------


def test_creating_again_with_the_same_manifest_resumes_and_a_new_episode_selection_is_allowed(tmp_path):
    first = TraceStore.create(tmp_path / "t", manifest=manifest())
    first.write_episode(0, episode_arrays(0))
    again = TraceStore.create(tmp_path / "t", manifest=manifest(episodes=[5, 6]))
    assert again.episodes() == [0]
    again.write_episode(1, episode_arrays(1))
    assert TraceStore.open(tmp_path / "t").episodes() == [0, 1]


def test_a_different_checkpoint_refuses_to_append_and_names_the_difference(tmp_path):
    TraceStore.create(tmp_path / "t", manifest=manifest()).write_episode(0, episode_arrays(0))
    other = manifest(checkpoint={"path": "ckpt", "sha256": "fff999"})
    with pytest.raises(ProvenanceMismatchError, match=r"provenance\.checkpoint\.sha256.*abc123.*fff999.*overwrite"):
        TraceStore.create(tmp_path / "t", manifest=other)
    assert TraceStore.open(tmp_path / "t").episodes() == [0]


def test_overwrite_replaces_a_trace_store_and_its_committed_episodes(tmp_path):
    TraceStore.create(tmp_path / "t", manifest=manifest()).write_episode(0, episode_arrays(0))
    store = TraceStore.create(tmp_path / "t", manifest=manifest(checkpoint={"sha256": "new"}), overwrite=True)
    assert store.episodes() == [] and store.provenance["checkpoint"] == {"sha256": "new"}
    store.write_episode(0, episode_arrays(1))
    store.write_episode(0, episode_arrays(0))  # a store created with overwrite may replace episodes
    assert_episode_is(store, 0)


def test_a_committed_episode_is_not_overwritten_without_overwrite(tmp_path):
    store = TraceStore.create(tmp_path / "t", manifest=manifest())
    store.write_episode(0, episode_arrays(0))
    with pytest.raises(EpisodeExistsError, match="already committed.*has_episode"):
        store.write_episode(0, episode_arrays(1))
    assert_episode_is(store, 0)
    assert os.listdir(tmp_path / "t" / STAGING_DIR) == []


def test_a_concurrent_commit_of_the_same_episode_loses_cleanly(tmp_path, monkeypatch):
    a = TraceStore.create(tmp_path / "t", manifest=manifest())
    b = TraceStore.create(tmp_path / "t", manifest=manifest())
    a.write_episode(0, episode_arrays(0))
    monkeypatch.setattr(b._backend, "is_committed", lambda name: False)  # b checked before a committed
    with pytest.raises(EpisodeExistsError, match="another writer committed it"):
        b.write_episode(0, episode_arrays(1))
    assert_episode_is(a, 0)
    assert os.listdir(tmp_path / "t" / STAGING_DIR) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_directory_that_is_not_a_trace_store_is_refused_and_left_untouched(tmp_path, overwrite):
    target = tmp_path / "my_data"
    target.mkdir()
    (target / "weights.safetensors").write_bytes(b"precious")
    (target / "notes").mkdir()
    with pytest.raises(NotATraceStoreError) as err:
        TraceStore.create(target, manifest=manifest(), overwrite=overwrite)
    message = str(err.value)
    assert "manifest.json" in message and "weights.safetensors" in message and "Nothing was changed" in message
    assert isinstance(err.value, ValueError)
    assert sorted(os.listdir(target)) == ["notes", "weights.safetensors"]
    assert (target / "weights.safetensors").read_bytes() == b"precious"

    a_file = tmp_path / "file.txt"
    a_file.write_text("hello")
    with pytest.raises(NotATraceStoreError, match="found a file"):
        TraceStore.create(a_file, manifest=manifest(), overwrite=overwrite)
    assert a_file.read_text() == "hello"
    (target / "manifest.json").write_text('{"name": "something else"}')
    with pytest.raises(NotATraceStoreError, match="another kind"):
        TraceStore.create(target, manifest=manifest(), overwrite=overwrite)
    assert (target / "weights.safetensors").exists()


def test_an_empty_directory_becomes_a_store(tmp_path):
    (tmp_path / "empty").mkdir()
    TraceStore.create(tmp_path / "empty", manifest=manifest()).write_episode(1, episode_arrays(1))
    assert TraceStore.open(tmp_path / "empty").episodes() == [1]


def test_opening_a_missing_path_or_a_non_store_says_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="No trace store at .*does not exist.*memlens capture"):
        TraceStore.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotATraceStoreError, match="an empty directory"):
        TraceStore.open(tmp_path / "empty")


def test_a_store_of_a_newer_schema_asks_to_upgrade_memlens(tmp_path):
    TraceStore.create(tmp_path / "t", manifest=manifest()).write_episode(0, episode_arrays(0))
    path = tmp_path / "t" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(SchemaVersionError, match="newer.*Upgrade memlens"):
        TraceStore.open(tmp_path / "t")
    with pytest.raises(SchemaVersionError, match="Upgrade memlens"):
        TraceStore.create(tmp_path / "t", manifest=manifest())
    TraceStore.create(tmp_path / "t", manifest=manifest(), overwrite=True)  # it is a trace store: replaceable
    assert TraceStore.open(tmp_path / "t").manifest["schema_version"] == SCHEMA_VERSION


def test_arrays_must_match_their_declared_sites(tmp_path):
    store = TraceStore.create(tmp_path / "t", manifest=manifest())
    good = episode_arrays(0)
    with pytest.raises(ValueError, match=r"\['hidden/x'\] are not declared"):
        store.write_episode(0, {**good, "hidden/x": np.zeros((20, 1))})
    with pytest.raises(ValueError, match="is float32, but its site declares float16"):
        store.write_episode(0, {**good, "memory/write": good["memory/write"].astype(np.float32)})
    with pytest.raises(ValueError, match="axis 1 must be 2"):
        store.write_episode(0, {**good, "memory/write": np.zeros((20, 3, 8), np.float16)})
    with pytest.raises(ValueError, match="dim 'T' is"):
        store.write_episode(0, {**good, "action/predicted": np.zeros((19, 3), np.float32)})
    with pytest.raises(ValueError, match="NaN"):
        store.write_episode(0, good, {"score": float("nan")})
    with pytest.raises(TypeError, match="no JSON form"):
        store.write_episode(0, good, {"obj": object()})
    assert store.episodes() == []


def test_a_read_only_store_refuses_writes(tmp_path):
    TraceStore.create(tmp_path / "t", manifest=manifest())
    reader = TraceStore.open(tmp_path / "t")
    with pytest.raises(ReadOnlyStoreError, match="opened read-only"):
        reader.write_episode(0, episode_arrays(0))
    with pytest.raises(EpisodeNotFoundError, match="Episode 7 is not in the trace store.*0 committed"):
        reader.episode(7)


# ---- corruption ------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped bit"])
def test_a_corrupted_chunk_names_the_episode_and_array_and_other_episodes_stay_readable(tmp_path, damage):
    root = tmp_path / "t"
    store = TraceStore.create(root, manifest=manifest())
    for ep in range(3):
        store.write_episode(ep, episode_arrays(ep, T=600))
    chunk = chunk_file(root, 1, "memory/write", chunk=1)
    data = chunk.read_bytes()
    chunk.write_bytes({"garbage": os.urandom(len(data)), "truncated": data[: len(data) // 2],
                       "flipped bit": data[:-9] + bytes([data[-9] ^ 1]) + data[-8:]}[damage])

    trace = TraceStore.open(root)
    expected = r"Episode 1 .* corrupted: reading array 'memory/write'.*delete_episode\(1\)"
    with pytest.raises(CorruptEpisodeError, match=expected) as err:
        trace.episode(1).load("memory/write")
    assert err.value.episode == 1 and err.value.array == "memory/write"
    lazy = trace.episode(1)["memory/write"]
    np.testing.assert_array_equal(lazy[:10], episode_arrays(1, T=600)["memory/write"][:10])  # other chunks read
    with pytest.raises(CorruptEpisodeError):
        trace.episode(1).verify()
    for ep in (0, 2):
        assert_episode_is(trace, ep, T=600)

    store.delete_episode(1)  # the way to re-capture: delete, then resume
    assert trace.episodes() == [0, 2]
    resumed = TraceStore.create(root, manifest=manifest())
    for ep in range(3):
        if not resumed.has_episode(ep):
            resumed.write_episode(ep, episode_arrays(ep, T=600))
    assert_episode_is(trace, 1, T=600)


def test_a_missing_chunk_or_broken_metadata_is_reported_as_corruption(tmp_path):
    root = tmp_path / "t"
    store = TraceStore.create(root, manifest=manifest())
    store.write_episode(0, episode_arrays(0))
    store.write_episode(1, episode_arrays(1))
    chunk_file(root, 0, "action/predicted").unlink()
    with pytest.raises(CorruptEpisodeError, match="'action/predicted'.*chunk files are missing"):
        store.episode(0).verify()
    (root / "episodes" / "000001" / "zarr.json").write_text("{not json")
    with pytest.raises(CorruptEpisodeError, match="Episode 1 .*metadata"):
        store.episode(1)


# ---- fsspec URLs -----------------------------------------------------------------------------------


def test_a_memory_url_store_commits_with_a_marker_and_hides_unfinished_episodes():
    import fsspec

    url = f"memory://memlens-test-{uuid.uuid4().hex}/trace"
    store = TraceStore.create(url, manifest=manifest())
    store.write_episode(0, episode_arrays(0))
    # an interrupted writer: the group of episode 1 is there, its marker is not
    partial = zarr.create_group(store=zarr.storage.FsspecStore.from_url(f"{url}/episodes/000001"), attributes={})
    partial.create_array("memory/write", data=episode_arrays(1)["memory/write"])
    reader = TraceStore.open(url)
    assert reader.episodes() == [0] and not reader.has_episode(1)
    assert_episode_is(reader, 0)

    resumed = TraceStore.create(url, manifest=manifest())
    resumed.write_episode(1, episode_arrays(2))  # clears what the interrupted write left
    assert reader.episodes() == [0, 1]
    assert reader.episode(1).names == sorted(SITES)
    np.testing.assert_array_equal(reader.episode(1).load("memory/write"), episode_arrays(2)["memory/write"])
    resumed.delete_episode(1)
    assert reader.episodes() == [0]
    fs, path = fsspec.core.url_to_fs(url)
    assert not fs.exists(f"{path}/episodes/000001")
    with pytest.raises(ProvenanceMismatchError):
        TraceStore.create(url, manifest=manifest(dataset={"repo_id": "other"}))


# ---- staging, concurrency, crashes -----------------------------------------------------------------


def test_staging_leftovers_of_dead_writers_are_cleaned_and_those_of_live_writers_kept(tmp_path):
    from memlens.store.backends import _HOST

    root = tmp_path / "t"
    TraceStore.create(root, manifest=manifest())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    staging = root / STAGING_DIR
    staging.mkdir(exist_ok=True)
    (staging / f"000004-{_HOST}-{dead.pid}-aaaa" / "memory").mkdir(parents=True)
    (staging / f"000005-{_HOST}-{os.getppid()}-bbbb").mkdir()  # alive: our parent
    (staging / "000006-otherhost-1-cccc").mkdir()  # another host: kept until stale
    assert TraceStore.open(root).episodes() == []  # readers ignore staging
    TraceStore.create(root, manifest=manifest())
    assert sorted(os.listdir(staging)) == [f"000005-{_HOST}-{os.getppid()}-bbbb", "000006-otherhost-1-cccc"]


WRITER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    from test_store import manifest, episode_arrays, SITES
    from memlens.store import TraceStore
    root, episodes, n_slow = sys.argv[1], [int(e) for e in sys.argv[2].split(",")], int(sys.argv[3])
    sites = dict(SITES, **{{f"slow/a{{i:03d}}": {{"kind": "filler", "shape": ["T", 2]}} for i in range(n_slow)}})
    store = TraceStore.create(root, manifest={{**manifest(episodes=episodes), "sites": sites}})
    assert "torch" not in sys.modules, "memlens.store must not import torch"
    for ep in episodes:
        if not store.has_episode(ep):
            arrays = episode_arrays(ep)
            arrays.update({{f"slow/a{{i:03d}}": np.full((20, 2), i, np.float32) for i in range(n_slow)}})
            store.write_episode(ep, arrays, {{"length": 20}})
            print("committed", ep, flush=True)
""").format(tests=str(Path(__file__).parent))


def writer(root, episodes, n_slow=0, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), ",".join(map(str, episodes)), str(n_slow)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_two_processes_write_distinct_episodes_into_one_store_at_once(tmp_path):
    root = tmp_path / "t"
    procs = [writer(root, [0, 2, 4, 6, 8]), writer(root, [1, 3, 5, 7, 9])]  # both race to create it
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
    trace = TraceStore.open(root)
    assert trace.episodes() == list(range(10))
    for ep in range(10):
        assert_episode_is(trace, ep)
    assert os.listdir(root / STAGING_DIR) == []


def test_a_writer_killed_mid_episode_leaves_only_whole_episodes_and_the_next_writer_resumes(tmp_path):
    root, staging, n_slow = tmp_path / "t", tmp_path / "t" / STAGING_DIR, 60
    proc = writer(root, list(range(4)), n_slow)
    try:
        assert proc.stdout.readline().split() == ["committed", "0"], proc.stderr.read()[-3000:]
        deadline = time.monotonic() + 60
        while not any((d / "slow").is_dir() for d in staging.iterdir()):  # episode 1 half written
            assert time.monotonic() < deadline and proc.poll() is None, "the writer never got mid-episode"
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(os.listdir(staging)) == 1  # the half episode, invisible to readers

    trace = TraceStore.open(root)
    committed = trace.episodes()
    assert committed[0] == 0 and committed == list(range(len(committed)))
    for ep in committed:
        assert_episode_is(trace, ep)
        assert trace.episode(ep).load("slow/a059")[0, 0] == 59

    proc = writer(root, list(range(4)), n_slow)  # resume: skips committed episodes, cleans the dead staging
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert [int(line.split()[1]) for line in out.splitlines()] == [ep for ep in range(4) if ep not in committed]
    assert trace.episodes() == list(range(4)) and os.listdir(staging) == []
    for ep in range(4):
        assert_episode_is(trace, ep)
