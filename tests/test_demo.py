"""`memlens demo` end to end (few steps): dataset, recurrent training, replay, capture."""

from memlens.workflows.demo import run_demo
from memlens.store import TraceStore


def test_the_demo_trains_replays_and_captures(tmp_path):
    ckpt = run_demo(workdir=tmp_path / "demo", steps=2, n_episodes=6)  # serve=False: the app is tested in test_app
    assert (ckpt / "model.safetensors").is_file()
    store = TraceStore.open(ckpt.parents[2] / "traces")
    assert store.episodes() == list(range(6))
    assert "attention/mem_to_groups" in store.episode(0).names
