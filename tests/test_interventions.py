"""Memory interventions: zero, reset, shuffle, swap, in dataset replay and live rollouts, and the CLI."""

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from memlens.capture.dataset import replay_batch
from memlens.capture.hooks import CaptureHooks
from memlens.interventions import MODES, REGISTRY, MemoryOverride, intervene_env, intervene_replay, make
from memlens.interventions.pairing import derangement, swap_pairs
from memlens.cli import app
from memlens.errors import UserError
from memlens.runtime import load_policy, open_dataset

TRAINED = Path(__file__).resolve().parents[1] / "artifacts/exp-cue/cue_recall/memory/checkpoints/last/pretrained_model"


@pytest.fixture(scope="module")
def loaded(memory_checkpoint):
    return load_policy(memory_checkpoint)


def test_zeroing_memory_changes_actions_from_the_intervention_update_on_and_not_before(loaded, cue_dataset):
    n = loaded.config.n_action_steps
    res = intervene_replay(loaded, cue_dataset, mode="zero", from_update=1, episodes=[0, 1, 2], batch_episodes=3)
    assert [r["episode"] for r in res.episodes] == [0, 1, 2]
    for row in res.episodes:
        l2 = np.asarray(row["l2"])
        assert row["intervention_frame"] == n and row["applied_at_updates"] == [1]
        assert (l2[:n] == 0).all()  # same frames, same noise: identical until the memory is overridden
        assert l2[n:].max() > 1e-3
    assert res.summary["max_l2_before"] == 0 and res.summary["mean_l2_after"] > 0
    assert res.figure is not None and json.dumps(res.to_dict())


def test_swapping_memory_between_copies_of_one_episode_changes_nothing(loaded, cue_dataset):
    res = intervene_replay(loaded, cue_dataset, mode="swap", from_update=1, episodes=[2, 2])
    assert [r["donor"] for r in res.episodes] == [2, 2]
    assert res.summary["mean_l2_after"] == 0 and "n_swapped" not in res.summary  # same cue: no flip to count


def test_a_swapped_episode_reads_its_partners_memory_from_the_intervention_on(loaded, cue_dataset):
    policy, ds = loaded.policy, open_dataset(cue_dataset)
    torch.manual_seed(0)
    with CaptureHooks(policy) as reference:
        replay_batch(loaded, ds, [0, 1], record=False)
    torch.manual_seed(0)
    with CaptureHooks(policy) as swapped, MemoryOverride(policy, "swap", from_update=2, donors=[1, 0]) as override:
        replay_batch(loaded, ds, [0, 1], record=False)
    assert override.applied == [2]
    ref, new = reference.chunks, swapped.chunks
    assert torch.equal(new[1]["memory/read"], ref[1]["memory/read"])  # before: untouched
    assert torch.equal(new[2]["memory/read"][0], ref[1]["memory/write"][1])  # at update 2: the partner's memory
    assert torch.equal(new[2]["memory/read"][1], ref[1]["memory/write"][0])
    assert not torch.allclose(new[2]["memory/write"], ref[2]["memory/write"])  # and it writes on from there
    assert "_get_action_chunk" not in policy.__dict__


def test_every_mode_transforms_the_memory_as_documented(loaded):
    policy = loaded.policy
    mem = torch.randn(3, policy.config.num_mem_tokens, policy.model.hidden_size)
    expected = {
        "zero": torch.zeros_like(mem),
        "reset": policy.model.initial_memory(3),
        "shuffle": mem[[2, 0, 1]],
        "swap": mem[[2, 0, 1]],
        "shuffle_tokens": mem[:, [3, 2, 1, 0]],
    }
    donors = torch.tensor([2, 0, 1])
    for mode in MODES:
        intervention = REGISTRY[mode](order=(3, 2, 1, 0)) if mode == "shuffle_tokens" else make(mode)
        assert intervention.name == mode and dataclasses.is_dataclass(intervention)
        with pytest.raises(dataclasses.FrozenInstanceError):
            intervention.extra = 1
        out = intervention.memory(mem, initial=policy.model.initial_memory, donors=donors)
        assert torch.equal(out, expected[mode].to(mem)), mode
    rng = np.random.default_rng(0)
    assert all((derangement(n, rng) != np.arange(n)).all() for n in range(2, 9))
    labels = [0, 0, 0, 1, 1, 2]
    pairs = swap_pairs(labels)
    assert len(pairs) == 3 and all(labels[a] != labels[b] for a, b in pairs)
    assert sorted(i for p in pairs for i in p) == list(range(6))


def test_the_override_is_removed_when_the_replay_raises(loaded):
    policy = loaded.policy
    with pytest.raises(RuntimeError, match="boom"):
        with MemoryOverride(policy, "zero") as override:
            assert policy.memory.before_read == [override._before_read]
            raise RuntimeError("boom")
    assert policy.memory.before_read == []
    assert "_get_action_chunk" not in policy.__dict__  # an override wraps no method


def test_a_registered_intervention_is_applied_like_the_built_in_ones():
    from policy_helpers import make_policy, obs_batch

    from memlens.interventions import Intervention, register

    @register
    @dataclasses.dataclass(frozen=True)
    class Scale(Intervention):
        name: ClassVar[str] = "test_scale"
        factor: float = 2.0

        def memory(self, mem, *, initial, donors):
            return mem * self.factor

    try:
        policy = make_policy(num_mem_tokens=4)
        with CaptureHooks(policy) as hooks, MemoryOverride(policy, Scale(3.0), from_update=0) as override:
            policy.predict_action_chunk(obs_batch())
        assert override.applied == [0] and override.mode == "test_scale"
        read = hooks.chunks[0]["memory/read"]
        assert torch.allclose(read, 3.0 * policy.model.initial_memory(read.shape[0]).detach().float())
        assert make("test_scale") == Scale()
    finally:
        REGISTRY.pop("test_scale")


