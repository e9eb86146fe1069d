"""`memlens compare`: closed-loop and offline comparison of a baseline and a memory checkpoint."""

import json

import pytest
from conftest import BIN, run_ok

from memlens.errors import UserError
from memlens.workflows.evaluate import compare_in_env, compare_on_dataset, wilson_interval


def test_wilson_interval_matches_known_values_and_stays_in_bounds():
    lo, hi = wilson_interval(45, 50)
    assert lo == pytest.approx(0.7864, abs=1e-3) and hi == pytest.approx(0.9565, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


def test_compare_in_env_reports_every_metric_for_both_policies(baseline_checkpoint, memory_checkpoint):
    res = compare_in_env({"baseline": baseline_checkpoint, "memory": memory_checkpoint}, "memlens_cue_recall",
                         variants=["short", "control"], n_episodes=2, batch_size=2, seed=5)
    assert [(r["variant"], r["policy"]) for r in res["results"]] == [
        ("short", "baseline"), ("short", "memory"), ("control", "baseline"), ("control", "memory")]
    for r in res["results"]:
        assert r["n_episodes"] == 2 and 0 <= r["success_ci95"][0] <= r["success_rate"] <= r["success_ci95"][1] <= 1
        assert r["action_ms_p95"] >= r["action_ms_p50"] > 0 and r["chunk_ms_mean"] > 0
        assert r["peak_memory_mb"] > 0 and r["memory_kind"] == "cpu_process_peak_rss"
    assert res["policies"]["memory"]["num_mem_tokens"] == 4 and res["policies"]["baseline"]["num_mem_tokens"] == 0


def test_compare_offline_on_a_dataset_gives_per_episode_action_error(baseline_checkpoint, memory_checkpoint, cue_dataset):
    res = compare_on_dataset({"baseline": baseline_checkpoint, "memory": memory_checkpoint}, str(cue_dataset),
                             episodes=[0, 1])
    for name in ("baseline", "memory"):
        r = res["results"][name]
        assert len(r["per_episode_mse"]) == 2 and r["action_mse_mean"] > 0
        assert r["action_mse_ci95"][0] <= r["action_mse_mean"] <= r["action_mse_ci95"][1]


def test_memlens_compare_cli_writes_the_json(baseline_checkpoint, memory_checkpoint, tmp_path):
    out = tmp_path / "evaluation_results.json"
    proc = run_ok([BIN / "memlens", "compare", baseline_checkpoint, memory_checkpoint, "--env", "memlens_count",
                   "--variants", "short", "--n-episodes", "1", "--batch-size", "1", "--output", out])
    data = json.loads(out.read_text())
    assert data["env"] == "memlens_count" and len(data["results"]) == 2
    assert "baseline" in proc.stdout and "results written" in proc.stdout


@pytest.mark.parametrize("kwargs, message", [
    ({"env": "memlens_nope"}, "expected one of memlens_cue_recall, memlens_count, memlens_order, mikasa_remember_color3"),
    ({"env": "memlens_cue_recall", "n_episodes": 0}, "at least 1"),
    ({"env": "memlens_cue_recall", "variants": ["forever"]}, r"unknown variant\(s\) \['forever'\] of env memlens_cue_recall"),
    ({"env": "mikasa_remember_color3", "variants": ["medium"]}, "it has cue, control"),
])
def test_compare_rejects_bad_input_clearly(baseline_checkpoint, memory_checkpoint, kwargs, message):
    env = kwargs.pop("env")
    with pytest.raises(UserError, match=message):
        compare_in_env({"baseline": baseline_checkpoint, "memory": memory_checkpoint}, env, **kwargs)


def test_an_episode_range_outside_the_dataset_is_rejected(baseline_checkpoint, memory_checkpoint, cue_dataset):
    with pytest.raises(UserError, match=r"out of range.*0\.\.5"):
        compare_on_dataset({"baseline": baseline_checkpoint, "memory": memory_checkpoint}, str(cue_dataset),
                           episodes=[3, 40])


def test_checkpoints_trained_on_different_features_are_not_compared(memory_checkpoint, baseline_checkpoint, tmp_path):
    from conftest import add_wrist_camera, edited_checkpoint

    other = edited_checkpoint(baseline_checkpoint, tmp_path / "other", add_wrist_camera)
    with pytest.raises(UserError, match="different features.*observation.images.wrist"):
        compare_in_env({"baseline": str(other), "memory": str(memory_checkpoint)}, "memlens_cue_recall",
                       variants=["short"], n_episodes=1)


def test_a_checkpoint_that_does_not_match_the_env_names_the_keys(memory_checkpoint, tmp_path):
    from conftest import edited_checkpoint

    other = edited_checkpoint(memory_checkpoint, tmp_path / "wide",
                              lambda c: c["input_features"]["observation.state"].update(shape=[7]))
    with pytest.raises(UserError, match=r"does not match env.*observation.state.*\(7,\).*\(4,\)"):
        compare_in_env({"a": str(other), "b": str(other)}, "memlens_cue_recall", variants=["short"], n_episodes=1)


def test_the_recipe_scripts_train_and_evaluate_on_the_cpu_path(cue_dataset, tmp_path):
    import os

    from conftest import BIN, run_ok

    env = {"PATH": f"{BIN}:{os.environ['PATH']}", "PYTHON": str(BIN / "python"), "ROOT": str(cue_dataset),
           "STEPS": "2", "BATCH": "2", "K": "2"}
    for script, out in (("train_baseline.sh", "base"), ("train_memory.sh", "mem")):
        run_ok(["env", *[f"{k}={v}" for k, v in env.items()], f"OUT={tmp_path / out}", "bash", f"recipes/{script}"],
               timeout=600)
    run_ok(["env", *[f"{k}={v}" for k, v in env.items()],
            f"BASELINE={tmp_path / 'base/checkpoints/last/pretrained_model'}",
            f"MEMORY={tmp_path / 'mem/checkpoints/last/pretrained_model'}", "N=1",
            f"OUTPUT={tmp_path / 'r.json'}", "bash", "recipes/evaluate.sh"], timeout=600)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["policies"]["memory"]["num_mem_tokens"] == 4 and data["policies"]["baseline"]["num_mem_tokens"] == 0
