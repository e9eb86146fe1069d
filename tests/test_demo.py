"""`memlens demo` end to end (few steps and episodes): dataset, recurrent training, replay, the shipped
checkpoints evaluated and swapped, live captures of both with the UMAP saved."""

import numpy as np

from memlens.analysis.store_embedding import cached_umap
from memlens.store import TraceStore
from memlens.workflows.demo import run_demo
from memlens.workflows.demo_checkpoints import demo_checkpoint


def test_the_shipped_checkpoints_are_a_memory_policy_and_its_baseline():
    import json

    mem = json.loads((demo_checkpoint("memory") / "config.json").read_text())
    base = json.loads((demo_checkpoint("baseline") / "config.json").read_text())
    assert mem["type"] == base["type"] == "smolvla_rmt"
    assert mem["num_mem_tokens"] == 4 and base["num_mem_tokens"] == 0
    assert mem["n_mem_segments"] == base["n_mem_segments"] == 9


def test_the_demo_trains_replays_evaluates_swaps_and_captures(tmp_path, capsys):
    from rich.console import Console

    traces = run_demo(workdir=tmp_path / "demo", steps=2, n_episodes=6, eval_episodes=2, capture_episodes=4,
                      console=Console(width=160))  # serve=False: the app is tested in test_app
    out = capsys.readouterr().out
    assert "memlens_cue_recall" in out and "swap" in out.lower()
    store = TraceStore.open(traces)
    assert store.episodes() == list(range(4)) and "attention/mem_to_groups" in store.episode(0).names
    assert all("success" in store.episode(e).attrs for e in store.episodes())
    pts = cached_umap(store)  # saved beside the traces: the app opens with it
    assert pts is not None and len(pts) == len(store.gather("memory/write")[0])
    assert np.isfinite(pts.coords).all()
    baseline = TraceStore.open(traces.parent / "baseline")
    assert "memory/write" not in baseline.episode(0).names and "attention/action_to_groups" in baseline.episode(0).names
    runs = list((tmp_path / "demo" / "runs").iterdir())
    assert (runs[0] / "checkpoints" / "last" / "pretrained_model" / "model.safetensors").is_file()
    assert TraceStore.open(runs[0] / "traces").episodes() == list(range(4))
