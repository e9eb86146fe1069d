"""Packs of the trace store: what they hold, reading through them, resume, invalidation, crashes, the CLI."""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from memlens.store import (
    CorruptEpisodeError,
    EpisodeNotFoundError,
    LazyArray,
    PackedArray,
    ReadOnlyStoreError,
    TraceStore,
)
from memlens.store import format as fmt
from memlens.store import packs as packs_module

SITES = {
    "memory/write": {"kind": "memory", "shape": ["U", 4, 8], "dtype": "float32"},
    "memory/update_frame": {"kind": "memory", "shape": ["U"], "dtype": "int32"},
    "frame/update": {"kind": "frame", "shape": ["T"], "dtype": "int32"},
    "action/predicted": {"kind": "action", "shape": ["T", 3], "dtype": "float32"},
    "attention/groups": {"kind": "attention", "shape": ["U", "G"], "dtype": "float16"},  # G varies
    "frames/cam": {"kind": "frame", "shape": ["T", 2, 2, 3], "dtype": "uint8"},
    "done": {"kind": "frame", "shape": ["T"], "dtype": "bool"},
    "score": {"kind": "scalar", "shape": [], "dtype": "float64"},
    "label/cue": {"kind": "label", "shape": ["T"], "dtype": "int64"},
    "label/phase": {"kind": "label", "shape": ["T"], "dtype": "int64"},
}
STEPS = 3  # frames per memory update


def manifest():
    return {"provenance": {"checkpoint": {"path": "ckpt", "sha256": "abc"}}, "sites": SITES}


