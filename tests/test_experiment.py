"""The experiment's plan: what each task trains on and how many segments a sample needs."""

from memlens.workflows.experiment import STRIDE, TRAIN_VARIANTS, ExperimentConfig, segments_needed, segments_of
from memlens.tasks.worlds import VARIANTS, make_spec


def test_a_training_sample_spans_the_cue_and_the_first_go_frame_of_every_trained_variant():
    for task, variants in TRAIN_VARIANTS.items():
        k = segments_needed(task, variants)
        for v in variants:
            spec = make_spec(task, variant=v)
            # a sample ending at the first go frame reaches back (K-1) strides: to frame 0 or before
            assert spec.go_start - (k - 1) * STRIDE <= 0, (task, v, k)


def test_cue_recall_trains_on_long_and_never_on_extra_long():
    cfg = ExperimentConfig()
    assert "long" in cfg.train_variants["cue_recall"]
    assert all("extra_long" not in v for v in cfg.train_variants.values())  # the extrapolation test
    assert set(cfg.eval_variants) == set(VARIANTS)
    assert segments_of("cue_recall", cfg) == 13 and segments_of("count", cfg) == 9 and segments_of("order", cfg) == 14
    assert segments_of("count", ExperimentConfig(n_mem_segments={"count": 4})) == 4


def test_cue_recall_warms_up_on_the_short_delays_before_the_long_one():
    cfg = ExperimentConfig()
    warm = cfg.warmup_variants["cue_recall"]
    assert "long" not in warm and "long" in cfg.train_variants["cue_recall"]
    # the warm-up's windows reach over the cue and its longest delay, the final stage's over long
    for task, variants in cfg.warmup_variants.items():
        assert segments_needed(task, variants) <= cfg.warmup_segments[task] < segments_of(task, cfg)
    assert "count" not in cfg.warmup_variants and cfg.steps["count"] > cfg.steps["cue_recall"]


def test_the_final_stage_continues_from_the_warm_up_checkpoint_with_deeper_windows(memory_checkpoint, cue_dataset, tmp_path):
    """A real lerobot-train run from a checkpoint (2 steps): its config, now K=3, and its weights carry over."""
    import json

    from safetensors.torch import load_file

    from memlens.workflows.experiment import train_policy

    cfg = ExperimentConfig(batch_size=2)
    ckpt = train_policy(cue_dataset, tmp_path / "final", cfg, num_mem_tokens=4, segments=3, steps=2,
                        init=memory_checkpoint)
    config = json.loads((ckpt / "config.json").read_text())
    assert config["n_mem_segments"] == 3 and config["num_mem_tokens"] == 4
    before, after = load_file(memory_checkpoint / "model.safetensors"), load_file(ckpt / "model.safetensors")
    assert before.keys() == after.keys()
    drift = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert 0 < drift < 0.01  # trained a little, from the warm-up's weights (a fresh init differs by far more)
    # a rerun reuses the finished checkpoint instead of training again
    assert train_policy(cue_dataset, tmp_path / "final", cfg, num_mem_tokens=4, segments=3, steps=2,
                        init=memory_checkpoint) == ckpt


def test_a_rerun_reuses_an_evaluation_only_of_the_same_checkpoints_settings_and_newer_than_them(tmp_path):
    import json
    import os

    from memlens.workflows.experiment import cached_results

    cfg = ExperimentConfig()
    ckpts = {n: tmp_path / n for n in ("baseline", "memory")}
    for c in ckpts.values():
        c.mkdir()
        (c / "model.safetensors").write_bytes(b"")
    results = {"n_episodes": cfg.n_eval_episodes, "seed": cfg.eval_seed,
               "policies": {n: {"path": str(c)} for n, c in ckpts.items()},
               "results": [{"variant": v} for v in cfg.eval_variants]}
    path = tmp_path / "evaluation_results.json"
    path.write_text(json.dumps(results))
    os.utime(path, (2e9, 2e9))
    assert cached_results(path, ckpts, cfg) == results
    assert cached_results(path, ckpts, ExperimentConfig(n_eval_episodes=10)) is None
    assert cached_results(path, {**ckpts, "memory": tmp_path / "elsewhere"}, cfg) is None
    os.utime(ckpts["memory"] / "model.safetensors", (3e9, 3e9))  # retrained after the evaluation
    assert cached_results(path, ckpts, cfg) is None
    path.write_text("{not json")
    assert cached_results(path, ckpts, cfg) is None
