"""Capture hooks on tiny policies: faithful attention, correct layout, nothing left behind."""

import pytest
import torch
from lerobot.policies.smolvla.smolvlm_with_expert import SmolVLMWithExpertModel
from policy_helpers import STRIDE, make_policy, noise_for, obs_batch

from memlens.capture.hooks import CaptureHooks, SiteNeverFiredError, attention_probs


def _no_hooks_left(policy):
    backbone = policy.model.vlm_with_expert
    text = backbone.get_vlm_model().text_model
    assert "eager_attention_forward" not in backbone.__dict__
    assert "_get_action_chunk" not in policy.__dict__
    assert all(not layer.input_layernorm._forward_pre_hooks for layer in text.layers)
    assert not text.norm._forward_pre_hooks and not text.norm._forward_hooks


def test_recomputed_attention_probabilities_reproduce_lerobots_output():
    policy = make_policy(num_mem_tokens=2)
    backbone = policy.model.vlm_with_expert
    seen = []
    original = backbone.eager_attention_forward

    def spy(mask, bs, hd, q, k, v):
        out = original(mask, bs, hd, q, k, v)
        probs = attention_probs(backbone, mask, bs, hd, q, k)
        nh, nkv = backbone.num_attention_heads, backbone.num_key_value_heads
        vv = v[:, :, :, None, :].expand(bs, v.shape[1], nkv, nh // nkv, hd).reshape(bs, v.shape[1], nh, hd)
        again = torch.matmul(probs, vv.permute(0, 2, 1, 3)).permute(0, 2, 1, 3).reshape(bs, -1, nh * hd)
        seen.append(torch.allclose(again, out, atol=1e-5))
        return out

    backbone.eager_attention_forward = spy
    policy.predict_action_chunk(obs_batch())
    assert seen and all(seen)


@pytest.mark.parametrize("at_end, from_cache", [(False, False), (True, False), (False, True)])
def test_attention_summaries_are_distributions_over_the_prefix_groups(at_end, from_cache):
    policy = make_policy(num_mem_tokens=3, mem_at_end=at_end, read_mem_from_cache=from_cache)
    reference = make_policy(num_mem_tokens=3, mem_at_end=at_end, read_mem_from_cache=from_cache)
    reference.load_state_dict(policy.state_dict())
    obs = obs_batch()
    with CaptureHooks(policy, attention=True, hidden=True) as hooks:
        chunks = [policy.predict_action_chunk(dict(obs), noise=noise_for(policy, seed=c), frame=c * STRIDE)
                  for c in range(2)]
    expected = [reference.predict_action_chunk(dict(obs), noise=noise_for(policy, seed=c), frame=c * STRIDE)
                for c in range(2)]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(chunks, expected))  # capture changes nothing
    first, second = hooks.chunks
    groups = first["groups"]
    assert groups[:3] == ["camera:top", "language", "memory"] and groups[-1] == "actions"
    n_layers = policy.model.vlm_with_expert.num_vlm_layers
    m2g = second["attention/mem_to_groups"]
    assert m2g.shape == (2, n_layers, 4, 3, len(groups))
    assert torch.allclose(m2g.sum(-1), torch.ones(m2g.shape[:-1]), atol=1e-5)
    a2g = second["attention/action_to_groups"]
    assert a2g.shape == (2, n_layers, 4, len(groups))
    assert torch.allclose(a2g.sum(-1), torch.ones(a2g.shape[:-1]), atol=1e-5)
    assert (a2g[..., groups.index("memory")] > 0).all()  # actions read memory
    if not at_end:  # encoder-style memory tokens cannot see the state token
        assert m2g[..., groups.index("state")].abs().max() < 1e-6
    if from_cache:
        assert first["attention/mem_to_groups"][..., groups.index("history")].abs().max() == 0
        assert second["attention/mem_to_groups"][..., groups.index("history")].min() > 0
    assert second["hidden/memory"].shape == (2, n_layers, 3, policy.model.hidden_size)
    assert torch.allclose(second["memory/read"], first["memory/write"])
    _no_hooks_left(policy)


def test_hooks_are_removed_when_the_forward_pass_raises():
    policy = make_policy(num_mem_tokens=2)
    with pytest.raises(RuntimeError, match="boom"):
        with CaptureHooks(policy, attention=True, hidden=True):
            policy.predict_action_chunk(obs_batch())
            raise RuntimeError("boom")
    _no_hooks_left(policy)
    bad = obs_batch()
    bad["observation.state"] = torch.zeros(2, 99, 99)  # breaks inside the forward pass
    with pytest.raises(Exception):
        with CaptureHooks(policy, attention=True, hidden=True):
            policy.predict_action_chunk(bad)
    _no_hooks_left(policy)


def test_a_declared_site_that_never_fires_is_an_error():
    policy = make_policy(num_mem_tokens=2)
    backbone = policy.model.vlm_with_expert
    with pytest.raises(SiteNeverFiredError, match="attention/mem_to_groups"):
        with CaptureHooks(policy, attention=True):
            # Simulate an upstream change: attention no longer goes through the hooked method.
            backbone.get_attention_interface = lambda: (lambda *a: SmolVLMWithExpertModel.eager_attention_forward(backbone, *a))
            policy.predict_action_chunk(obs_batch())
    del backbone.get_attention_interface
    _no_hooks_left(policy)


@pytest.mark.parametrize("num_mem_tokens", [0, 2])
def test_observation_embedding_is_the_image_tokens_entering_the_vlm_and_holds_no_memory(num_mem_tokens):
    policy = make_policy(num_mem_tokens=num_mem_tokens)
    text = policy.model.vlm_with_expert.get_vlm_model().text_model
    inputs = []
    spy = text.layers[0].input_layernorm.register_forward_pre_hook(lambda mod, args: inputs.append(args[0].clone()))
    obs = obs_batch()
    images, _ = policy.prepare_images(obs)
    n_image_tokens = policy.model.vlm_with_expert.embed_image(images[0]).shape[1]
    with CaptureHooks(policy) as hooks:
        for c in range(2):  # the second segment reads the memory the first one wrote
            policy.predict_action_chunk(dict(obs), noise=noise_for(policy), frame=c * STRIDE)
    spy.remove()
    first, second = (c["hidden/observation"] for c in hooks.chunks)
    assert torch.allclose(first, inputs[0][:, :n_image_tokens].float().mean(dim=1), atol=1e-6)
    assert not torch.allclose(first, inputs[0].float().mean(dim=1))  # the image tokens, not the whole prefix
    assert torch.equal(first, second)  # same frame, different memory: the embedding has no memory in it
    _no_hooks_left(policy)