def episode(ep: int, updates: int | None = None) -> dict[str, np.ndarray]:
    """Random arrays of episode `ep`; 1 update for ep 1, 0 for ep 2, no label/phase for ep 4, G=3 for ep 5."""
    rng = np.random.default_rng(ep)
    u = updates if updates is not None else {1: 1, 2: 0}.get(ep, int(rng.integers(2, 6)))
    t = u * STEPS
    arrays = {
        "memory/write": rng.standard_normal((u, 4, 8)).astype(np.float32),
        "memory/update_frame": (np.arange(u) * STEPS).astype(np.int32),
        "frame/update": (np.arange(t) // STEPS).astype(np.int32),
        "action/predicted": rng.standard_normal((t, 3)).astype(np.float32),
        "attention/groups": rng.random((u, 3 if ep == 5 else 2)).astype(np.float16),
        "frames/cam": rng.integers(0, 255, (t, 2, 2, 3), dtype=np.uint8),
        "done": rng.random(t) > 0.5,
        "score": np.float64(ep / 7),
        "label/cue": np.full(t, ep % 3, np.int64),
        "label/phase": (np.arange(t) >= STEPS).astype(np.int64),
    }
    if ep == 4:
        del arrays["label/phase"]
    return arrays


def make(root, eps=range(8), **kw) -> TraceStore:
    store = TraceStore.create(root, manifest=manifest(), **kw)
    for ep in eps:
        store.write_episode(ep, episode(ep), {"length": len(episode(ep)["frame/update"]), "task": f"task {ep}"})
    return store


def snapshot(root) -> dict:
    """Every episode's attrs, names and arrays, read through a fresh reader."""
    reader = TraceStore.open(root)
    out = {}
    for ep in reader.episodes():
        trace = reader.episode(ep)
        out[ep] = (trace.attrs, trace.names, trace.shapes, {n: trace.load(n) for n in trace.names})
    return out


def assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for ep in a:
        attrs, names, shapes, arrays = a[ep]
        assert (attrs, names, shapes) == b[ep][:3], ep
        for n, x in arrays.items():
            y = b[ep][3][n]
            assert x.dtype == y.dtype and x.shape == y.shape, (ep, n)
            assert x.tobytes() == y.tobytes(), (ep, n)  # bitwise


def pack_dirs(root) -> list[str]:
    return sorted(p.name for p in (root / "packs").iterdir() if p.is_dir()) if (root / "packs").exists() else []


# ---- what a pack holds, and reading through it ------------------------------------------------------


def test_a_packed_store_reads_bitwise_like_its_episodes(tmp_path, monkeypatch):
    monkeypatch.setattr(fmt, "PACK_CHUNK_BYTES", 200)  # a few rows per chunk: episodes span chunks
    root = tmp_path / "t"
    store = make(root)
    before = snapshot(root)
    name = store.pack()
    assert pack_dirs(root) == [name] and fmt.parse_pack_name(name) == (0, 7)
    assert not os.listdir(root / fmt.STAGING_DIR)
    index = json.loads((root / "packs" / name / "pack.json").read_text())
    assert index["episodes"] == list(range(8)) and index["format"] == "memlens.trace.pack"
    # never packed: camera frames, 0-d arrays; label/phase lacks episode 4, attention/groups has G=3 in 5
    assert "frames/cam" not in index["arrays"] and "score" not in index["arrays"]
    assert index["arrays"]["label/phase"]["episodes"] == [0, 1, 2, 3, 5, 6, 7]
    assert 5 not in index["arrays"]["attention/groups"]["episodes"]
    assert index["arrays"]["memory/write"]["offsets"][-1] == sum(len(episode(e)["memory/write"]) for e in range(8))
    assert index["markers"]["3"] == json.loads((root / "episodes" / "000003" / ".committed").read_text())
    assert index["attrs"]["3"] == {"episode_index": 3, "length": len(episode(3)["frame/update"]), "task": "task 3"}

    after = snapshot(root)
    assert_same(before, after)
    for ep in range(8):  # and equal to what was written
        for n, x in episode(ep).items():
            np.testing.assert_array_equal(after[ep][3][n], x)
    reader = TraceStore.open(root)
    trace = reader.episode(3)
    assert isinstance(trace["memory/write"], PackedArray) and isinstance(trace["frames/cam"], LazyArray)
    assert isinstance(reader.episode(5)["attention/groups"], LazyArray)
    assert isinstance(reader.episode(2)["memory/write"], PackedArray) and reader.episode(2).load("memory/write").shape == (0, 4, 8)
    trace.verify()  # the episode's own files
    assert reader.episodes() == list(range(8)) and reader.has_episode(3) and 8 not in reader


def test_a_packed_array_slices_like_a_lazy_array(tmp_path):
    root = tmp_path / "t"
    make(root).pack()
    expected = episode(6)["memory/write"]
    arr = TraceStore.open(root).episode(6)["memory/write"]
    lazy = TraceStore.open(root).episode(6)._lazy("memory/write")
    assert isinstance(arr, PackedArray)
    assert (arr.shape, arr.dtype, arr.ndim, arr.chunks, arr.size, arr.nbytes, len(arr)) == \
        (lazy.shape, lazy.dtype, lazy.ndim, lazy.chunks, lazy.size, lazy.nbytes, len(lazy))
    for sel in (slice(1, 3), -1, (slice(None), 2), (Ellipsis, 0), np.s_[::2, 1:3, :5], 0):
        np.testing.assert_array_equal(arr[sel], expected[sel])
        np.testing.assert_array_equal(arr[sel], lazy[sel])
    np.testing.assert_array_equal(np.asarray(arr), expected)
    assert np.asarray(arr, dtype=np.float64).dtype == np.float64
    out = arr[...]
    out[:] = 0  # a fresh, writable array: the cached pack data is not touched
    np.testing.assert_array_equal(arr[...], expected)
    assert isinstance(arr.zarr, zarr.Array) and arr.zarr.shape == expected.shape
    with pytest.raises(IndexError):
        arr[len(expected)]


def test_a_packed_array_is_read_once_per_store_object(tmp_path, monkeypatch):
    root = tmp_path / "t"
    make(root).pack()
    reader = TraceStore.open(root)
    x, _ = reader.gather("memory/write")
    calls = []
    real = packs_module.zarr.open_array
    monkeypatch.setattr(packs_module.zarr, "open_array", lambda *a, **k: calls.append(k) or real(*a, **k))
    y, _ = reader.gather("memory/write")
    reader.episode(3).load("memory/write")
    assert calls == [] and x.tobytes() == y.tobytes()
    TraceStore.open(root).gather("memory/write")  # another object reads it again
    assert len(calls) == 1


def test_gather_concatenates_in_the_order_given_from_packs_and_episodes(tmp_path):
    root = tmp_path / "t"
    store = make(root, eps=range(5))
    store.pack()
    make(root, eps=range(5, 8))  # not packed yet
    reader = TraceStore.open(root)
    order = [7, 0, 3, 3, 5, 2, 1]
    for name, eps in (("memory/write", order), ("action/predicted", order), ("frames/cam", order),
                      ("attention/groups", [7, 0, 3, 6, 1])):
        values, offsets = reader.gather(name, eps)
        assert offsets[0] == 0 and len(offsets) == len(eps) + 1
        for i, ep in enumerate(eps):
            np.testing.assert_array_equal(values[offsets[i]:offsets[i + 1]], episode(ep)[name])
    values, offsets = reader.gather("frame/update")
    assert len(offsets) == 9 and values.tobytes() == np.concatenate([episode(e)["frame/update"] for e in range(8)]).tobytes()
    with pytest.raises(KeyError, match="Episode 4 has no array 'label/phase'"):
        reader.gather("label/phase", [3, 4])
    with pytest.raises(EpisodeNotFoundError, match="Episode 9 is not in the trace store"):
        reader.gather("memory/write", [1, 9])
    with pytest.raises(ValueError, match=r"other trailing shapes.*\(2,\), \(3,\)"):
        reader.gather("attention/groups")
    with pytest.raises(ValueError, match="0-d"):
        reader.gather("score")


def test_memory_states_of_a_packed_store_equal_those_before_packing(tmp_path):
    from memlens.analysis.data import memory_states

    root = tmp_path / "t"
    store = make(root)
    before = memory_states(TraceStore.open(root))
    subset_before = memory_states(TraceStore.open(root), [5, 3, 0], site="memory/write")
    store.pack()
    after = memory_states(TraceStore.open(root))
    assert sorted(after.labels) == ["cue"]  # phase is missing in episode 4: dropped, as before
    assert sorted(memory_states(TraceStore.open(root), [0, 1, 3]).labels) == ["cue", "phase"]
    for a, b in ((before, after), (subset_before, memory_states(TraceStore.open(root), [5, 3, 0]))):
        for field in ("X", "episode", "update", "frame"):
            x, y = getattr(a, field), getattr(b, field)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), field
        assert sorted(a.labels) == sorted(b.labels)
        for k in a.labels:
            assert a.labels[k].dtype == b.labels[k].dtype and np.array_equal(a.labels[k], b.labels[k])
    # the rows are what the episodes hold
    rows = after.episode == 6
    np.testing.assert_array_equal(after.X[rows], episode(6)["memory/write"])
    np.testing.assert_array_equal(after.labels["cue"][rows], episode(6)["label/cue"][episode(6)["memory/update_frame"]])
    np.testing.assert_array_equal(after.update[rows], np.arange(rows.sum()))


