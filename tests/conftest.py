"""Shared fixtures: offline, one torch thread, a private HF_HOME holding the tiny SmolVLM."""

import os
import tempfile

# Before anything imports huggingface_hub (it reads HF_HOME at import time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "MEMLENS_TEST_HF_HOME" not in os.environ:
    os.environ["MEMLENS_TEST_HF_HOME"] = tempfile.mkdtemp(prefix="memlens-hf-")
os.environ["HF_HOME"] = os.environ["MEMLENS_TEST_HF_HOME"]

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def tiny_vlm():
    """The tiny SmolVLM installed into this session's Hub cache (config, tokenizer, processor)."""
    from memlens.models import install_vlm

    return install_vlm("tiny", hf_home=os.environ["HF_HOME"])


@pytest.fixture(scope="session")
def cue_dataset(tmp_path_factory):
    """A small cue-recall dataset (short delay) recorded with the scripted expert."""
    from memlens.tasks.record import record_dataset

    root = tmp_path_factory.mktemp("data") / "cue_short"
    return record_dataset(root=root, repo_id="local/cue_short", task="cue_recall", variant="short",
                          n_episodes=6, seed=0, progress=False)


BIN = __import__("pathlib").Path(__import__("sys").executable).parent


def run_ok(cmd, env_extra=None, **kw):
    """Run a command with the test environment (plus `env_extra`); fail with its output tail if it fails."""
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env_extra or {})}
    proc = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _train(dataset, out, **policy):
    from memlens.workflows.train import tiny_train_args

    proc = run_ok([BIN / "lerobot-train", *tiny_train_args(dataset_root=dataset, output_dir=out, steps=4,
                                                            batch_size=4, **policy)])
    assert "n_valid_segments" in proc.stdout + proc.stderr  # the recurrent path ran
    return out / "checkpoints" / "last" / "pretrained_model"


@pytest.fixture(scope="session")
def memory_checkpoint(cue_dataset, tmp_path_factory):
    """Stock `lerobot-train` (found through the plugin shim) with 4 memory tokens and K=2 segments."""
    return _train(cue_dataset, tmp_path_factory.mktemp("runs") / "memory", num_mem_tokens=4, n_mem_segments=2)


@pytest.fixture(scope="session")
def baseline_checkpoint(cue_dataset, tmp_path_factory):
    """The same budget without memory (num_mem_tokens=0, still K=2 segments per sample)."""
    return _train(cue_dataset, tmp_path_factory.mktemp("runs") / "baseline", num_mem_tokens=0, n_mem_segments=2)


def edited_checkpoint(src, dst, edit):
    """A copy of checkpoint `src` at `dst` whose config.json dict went through `edit(config)`."""
    import json
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    edit(config)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def derived_store(src, dst, *, drop=(), keep_updates=None, episodes=None, sites=None, change=None):
    """A copy of trace store `src` (its `episodes`, default all) at `dst` without the arrays whose names start
    with one of `drop`, and with episode e cut to its first `keep_updates[e]` updates (and their frames), or
    to `(updates, frames)` when `keep_updates[e]` is a pair. `sites` declares more sites; `change(e, arrays,
    attrs)` edits an episode's arrays and attrs (in place) before it is written."""
    from memlens.store import TraceStore

    src = TraceStore.open(src)
    keep = lambda name: not name.startswith(tuple(drop))  # noqa: E731
    sites = {**{n: s for n, s in src.sites.items() if keep(n)}, **(sites or {})}
    out = TraceStore.create(dst, manifest={"provenance": src.provenance, "sites": sites})
    for e in episodes if episodes is not None else src.episodes():
        trace = src.episode(e)
        arrays = {n: trace.load(n) for n in trace.names if keep(n)}
        attrs = dict(trace.attrs)
        n_upd = (keep_updates or {}).get(e)
        if n_upd is not None:
            if isinstance(n_upd, tuple):
                n_upd, n_frames = n_upd
            else:
                n_frames = int(trace.load("memory/update_frame")[n_upd])
            for n, a in arrays.items():
                axis0 = src.sites[n]["shape"][0]
                arrays[n] = a[:n_upd] if axis0 == "U" else a[:n_frames] if axis0 == "T" else a
            attrs.update(length=n_frames, n_updates=n_upd)
        if change is not None:
            change(e, arrays, attrs)
        out.write_episode(e, arrays, attrs)
    return dst


def add_wrist_camera(config):
    config["input_features"]["observation.images.wrist"] = {"type": "VISUAL", "shape": [3, 64, 64]}


@pytest.fixture(scope="session")
def analysis_traces(memory_checkpoint, tmp_path_factory):
    """16 medium-delay cue-recall episodes (4 cues) replayed through the tiny memory checkpoint and
    captured with attention and hidden states: the store the analysis and app tests read."""
    from memlens.capture.dataset import capture
    from memlens.tasks.record import record_dataset

    root = tmp_path_factory.mktemp("data") / "cue_medium"
    record_dataset(root=root, repo_id="local/cue_medium", task="cue_recall", variant="medium",
                   n_episodes=16, seed=1, progress=False)
    out = tmp_path_factory.mktemp("traces") / "analysis"
    capture(str(memory_checkpoint), str(root), str(out), attention=True, hidden=True, batch_episodes=4)
    return out
