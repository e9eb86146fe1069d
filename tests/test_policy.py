"""The `smolvla_rmt` policy on tiny random models: equivalence, memory semantics, gradients, I/O."""

import shutil

import pytest
import torch
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from lerobot.utils.constants import OBS_STATE
from policy_helpers import config_kwargs, make_policy, noise_for, obs_batch, train_batch

from memlens.policy import SmolVLARMTConfig, SmolVLARMTPolicy


def _actions_over_chunks(policy, n_chunks, batch_size=2):
    """Run `select_action` for n_chunks chunks with fixed observations and noise; return memory per chunk."""
    obs = obs_batch(batch_size)
    mems = []
    for c in range(n_chunks):
        for _ in range(policy.config.n_action_steps):
            policy.select_action(dict(obs), noise=noise_for(policy, batch_size, seed=c))
        mems.append(policy.memory.state.clone())
    return mems


def test_memory_off_is_exactly_stock_smolvla():
    kw = config_kwargs()
    torch.manual_seed(0)
    stock = SmolVLAPolicy(SmolVLAConfig(**kw))
    rmt = make_policy(seed=0, num_mem_tokens=0)
    sd_stock, sd_rmt = stock.state_dict(), rmt.state_dict()
    assert sd_stock.keys() == sd_rmt.keys()
    assert all(torch.equal(sd_stock[k], sd_rmt[k]) for k in sd_stock)

    batch = train_batch(rmt)
    noise = noise_for(rmt)
    time = torch.tensor([0.3, 0.7])
    stock.train(), rmt.train()
    loss_stock, _ = stock.forward(dict(batch), noise=noise, time=time)
    loss_rmt, _ = rmt.forward(dict(batch), noise=noise, time=time)
    assert torch.equal(loss_stock, loss_rmt)

    obs = obs_batch()
    a_stock = stock.select_action(dict(obs), noise=noise)
    a_rmt = rmt.select_action(dict(obs), noise=noise)
    assert torch.equal(a_stock, a_rmt)


def test_mem_tokens_have_the_guides_shape_and_parameter_cost():
    base = make_policy(num_mem_tokens=0)
    hidden = base.model.hidden_size
    for m, at_end in [(2, False), (4, False), (4, True), (16, False)]:
        p = make_policy(num_mem_tokens=m, mem_at_end=at_end)
        assert p.model.mem_tokens.shape == (m, 1, hidden)
        assert p.model.mem_tokens.requires_grad
        extra = sum(x.numel() for x in p.parameters()) - sum(x.numel() for x in base.parameters())
        assert extra == m * hidden  # mem_at_end reuses the same memory values: no extra parameters


def test_memory_changes_across_chunks_and_reset_restores_the_initial_state():
    policy = make_policy(num_mem_tokens=4)
    assert policy.memory.state is None
    mems = _actions_over_chunks(policy, 3)
    assert mems[0].shape == (4, 2, policy.model.hidden_size)
    assert not torch.allclose(mems[0], mems[1])
    assert not torch.allclose(mems[1], mems[2])
    policy.reset()
    assert policy.memory.state is None
    initial = policy.memory.read(2)
    assert torch.equal(initial, policy.model.mem_tokens.transpose(0, 1).expand(2, -1, -1))
    again = _actions_over_chunks(policy, 1)
    assert torch.allclose(again[0], mems[0])


def test_predicting_twice_on_one_frame_gives_the_same_actions_and_the_next_segment_reads_new_memory():
    policy = make_policy(num_mem_tokens=4)
    obs, noise = obs_batch(), noise_for(policy)
    first = policy.predict_action_chunk(dict(obs), noise=noise)
    again = policy.predict_action_chunk(dict(obs), noise=noise)  # same frame: the write is still pending
    assert torch.equal(first, again)
    assert policy.memory.segments == 0 and policy.memory.state is None
    stride = policy.config.mem_segment_stride
    second = policy.predict_action_chunk(dict(obs), noise=noise, frame=stride)  # next segment: memory committed
    assert policy.memory.segments == 1
    assert not torch.allclose(first, second)
    policy.reset()
    assert torch.allclose(policy.predict_action_chunk(dict(obs), noise=noise), first)