# ---- resume, consolidate, invalidation ---------------------------------------------------------------


def test_packing_again_after_resuming_adds_a_pack_and_consolidate_makes_one(tmp_path):
    root = tmp_path / "t"
    first = make(root, eps=range(4)).pack()
    store = make(root, eps=range(4, 8))  # a resumed capture
    assert TraceStore.open(root).episode(5)._pack is None
    second = store.pack()
    assert pack_dirs(root) == sorted([first, second]) and fmt.parse_pack_name(second) == (4, 7)
    assert store.pack() is None  # nothing new
    expected = {ep: episode(ep) for ep in range(8)}
    reader = TraceStore.open(root)
    for ep in range(8):
        assert reader.episode(ep)._pack is not None
        for n, x in expected[ep].items():
            np.testing.assert_array_equal(reader.episode(ep).load(n), x)
    one = store.pack(consolidate=True)
    assert pack_dirs(root) == [one] and fmt.parse_pack_name(one) == (0, 7)
    assert store.pack(consolidate=True) is None and store.pack() is None
    info = store.packs()
    assert list(info) == [one] and info[one]["episodes"] == list(range(8))
    assert info[one]["arrays"]["memory/write"]["nbytes"] == sum(expected[e]["memory/write"].nbytes for e in range(8))
    # the reader that had listed the old packs sees the consolidated one
    for ep in range(8):
        np.testing.assert_array_equal(reader.episode(ep).load("action/predicted"), expected[ep]["action/predicted"])
    np.testing.assert_array_equal(reader.gather("memory/write")[0],
                                  np.concatenate([expected[e]["memory/write"] for e in range(8)]))