def test_bad_intervention_input_is_explained(loaded, baseline_checkpoint, cue_dataset):
    with pytest.raises(UserError, match="unknown intervention mode 'erase'; expected one of zero, reset, shuffle"):
        MemoryOverride(loaded.policy, "erase")
    with pytest.raises(UserError, match="must be >= 0"):
        MemoryOverride(loaded.policy, "zero", from_update=-1)
    with pytest.raises(UserError, match="num_mem_tokens=0.*has no memory"):
        intervene_replay(str(baseline_checkpoint), cue_dataset, mode="zero")
    with pytest.raises(UserError, match="at least 2 episodes per batch"):
        intervene_replay(loaded, cue_dataset, mode="shuffle", episodes=[0])
    with pytest.raises(UserError, match="out of range"):
        intervene_replay(loaded, cue_dataset, mode="zero", episodes=[99])


def test_live_swap_reports_success_and_which_target_each_episode_reached(loaded):
    res = intervene_env(loaded, "memlens_cue_recall", mode="swap", from_update=1, n_episodes=4, variant="short",
                        batch_size=4)
    assert len(res.episodes) == 4 and res.source == "env"
    donors = {r["episode"]: r["donor"] for r in res.episodes}
    assert all(donors[donors[e]] == e and donors[e] != e for e in donors)  # pairs
    s = res.summary
    assert 0 <= s["success_reference"] <= 1 and 0 <= s["success_intervened"] <= 1
    if "n_swapped" in s:
        for run in ("reference", "intervened"):
            assert sum(s[f"{k}_target_rate_{run}"] for k in ("own", "donor", "other", "none")) == pytest.approx(1)
    assert all(r["reached_reference"] in (None, 0, 1, 2, 3) for r in res.episodes)


def test_cli_intervene_writes_json_and_explains_bad_input(memory_checkpoint, cue_dataset, tmp_path):
    runner = CliRunner()
    out = tmp_path / "zero.json"
    result = runner.invoke(app, ["intervene", str(memory_checkpoint), str(cue_dataset), "--mode", "zero",
                                 "--from-update", "1", "--n-episodes", "2", "--output", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["mode"] == "zero" and len(saved["episodes"]) == 2 and "mean_l2_after" in saved["summary"]
    assert "mean_l2_after" in result.output
    for args, message in [([], "pass a DATASET to replay, or --env"),
                          ([str(cue_dataset), "--mode", "erase"], "unknown intervention mode")]:
        if "--mode" not in args:
            args = [*args, "--mode", "zero"]
        result = runner.invoke(app, ["intervene", str(memory_checkpoint), *args, "--output", str(tmp_path / "x.json")])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.skipif(not TRAINED.is_dir(), reason="the trained cue-recall checkpoint is built by memlens experiment")
def test_swapping_memory_makes_the_trained_policy_reach_the_donors_target():
    res = intervene_env(str(TRAINED), "memlens_cue_recall", mode="swap", from_update=2, n_episodes=16,
                        variant="medium", batch_size=8)
    assert res.summary["own_target_rate_reference"] >= 0.9
    assert res.summary["donor_target_rate"] >= 0.8


@pytest.mark.parametrize("override_outside", [True, False])
def test_an_override_and_capture_hooks_nest_in_either_order_and_both_act(override_outside):
    from policy_helpers import make_policy, obs_batch

    from memlens.capture.hooks import CaptureHooks

    policy = make_policy(num_mem_tokens=4)
    outer, inner = ((MemoryOverride(policy, "zero"), CaptureHooks(policy)) if override_outside
                    else (CaptureHooks(policy), MemoryOverride(policy, "zero")))
    with outer:
        with inner:
            policy.predict_action_chunk(obs_batch())
        # the outer one is still in place ...
        assert ("_get_action_chunk" in policy.__dict__) == (not override_outside)
        assert len(policy.memory.before_read) == (1 if override_outside else 0)
        policy.predict_action_chunk(obs_batch(), frame=10)
    assert "_get_action_chunk" not in policy.__dict__ and policy.memory.before_read == []  # ... nothing after both
    hooks = inner if override_outside else outer
    override = outer if override_outside else inner
    assert len(hooks.chunks) == (1 if override_outside else 2)
    assert override.applied == [0]  # the override read zeros in the first computation, in both orders
    assert torch.equal(hooks.chunks[0]["memory/read"], torch.zeros_like(hooks.chunks[0]["memory/read"]))


def test_patched_restores_what_it_found_also_after_an_error():
    from memlens.runtime.patching import patched

    class Thing:
        def act(self):
            return "class"

    thing = Thing()
    with patched(thing, "act", lambda: "a") as before_a:
        assert before_a() == "class"
        with pytest.raises(RuntimeError):
            with patched(thing, "act", lambda: "b") as before_b:
                assert before_b() == "a" and thing.act() == "b"
                raise RuntimeError
        assert thing.act() == "a"
    assert thing.act() == "class" and "act" not in vars(thing)