def test_a_computation_between_boundaries_reads_the_latest_memory_and_writes_none():
    policy = make_policy(num_mem_tokens=4, n_action_steps=5, mem_segment_stride=10)
    obs, noise = obs_batch(), noise_for(policy)
    policy.predict_action_chunk(dict(obs), noise=noise, frame=0)
    policy.predict_action_chunk(dict(obs), noise=noise, frame=5)  # commits frame 0's write, writes nothing
    assert policy.memory.segments == 1 and policy.memory.next_boundary == 10
    committed = policy.memory.state.clone()
    policy.memory.advance(20)
    assert torch.equal(policy.memory.state, committed)  # frame 5's prefix pass wrote nothing


def test_a_chunk_of_an_episode_that_was_reset_meanwhile_commits_nothing():
    policy = make_policy(num_mem_tokens=4)
    obs = obs_batch()
    ticket = policy.memory.begin(0, batch_size=2)  # a chunk starts computing ...
    policy.reset()  # ... the episode ends before it finishes
    assert not policy.memory.finish(ticket, torch.ones_like(ticket.read))
    assert policy.memory.last_write is None and policy.memory.needs_write(0)
    policy.predict_action_chunk(dict(obs))
    policy.memory.advance(1)
    assert policy.memory.segments == 1 and not torch.equal(policy.memory.read(2), torch.ones_like(ticket.read))


def test_a_boundary_that_passes_unwritten_is_an_error_that_says_what_to_do():
    from memlens.policy.memory import MemoryCadenceError

    policy = make_policy(num_mem_tokens=4)
    policy.predict_action_chunk(obs_batch(), frame=0)
    with pytest.raises(MemoryCadenceError, match="boundary at frame 10.*mem_segment_stride"):
        policy.predict_action_chunk(obs_batch(), frame=25)


def test_write_memory_gives_the_write_of_a_chunk_computation_on_the_same_observation():
    policy = make_policy(num_mem_tokens=4, mem_at_end=True)
    obs = obs_batch()
    policy.predict_action_chunk(dict(obs))
    from_chunk = policy.memory.last_write.clone()
    policy.reset()
    assert policy.write_memory(dict(obs), frame=0)
    assert not policy.write_memory(dict(obs), frame=0)  # already written (pending)
    assert torch.allclose(policy.memory.last_write, from_chunk, atol=1e-6)


@pytest.mark.parametrize("bptt, reaches", [(3, True), (2, False), (1, False)])
def test_gradients_reach_mem_tokens_through_k_segments_and_stop_beyond_the_bptt_depth(bptt, reaches):
    policy = make_policy(num_mem_tokens=4, n_mem_segments=3, mem_bptt_segments=bptt)
    policy.train()
    batch = train_batch(policy)
    # Only the last segment's actions count in the loss: its gradient reaches the initial memory
    # (mem_tokens, read by segment 0) only through the memory chain of all three segments.
    stride, chunk = policy.config.mem_segment_stride, policy.config.chunk_size
    batch["action_is_pad"][:, : 2 * stride] = True
    batch["action_is_pad"][:, 2 * stride : 2 * stride + chunk] = False
    loss, _ = policy.forward(batch)
    loss.backward()
    grad = policy.model.mem_tokens.grad
    got = grad is not None and grad.abs().sum().item() > 0
    assert got == reaches
    expert_grad = policy.model.action_out_proj.weight.grad
    assert expert_grad is not None and expert_grad.abs().sum() > 0


def test_padded_segments_neither_update_memory_nor_count_in_the_loss():
    policy = make_policy(num_mem_tokens=4, n_mem_segments=3)
    batch = train_batch(policy)
    batch[f"{OBS_STATE}_is_pad"][0, :2] = True  # episode 0 starts at the last segment
    seen = []
    original = policy.model.forward_segment

    def spy(*args, **kwargs):
        seen.append(args[6].detach().clone())  # the memory each segment reads
        return original(*args, **kwargs)

    policy.model.forward_segment = spy
    loss, info = policy.forward(batch)
    initial = policy.model.initial_memory(2)
    assert torch.equal(seen[2][0], initial[0])  # row 0: two padded segments left the memory untouched
    assert not torch.allclose(seen[2][1], initial[1])  # row 1 went through two real segments
    assert info["n_valid_segments"] == 4  # 3 for row 1, 1 for row 0

    # Changing the padded segments' actions changes nothing.
    batch2 = {k: v.clone() for k, v in batch.items()}
    stride = policy.config.mem_segment_stride
    batch2["action"][0, : 2 * stride] += 100.0
    policy.model.forward_segment = original
    torch.manual_seed(1)
    loss_a, _ = policy.forward({k: v.clone() for k, v in batch.items()})
    torch.manual_seed(1)
    loss_b, _ = policy.forward(batch2)
    assert torch.allclose(loss_a, loss_b)