def test_packs_hold_at_most_pack_episodes_each(tmp_path, monkeypatch):
    monkeypatch.setattr(packs_module, "PACK_EPISODES", 3)  # 1,000 in use: one small pack.json per reader
    root = tmp_path / "t"
    store = make(root)
    before = snapshot(root)
    store.pack()
    assert [fmt.parse_pack_name(n) for n in pack_dirs(root)] == [(0, 2), (3, 5), (6, 7)]
    assert_same(before, snapshot(root))
    store.pack(consolidate=True)  # rewritten, still three per pack
    assert [fmt.parse_pack_name(n) for n in pack_dirs(root)] == [(0, 2), (3, 5), (6, 7)]
    np.testing.assert_array_equal(TraceStore.open(root).gather("memory/write")[0],
                                  np.concatenate([episode(e)["memory/write"] for e in range(8)]))
    reader = TraceStore.open(root)  # one episode of a large store: only its own pack's pack.json is read
    read = []
    original = reader._backend.read_bytes
    monkeypatch.setattr(reader._backend, "read_bytes", lambda rel: read.append(rel) or original(rel))
    np.testing.assert_array_equal(reader.episode(4).load("memory/write"), episode(4)["memory/write"])
    assert [r for r in read if r.endswith("pack.json")] == [f"packs/{pack_dirs(root)[1]}/pack.json"]


def test_deleting_a_packed_episode_deletes_its_pack_and_the_rest_reads_the_same(tmp_path):
    root = tmp_path / "t"
    store = make(root, eps=range(4))
    kept = store.pack()
    make(root, eps=range(4, 8))
    store.pack()
    reader = TraceStore.open(root)
    reader.gather("memory/write")  # caches both packs
    store.delete_episode(6)
    assert pack_dirs(root) == [kept]
    assert reader.episodes() == [0, 1, 2, 3, 4, 5, 7]
    values, offsets = reader.gather("memory/write")
    np.testing.assert_array_equal(values, np.concatenate([episode(e)["memory/write"] for e in reader.episodes()]))
    for ep in reader.episodes():
        np.testing.assert_array_equal(reader.episode(ep).load("action/predicted"), episode(ep)["action/predicted"])
    with pytest.raises(EpisodeNotFoundError):
        reader.episode(6)
    assert fmt.parse_pack_name(store.pack()) == (4, 7)
    assert TraceStore.open(root).episode(5)._pack is not None


def test_overwrite_clears_the_packs_and_replacing_a_packed_episode_drops_its_pack(tmp_path):
    root = tmp_path / "t"
    make(root).pack()
    store = TraceStore.create(root, manifest=manifest(), overwrite=True)
    assert pack_dirs(root) == [] and store.episodes() == []
    store.write_episode(0, episode(0))
    store.write_episode(1, episode(1))
    store.pack()
    reader = TraceStore.open(root)
    reader.gather("memory/write")
    store.write_episode(0, episode(9, updates=4))  # a store created with overwrite replaces episodes
    assert pack_dirs(root) == []
    np.testing.assert_array_equal(reader.episode(0).load("memory/write"), episode(9, updates=4)["memory/write"])
    np.testing.assert_array_equal(reader.gather("memory/write", [0])[0], episode(9, updates=4)["memory/write"])


