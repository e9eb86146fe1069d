"""The local SmolVLM builder: deterministic Hub-cache snapshots that SmolVLA resolves offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from huggingface_hub import constants

from memlens.models import (
    FULL_VLM_ID,
    TINY_VLM_ID,
    build_tokenizer,
    full_size_smolvla_kwargs,
    full_size_vlm_config,
    install_vlm,
    tiny_smolvla_kwargs,
    tiny_vlm_config,
)
from memlens.models import vlm_builder


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Never reach for the Hub, even when pytest was started without HF_HUB_OFFLINE=1."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """A private HF_HOME for this process.

    huggingface_hub copies HF_HOME into ``constants`` when first imported, so in an already running
    process the env var alone does nothing: patch the constants too (transformers reads
    ``constants.HF_HUB_CACHE`` at call time).
    """
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return home


def _snapshot_bytes(snapshot):
    return {p.name: p.read_bytes() for p in sorted(snapshot.iterdir())}


def _tiny_policy_config():
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    return SmolVLAConfig(
        **tiny_smolvla_kwargs(),
        device="cpu",
        input_features={
            "observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 64, 64)),
            "observation.state": PolicyFeature(FeatureType.STATE, (4,)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))},
    )


def _identity_stats():
    return {
        "observation.state": {"mean": torch.zeros(4), "std": torch.ones(4)},
        "action": {"mean": torch.zeros(4), "std": torch.ones(4)},
    }


def _observation():
    generator = torch.Generator().manual_seed(0)
    return {
        "observation.images.top": torch.rand(3, 64, 64, generator=generator),
        "observation.state": torch.randn(4, generator=generator),
        "task": "reach the target that matches the cue",
    }


def test_tiny_config_has_the_documented_shapes_and_sixteen_image_tokens():
    config = tiny_vlm_config()
    vision, text = config.vision_config, config.text_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (64, 2, 2)
    assert (vision.intermediate_size, vision.image_size, vision.patch_size) == (128, 64, 8)
    assert (vision.image_size // vision.patch_size) ** 2 // config.scale_factor**2 == 16
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (128, 4, 256)
    assert (text.num_attention_heads, text.num_key_value_heads, text.head_dim) == (4, 2, 32)
    assert text.vocab_size % 64 == 0 and len(build_tokenizer()) <= text.vocab_size
    assert config.image_token_id == build_tokenizer().image_token_id


def test_the_128_px_tiny_vlm_embeds_a_full_mikasa_frame_into_the_same_sixteen_tokens(tmp_path):
    import json as _json

    from memlens.models.vlm_builder import tiny128_smolvla_kwargs, tiny128_vlm_config

    config = tiny128_vlm_config()
    assert config.vision_config.image_size == 128 and config.scale_factor == 4
    assert (128 // config.vision_config.patch_size) ** 2 // config.scale_factor**2 == 16
    assert tiny128_smolvla_kwargs()["resize_imgs_with_padding"] == (128, 128)
    snapshot = install_vlm("tiny128", hf_home=tmp_path)
    assert _json.loads((snapshot / "config.json").read_text())["vision_config"]["image_size"] == 128
    from transformers import SmolVLMForConditionalGeneration

    model = SmolVLMForConditionalGeneration(config).model
    features = model.connector(model.vision_model(pixel_values=torch.rand(1, 3, 128, 128)).last_hidden_state)
    assert features.shape == (1, 16, config.text_config.hidden_size)


def test_full_size_config_has_the_smolvlm2_500m_shapes():
    config = full_size_vlm_config()
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_attention_heads, text.num_key_value_heads, text.head_dim) == (960, 15, 5, 64)
    assert (text.intermediate_size, text.num_hidden_layers, text.vocab_size) == (2560, 32, 49280)
    assert (text.rope_parameters["rope_theta"], text.max_position_embeddings) == (100000.0, 8192)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (768, 12, 12)
    assert (vision.intermediate_size, vision.image_size, vision.patch_size, config.scale_factor) == (3072, 512, 16, 4)


def test_tokenizer_exposes_smolvlm_image_token_ids_and_pads_right():
    tokenizer = build_tokenizer()
    assert tokenizer.padding_side == "right"
    ids = {tokenizer.fake_image_token_id, tokenizer.image_token_id, tokenizer.global_image_token_id}
    assert len(ids) == 3 and tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(tokenizer.global_image_token_id) == "<global-img>"
    encoded = tokenizer(["press the button", "pick the red cube"], padding="longest")
    assert tokenizer.decode(encoded["input_ids"][1], skip_special_tokens=True) == "pick the red cube"
    assert encoded["attention_mask"][0][-1] == 0  # the shorter text is padded on the right
    assert len(tokenizer.tokenize("reach the target that matches the cue")) <= 8


def test_two_builds_write_byte_identical_files_and_the_same_revision(tmp_path):
    first = install_vlm("tiny", hf_home=tmp_path / "a")
    second = install_vlm("tiny", hf_home=tmp_path / "b")
    assert first.name == second.name and len(first.name) == 40
    assert _snapshot_bytes(first) == _snapshot_bytes(second)
    assert sorted(_snapshot_bytes(first)) == sorted(vlm_builder._REQUIRED_FILES)
    repo_dir = tmp_path / "a" / "hub" / "models--memlens--tiny-smolvlm"
    assert first == repo_dir / "snapshots" / first.name
    assert (repo_dir / "refs" / "main").read_text() == first.name
    assert vlm_builder._revision(first) == first.name
    assert sorted(p.name for p in repo_dir.iterdir()) == ["refs", "snapshots"]  # no temp left


def test_hf_home_defaults_to_the_hf_home_environment(hf_home):
    snapshot = install_vlm("tiny")
    assert snapshot.is_relative_to(hf_home / "hub" / "models--memlens--tiny-smolvlm" / "snapshots")


def test_a_second_install_returns_the_existing_snapshot_without_rebuilding(tmp_path, monkeypatch):
    snapshot = install_vlm("tiny", hf_home=tmp_path)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt a complete snapshot")

    monkeypatch.setattr(vlm_builder, "_write_files", no_rebuild)
    start = time.perf_counter()
    assert install_vlm("tiny", hf_home=tmp_path) == snapshot
    assert time.perf_counter() - start < 0.1


def test_a_crash_during_the_build_leaves_no_snapshot_and_no_temporary_files(tmp_path, monkeypatch):
    def crash(directory, kind, with_weights):
        (directory / "config.json").write_text("{}")
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(vlm_builder, "_write_files", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        install_vlm("tiny", hf_home=tmp_path)
    repo_dir = tmp_path / "hub" / "models--memlens--tiny-smolvlm"
    assert list((repo_dir / "snapshots").iterdir()) == []
    assert sorted(p.name for p in repo_dir.iterdir()) == ["snapshots"]


def test_an_incomplete_snapshot_is_rebuilt_in_place(tmp_path):
    snapshot = install_vlm("tiny", hf_home=tmp_path)
    expected = _snapshot_bytes(snapshot)
    (snapshot / "tokenizer.json").unlink()
    assert install_vlm("tiny", hf_home=tmp_path) == snapshot
    assert _snapshot_bytes(snapshot) == expected


def test_weights_are_only_offered_for_the_tiny_kind_and_are_seeded(tmp_path):
    from transformers import AutoModelForImageTextToText

    with pytest.raises(ValueError, match="tiny"):
        install_vlm("full", hf_home=tmp_path, with_weights=True)
    first = install_vlm("tiny", hf_home=tmp_path / "a", with_weights=True)
    second = install_vlm("tiny", hf_home=tmp_path / "b", with_weights=True)
    assert first.name == second.name and (first / "model.safetensors").is_file()
    assert first.name != install_vlm("tiny", hf_home=tmp_path / "c").name
    model = AutoModelForImageTextToText.from_pretrained(TINY_VLM_ID, cache_dir=tmp_path / "a" / "hub")
    assert model.config.text_config.hidden_size == 128


def test_auto_classes_resolve_the_tiny_id_offline_through_cache_dir(tmp_path):
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    install_vlm("tiny", hf_home=tmp_path)
    cache_dir = tmp_path / "hub"
    config = AutoConfig.from_pretrained(TINY_VLM_ID, cache_dir=cache_dir)
    processor = AutoProcessor.from_pretrained(TINY_VLM_ID, cache_dir=cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(TINY_VLM_ID, cache_dir=cache_dir)
    assert type(config).__name__ == "SmolVLMConfig" and config.text_config.head_dim == 32
    assert type(processor).__name__ == "SmolVLMProcessor" and processor.image_seq_len == 16
    assert processor.image_processor.size["longest_edge"] == 64
    assert processor.image_processor.do_image_splitting is False
    assert processor.tokenizer.fake_image_token_id == tokenizer.fake_image_token_id
    assert tokenizer.global_image_token_id == build_tokenizer().global_image_token_id


def test_a_fresh_process_with_hf_home_set_resolves_the_tiny_id(tmp_path):
    install_vlm("tiny", hf_home=tmp_path)
    script = (
        "from transformers import AutoConfig, AutoProcessor, AutoTokenizer\n"
        f"c = AutoConfig.from_pretrained({TINY_VLM_ID!r})\n"
        f"p = AutoProcessor.from_pretrained({TINY_VLM_ID!r})\n"
        f"t = AutoTokenizer.from_pretrained({TINY_VLM_ID!r})\n"
        "print(c.text_config.hidden_size, p.image_seq_len, t.image_token_id)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-3:] == ["128", "16", str(build_tokenizer().image_token_id)]


def test_full_size_config_and_processor_resolve_with_text_hidden_960(tmp_path):
    from transformers import AutoConfig, AutoProcessor

    install_vlm("full", hf_home=tmp_path)
    config = AutoConfig.from_pretrained(FULL_VLM_ID, cache_dir=tmp_path / "hub")
    processor = AutoProcessor.from_pretrained(FULL_VLM_ID, cache_dir=tmp_path / "hub")
    assert config.text_config.hidden_size == 960 and config.text_config.head_dim == 64
    assert processor.image_seq_len == 64 and processor.image_processor.size["longest_edge"] == 512
    assert full_size_smolvla_kwargs() == {"vlm_model_name": FULL_VLM_ID, "load_vlm_weights": False}


def test_tiny_smolvla_selects_a_four_dim_action_from_a_preprocessed_batch(hf_home):
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    install_vlm("tiny")
    config = _tiny_policy_config()
    policy = SmolVLAPolicy(config).eval()
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=_identity_stats())
    batch = preprocessor(_observation())
    with torch.no_grad():
        images, _ = policy.prepare_images(batch)
        tokens = policy.model.vlm_with_expert.embed_image(images[0])
        action = policy.select_action(batch)
    assert tokens.shape[:2] == (1, 16)  # image tokens per camera
    assert action.shape == (1, 4) and torch.isfinite(action).all()
    assert postprocessor(action).shape == (1, 4)


def test_a_saved_tiny_policy_loads_again_after_its_directory_moves(hf_home, tmp_path):
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    install_vlm("tiny")
    config = _tiny_policy_config()
    policy = SmolVLAPolicy(config).eval()
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=_identity_stats())
    saved = tmp_path / "checkpoint"
    policy.save_pretrained(saved)
    preprocessor.save_pretrained(saved)
    postprocessor.save_pretrained(saved)
    assert json.loads((saved / "config.json").read_text())["vlm_model_name"] == TINY_VLM_ID
    moved = tmp_path / "elsewhere" / "checkpoint"
    shutil.move(saved, moved)

    loaded = SmolVLAPolicy.from_pretrained(moved).eval()
    loaded_pre, _ = make_pre_post_processors(loaded.config, pretrained_path=str(moved))
    torch.manual_seed(0)
    with torch.no_grad():
        expected = policy.select_action(preprocessor(_observation()))
    torch.manual_seed(0)
    with torch.no_grad():
        actual = loaded.select_action(loaded_pre(_observation()))
    torch.testing.assert_close(actual, expected)


def test_tiny_smolvla_expert_width_gives_an_integer_head_layout(hf_home):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    install_vlm("tiny")
    vlm_with_expert = SmolVLAPolicy(_tiny_policy_config()).model.vlm_with_expert
    attention = vlm_with_expert.lm_expert.layers[0].self_attn
    assert vlm_with_expert.expert_hidden_size == 96
    assert attention.q_proj.weight.shape == (4 * 32, 96) and attention.o_proj.weight.shape == (96, 4 * 32)


@pytest.mark.slow
def test_full_size_smolvla_builds_with_about_450m_parameters(hf_home):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    install_vlm("full")
    config = SmolVLAConfig(
        **full_size_smolvla_kwargs(),
        device="cpu",
        input_features={
            "observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 512, 512)),
            "observation.state": PolicyFeature(FeatureType.STATE, (4,)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))},
    )
    policy = SmolVLAPolicy(config)
    n_params = sum(p.numel() for p in policy.parameters())
    assert 440e6 < n_params < 460e6
    assert policy.model.vlm_with_expert.config.text_config.hidden_size == 960