def test_encoder_style_memory_cannot_see_the_state_but_decoder_style_memory_does():
    for at_end, sees_state in [(False, False), (True, True)]:
        policy = make_policy(num_mem_tokens=2, mem_at_end=at_end)
        obs = obs_batch()
        policy.predict_action_chunk(dict(obs))
        mem_a = policy.memory.last_write.clone()
        policy.reset()
        obs[OBS_STATE] = obs[OBS_STATE] + 1.0
        policy.predict_action_chunk(dict(obs))
        assert (not torch.allclose(mem_a, policy.memory.last_write)) == sees_state


def test_read_mem_from_cache_reads_the_previous_chunk_only_from_the_second_chunk_on():
    plain = make_policy(num_mem_tokens=4)
    cached = make_policy(num_mem_tokens=4, read_mem_from_cache=True)
    cached.load_state_dict(plain.state_dict())
    obs = obs_batch()
    outs = []
    for policy in (plain, cached):
        stride = policy.config.mem_segment_stride
        chunks = [policy.predict_action_chunk(dict(obs), noise=noise_for(policy, seed=c), frame=c * stride)
                  for c in range(2)]
        outs.append((chunks, policy.memory.last_write.clone()))
    assert torch.allclose(outs[0][0][0], outs[1][0][0], atol=1e-6)  # no history for the first chunk
    assert not torch.allclose(outs[0][1], outs[1][1])  # second write saw the previous prefix

    cached.train()
    cached.config.n_mem_segments = 1
    loss, _ = cached.forward(train_batch(cached))
    loss.backward()
    assert cached.model.mem_tokens.grad is not None


def test_read_mem_from_cache_trains_over_segments():
    policy = make_policy(num_mem_tokens=2, read_mem_from_cache=True, n_mem_segments=3, mem_bptt_segments=2)
    policy.train()
    batch = train_batch(policy)
    batch[f"{OBS_STATE}_is_pad"][0, 0] = True
    loss, _ = policy.forward(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert policy.model.mem_tokens.grad.abs().sum() > 0


@pytest.mark.parametrize("init", ["random", "zeros", "language"])
def test_mem_init_modes(init):
    policy = make_policy(num_mem_tokens=8, mem_init=init)
    mem = policy.model.mem_tokens.detach()
    if init == "zeros":
        assert torch.count_nonzero(mem) == 0
    elif init == "random":
        assert 0.01 < mem.std().item() < 0.03
    else:
        table = policy.model.vlm_with_expert.get_vlm_model().text_model.get_input_embeddings().weight
        hidden = policy.model.hidden_size
        row = mem[0, 0] / hidden**0.5
        assert any(torch.allclose(row, table[i].float(), atol=1e-6) for i in range(table.shape[0]))


def test_save_load_round_trip_is_exact_and_a_moved_checkpoint_loads(tmp_path):
    policy = make_policy(num_mem_tokens=4, n_mem_segments=2, mem_at_end=True)
    policy.save_pretrained(tmp_path / "ckpt")
    moved = tmp_path / "elsewhere" / "ckpt"
    shutil.move(tmp_path / "ckpt", moved)
    loaded = SmolVLARMTPolicy.from_pretrained(moved)
    assert loaded.config.num_mem_tokens == 4 and loaded.config.mem_at_end and loaded.config.n_mem_segments == 2
    sd_a, sd_b = policy.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    policy.eval()
    obs, noise = obs_batch(), noise_for(policy)
    for _ in range(2):
        assert torch.equal(policy.predict_action_chunk(dict(obs), noise=noise), loaded.predict_action_chunk(dict(obs), noise=noise))


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_mem_tokens", -1),
        ("n_mem_segments", 0),
        ("mem_segment_stride", 0),
        ("mem_bptt_segments", 3),
        ("mem_init", "gaussian"),
    ],
)
def test_invalid_memory_settings_name_the_field(field, value):
    kw = {"n_mem_segments": 2} if field == "mem_bptt_segments" else {}
    with pytest.raises(ValueError, match=field):
        SmolVLARMTConfig(**config_kwargs(**kw, **{field: value}))