def test_a_pack_is_used_only_for_committed_episodes_and_stale_packs_are_rebuilt(tmp_path, monkeypatch):
    root = tmp_path / "t"
    store = make(root, eps=range(4))
    store.pack()
    reader = TraceStore.open(root)
    reader.gather("memory/write")
    shutil.rmtree(root / "episodes" / "000002")  # removed by hand: the pack still lists it
    assert reader.episodes() == [0, 1, 3] and not reader.has_episode(2)
    with pytest.raises(EpisodeNotFoundError):
        reader.episode(2)
    values, _ = reader.gather("memory/write")
    np.testing.assert_array_equal(values, np.concatenate([episode(e)["memory/write"] for e in (0, 1, 3)]))
    # a memlens without packs re-writes episode 2: the stale pack row must not be read as its data
    monkeypatch.setattr(packs_module, "invalidate", lambda store, eps: [])
    store.write_episode(2, episode(2, updates=5))
    monkeypatch.undo()
    with pytest.raises(CorruptEpisodeError, match="differs from its copy in the pack.*memlens store pack"):
        TraceStore.open(root).episode(2).verify()
    new = store.pack()  # deletes the stale pack, packs every episode again
    assert pack_dirs(root) == [new]
    fresh = TraceStore.open(root)
    fresh.episode(2).verify()
    np.testing.assert_array_equal(fresh.episode(2).load("memory/write"), episode(2, updates=5)["memory/write"])


def test_packs_left_by_an_older_memlens_overwriting_the_store_are_ignored(tmp_path, monkeypatch):
    root = tmp_path / "t"
    make(root, eps=range(3)).pack()
    # an older memlens: overwrite=True replaces the manifest and the episodes, and knows nothing of packs/
    monkeypatch.setattr("memlens.store.backends.LocalBackend.clear_packs", lambda self: None)
    monkeypatch.setattr("memlens.store.store._now", lambda: "2099-01-01T00:00:00+00:00")
    monkeypatch.setattr(packs_module, "invalidate", lambda store, eps: [])
    store = TraceStore.create(root, manifest=manifest(), overwrite=True)
    for ep in range(3):
        store.write_episode(ep, episode(ep + 10))
    monkeypatch.undo()
    assert len(pack_dirs(root)) == 1
    reader = TraceStore.open(root)
    for ep in range(3):
        assert reader.episode(ep)._pack is None
        np.testing.assert_array_equal(reader.episode(ep).load("memory/write"), episode(ep + 10)["memory/write"])
    np.testing.assert_array_equal(reader.gather("memory/write")[0],
                                  np.concatenate([episode(e + 10)["memory/write"] for e in range(3)]))
    new = TraceStore.create(root, manifest=manifest()).pack()  # deletes the old store's pack
    assert pack_dirs(root) == [new] and TraceStore.open(root).episode(1)._pack.name == new


def test_overlapping_packs_read_from_the_first_by_name(tmp_path, monkeypatch):
    root = tmp_path / "t"
    store = make(root, eps=range(3))
    first = store.pack()
    other = TraceStore.create(root, manifest=manifest())
    monkeypatch.setattr(other._backend, "list_packs", lambda: [])  # it did not see the first pack
    second = other.pack()
    monkeypatch.undo()
    assert len(pack_dirs(root)) == 2
    reader = TraceStore.open(root)
    assert reader.episode(1)._pack.name == min(first, second)
    for ep in range(3):
        np.testing.assert_array_equal(reader.episode(ep).load("memory/write"), episode(ep)["memory/write"])
    assert store.pack() is None
    assert len(pack_dirs(root)) == 2 and store.pack(consolidate=True) and len(pack_dirs(root)) == 1


