"""The experiment's plan: what each task trains on and how many segments a sample needs."""

from memlens.experiment import STRIDE, TRAIN_VARIANTS, ExperimentConfig, segments_needed, segments_of
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
    assert segments_of("cue_recall", cfg) == 13 and segments_of("count", cfg) == 9
    assert segments_of("count", ExperimentConfig(n_mem_segments={"count": 4})) == 4