def test_delta_indices_give_each_segment_its_own_chunk():
    cfg = SmolVLARMTConfig(**config_kwargs(n_mem_segments=3, mem_segment_stride=5))
    assert cfg.observation_delta_indices == [-10, -5, 0]
    assert cfg.action_delta_indices == list(range(-10, cfg.chunk_size))
    stock = SmolVLARMTConfig(**config_kwargs())
    assert stock.observation_delta_indices == [0] and stock.action_delta_indices == list(range(stock.chunk_size))


def test_a_stride_select_action_cannot_honour_is_refused_naming_both_fields():
    with pytest.raises(ValueError, match=r"`mem_segment_stride`=15 is not a multiple of `n_action_steps`=10"):
        SmolVLARMTConfig(**config_kwargs(num_mem_tokens=4, mem_segment_stride=15))
    SmolVLARMTConfig(**config_kwargs(num_mem_tokens=4, mem_segment_stride=20))  # every other chunk writes
    SmolVLARMTConfig(**config_kwargs(num_mem_tokens=0, mem_segment_stride=15))  # no memory, no cadence


def test_memlens_train_reports_an_impossible_cadence_as_one_paragraph():
    from memlens.errors import UserError
    from memlens.workflows.train import prepare_args

    with pytest.raises(UserError, match="not a multiple of `n_action_steps`"):
        prepare_args(["--policy.type=smolvla_rmt", "--policy.num_mem_tokens=4", "--policy.n_action_steps=10",
                      "--policy.mem_segment_stride=15"])


def test_a_state_wider_than_max_state_dim_is_refused_before_torch_sees_it():
    from lerobot.configs.types import FeatureType, PolicyFeature

    from memlens.errors import UserError

    wide = {**config_kwargs()["input_features"], OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(25,))}
    with pytest.raises(UserError, match=r"`observation.state` has 25 values but the policy's `max_state_dim` is 8"):
        SmolVLARMTPolicy(SmolVLARMTConfig(**config_kwargs(input_features=wide)))
    SmolVLARMTPolicy(SmolVLARMTConfig(**config_kwargs(input_features=wide, max_state_dim=32)))  # fits now


def test_an_explicit_commit_makes_the_pending_write_the_memory_once():
    policy = make_policy(num_mem_tokens=4)
    policy.predict_action_chunk(obs_batch())
    written = policy.memory.last_write
    assert policy.memory.commit() and not policy.memory.commit()
    assert torch.equal(policy.memory.read(2), written) and policy.memory.segments == 1


def test_a_lerobot_that_no_longer_passes_the_prefix_once_fails_loudly(monkeypatch):
    """The model composes lerobot's own sample_actions; a lerobot whose method skips (or repeats) the prefix
    pass would silently drop the memory, so it raises instead."""
    from lerobot.policies.smolvla.modeling_smolvla import VLAFlowMatching

    from memlens.policy.backbone import CompositionDriftError

    policy = make_policy(num_mem_tokens=4)
    policy.predict_action_chunk(obs_batch())  # today's lerobot: fine

    def changed(self, images, img_masks, lang_tokens, lang_masks, state, noise=None, **kwargs):
        return noise  # a future sample_actions that no longer embeds a prefix this way

    monkeypatch.setattr(VLAFlowMatching, "sample_actions", changed)
    policy.reset()
    with pytest.raises(CompositionDriftError, match=r"made 0 embed_prefix call\(s\) and 0 prefix call\(s\)"):
        policy.predict_action_chunk(obs_batch(), noise=noise_for(policy, 2, seed=0))