def test_a_pack_deleted_under_a_reader_falls_back_to_the_episodes(tmp_path):
    root = tmp_path / "t"
    store = make(root, eps=range(3))
    name = store.pack()
    reader = TraceStore.open(root)
    trace = reader.episode(1)
    arr = trace["memory/write"]
    shutil.rmtree(root / "packs" / name)  # gone before anything was read from it
    np.testing.assert_array_equal(arr[...], episode(1)["memory/write"])
    np.testing.assert_array_equal(reader.gather("action/predicted")[0],
                                  np.concatenate([episode(e)["action/predicted"] for e in range(3)]))
    assert reader.episode(1)._pack is None


def test_a_damaged_pack_warns_and_reads_the_episodes(tmp_path):
    root = tmp_path / "t"
    name = make(root, eps=range(3)).pack()
    chunk = next(p for p in (root / "packs" / name / "memory" / "write" / "c").rglob("*") if p.is_file())
    chunk.write_bytes(b"garbage")
    reader = TraceStore.open(root)
    with pytest.warns(UserWarning, match="cannot be read.*--consolidate"):
        values, _ = reader.gather("memory/write")
    np.testing.assert_array_equal(values, np.concatenate([episode(e)["memory/write"] for e in range(3)]))


# ---- stores without packs, read-only, crashes ----------------------------------------------------------


def test_a_store_without_packs_reads_as_before(tmp_path):
    root = tmp_path / "t"
    make(root, eps=range(3))
    reader = TraceStore.open(root)
    trace = reader.episode(1)
    assert trace._pack is None and isinstance(trace["memory/write"], LazyArray)
    np.testing.assert_array_equal(reader.gather("memory/write")[0],
                                  np.concatenate([episode(e)["memory/write"] for e in range(3)]))
    assert reader.packs() == {} and not (root / "packs").exists()


def test_pack_refuses_a_read_only_store_and_a_read_only_filesystem(tmp_path, monkeypatch):
    root = tmp_path / "t"
    make(root, eps=range(2))
    with pytest.raises(ReadOnlyStoreError, match="opened read-only"):
        TraceStore.open(root).pack()
    store = TraceStore.create(root, manifest=manifest())

    def refuse(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(os, "mkdir", refuse)
    with pytest.raises(ReadOnlyStoreError, match="cannot be written here.*Nothing was changed"):
        store.pack()
    monkeypatch.undo()
    assert pack_dirs(root) == [] and store.pack() is not None


def test_an_unfinished_pack_is_ignored_and_cleaned_by_the_next_writer(tmp_path):
    from memlens.store.backends import _HOST

    root = tmp_path / "t"
    store = make(root, eps=range(3))
    name = store.pack()
    crashed = root / "packs" / f"p-000000-000002-{uuid.uuid4().hex[:8]}"
    shutil.copytree(root / "packs" / name, crashed)
    (crashed / "pack.json").unlink()
    staged = root / fmt.STAGING_DIR / f"pack-{_HOST}-999999999-abcdef012345"  # a dead packer's staging
    staged.mkdir()
    shutil.rmtree(root / "packs" / name)
    reader = TraceStore.open(root)
    assert reader.episode(1)._pack is None and reader.packs() == {}
    np.testing.assert_array_equal(reader.episode(1).load("memory/write"), episode(1)["memory/write"])
    TraceStore.create(root, manifest=manifest())
    assert pack_dirs(root) == [] and os.listdir(root / fmt.STAGING_DIR) == []


def test_a_memory_url_store_packs_and_ignores_unfinished_packs():
    import fsspec

    url = f"memory://memlens-packs-{uuid.uuid4().hex}/trace"
    store = make(url, eps=range(4))
    name = store.pack()
    fs, path = fsspec.core.url_to_fs(url)
    assert fs.exists(f"{path}/packs/{name}/pack.json")
    reader = TraceStore.open(url)
    assert reader.episode(2)._pack is not None
    for ep in range(4):
        np.testing.assert_array_equal(reader.episode(ep).load("memory/write"), episode(ep)["memory/write"])
    fs.rm(f"{path}/packs/{name}/pack.json")  # as if the packer had died before its last write
    fresh = TraceStore.open(url)
    assert fresh.episode(2)._pack is None and fresh.packs() == {}
    one = store.pack(consolidate=True)  # removes the unfinished one
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(f"{path}/packs", detail=False) if "p-" in p] == [one]
    store.delete_episode(2)
    assert not fs.exists(f"{path}/packs/{one}")
    np.testing.assert_array_equal(TraceStore.open(url).gather("memory/write")[0],
                                  np.concatenate([episode(e)["memory/write"] for e in (0, 1, 3)]))


def test_large_arrays_stay_per_episode(tmp_path, monkeypatch):
    monkeypatch.setattr(fmt, "PACK_MAX_EPISODE_BYTES", 100)
    root = tmp_path / "t"
    make(root, eps=range(3)).pack()
    reader = TraceStore.open(root)
    assert isinstance(reader.episode(1)["memory/write"], LazyArray)  # one update: 128 bytes
    assert isinstance(reader.episode(2)["memory/write"], PackedArray)  # no update: 0 bytes
    assert isinstance(reader.episode(0)["memory/update_frame"], PackedArray)
    np.testing.assert_array_equal(reader.gather("memory/write")[0],
                                  np.concatenate([episode(e)["memory/write"] for e in range(3)]))


def test_a_capture_packs_what_it_wrote_and_a_failed_pack_only_warns(tmp_path):
    from memlens.capture.dataset import pack_store

    root = tmp_path / "t"
    store = make(root, eps=range(2))
    pack_store(store)
    assert len(pack_dirs(root)) == 1
    make(root, eps=range(2, 3))
    with pytest.warns(UserWarning, match="committed, but packing them failed.*memlens store pack"):
        pack_store(TraceStore.open(root))  # read-only: ReadOnlyStoreError
    assert len(pack_dirs(root)) == 1


# ---- the command ---------------------------------------------------------------------------------------


def test_memlens_store_pack_packs_and_says_what_it_did(tmp_path, monkeypatch):
    from memlens.cli import app

    runner = CliRunner()
    root = tmp_path / "t"
    make(root, eps=range(3))
    result = runner.invoke(app, ["store", "pack", str(root)])
    assert result.exit_code == 0, result.output
    assert "packed 3 episodes" in result.output and "MB" in result.output and " s;" in result.output
    assert len(pack_dirs(root)) == 1
    result = runner.invoke(app, ["store", "pack", str(root)])
    assert result.exit_code == 0 and "nothing to pack" in result.output
    make(root, eps=range(3, 5))
    result = runner.invoke(app, ["store", "pack", str(root), "--consolidate"])
    assert result.exit_code == 0 and "packed 5 episodes" in result.output and len(pack_dirs(root)) == 1
    help_text = runner.invoke(app, ["store", "pack", "--help"]).output
    assert "Example:" in help_text and "memlens store pack" in help_text

    for bad, expected in ((tmp_path / "nope", "No trace store"), (tmp_path, "not a memlens trace store")):
        result = runner.invoke(app, ["store", "pack", str(bad)])
        assert result.exit_code == 2 and "error:" in result.output and expected in result.output
        assert "Traceback" not in result.output

    def refuse(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", path)

    make(root, eps=range(5, 6))
    monkeypatch.setattr(os, "mkdir", refuse)
    result = runner.invoke(app, ["store", "pack", str(root)])
    assert result.exit_code == 2 and "error:" in result.output and "cannot be written here" in result.output
    assert "Traceback" not in result.output
