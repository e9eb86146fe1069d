"""lerobot-train, lerobot-eval and fine-tuning with `smolvla_rmt`, end to end on the tiny model."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from memlens.errors import UserError
from memlens.workflows.train import prepare_args

from conftest import BIN, run_ok as _run


def test_stock_lerobot_train_with_two_segments_writes_a_checkpoint_that_reloads_and_acts(memory_checkpoint, cue_dataset, tmp_path):
    from memlens.runtime import load_policy, open_dataset, replay_episode

    config = json.loads((memory_checkpoint / "config.json").read_text())
    assert config["type"] == "smolvla_rmt" and config["n_mem_segments"] == 2 and config["num_mem_tokens"] == 4
    moved = tmp_path / "moved" / "ckpt"
    shutil.copytree(memory_checkpoint, moved)
    loaded = load_policy(moved)
    dataset = open_dataset(cue_dataset)
    memories = []
    actions = replay_episode(loaded, dataset, 0, on_step=lambda t, f, a: memories.append(loaded.policy.memory.state))
    n_frames = int(dataset.meta.episodes[0]["length"])
    assert len(actions) == n_frames and actions[0].shape == (1, 2)
    distinct = {id(m) for m in memories}
    assert len(distinct) == -(-n_frames // loaded.config.n_action_steps)  # one memory update per chunk


def test_lerobot_eval_runs_a_memory_checkpoint_and_resets_memory_each_episode(memory_checkpoint, tmp_path):
    out = tmp_path / "eval"
    _run([str(BIN / "lerobot-eval"), f"--policy.path={memory_checkpoint}", "--env.type=memlens_cue_recall",
          "--env.variant=short", "--eval.n_episodes=2", "--eval.batch_size=2", "--eval.use_async_envs=false",
          "--policy.device=cpu", f"--output_dir={out}"], timeout=600)
    info = json.loads((out / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 2


def test_each_rollout_starts_from_the_initial_memory(memory_checkpoint):
    from lerobot.envs.factory import make_env, make_env_pre_post_processors
    from lerobot.scripts.lerobot_eval import rollout

    from memlens.runtime import load_policy
    from memlens.tasks.envs import make_env_config

    loaded = load_policy(memory_checkpoint)
    env_cfg = make_env_config("memlens_cue_recall", variant="short")
    env = next(iter(next(iter(make_env(env_cfg, n_envs=1).values())).values()))
    env_pre, env_post = make_env_pre_post_processors(env_cfg, loaded.config)
    runs = []
    for _ in range(2):
        states = []
        rollout(env, loaded.policy, env_pre, env_post, loaded.preprocessor, loaded.postprocessor, seeds=[7],
                predicted_latents_callback=lambda p: states.append(p.memory.read(1).clone()))
        runs.append(states)
    env.close()
    assert not torch.allclose(runs[0][0], runs[0][-1])  # memory moved during the episode
    assert torch.allclose(runs[1][0], runs[0][0])  # and the next episode started afresh


def test_fine_tuning_a_plain_smolvla_checkpoint_loads_every_weight_and_adds_fresh_memory(tmp_path):
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from policy_helpers import config_kwargs

    from memlens.policy import SmolVLARMTPolicy

    torch.manual_seed(0)
    stock = SmolVLAPolicy(SmolVLAConfig(**config_kwargs()))
    stock.save_pretrained(tmp_path / "smolvla")
    args, notes = prepare_args([f"--policy.path={tmp_path / 'smolvla'}", "--policy.num_mem_tokens=4"])
    path = Path(next(a for a in args if a.startswith("--policy.path=")).split("=", 1)[1])
    assert "--policy.push_to_hub=false" in args and "model.mem_tokens" in notes[0]
    assert json.loads((path / "config.json").read_text())["type"] == "smolvla_rmt"
    from lerobot.configs import PreTrainedConfig

    cfg = PreTrainedConfig.from_pretrained(path, cli_overrides=["--num_mem_tokens=4"])
    loaded = SmolVLARMTPolicy.from_pretrained(path, config=cfg)
    sd_stock, sd_new = stock.state_dict(), loaded.state_dict()
    assert set(sd_new) - set(sd_stock) == {"model.mem_tokens"}
    assert all(torch.equal(sd_stock[k], sd_new[k]) for k in sd_stock)
    assert loaded.model.mem_tokens.shape == (4, 1, loaded.model.hidden_size)


def test_fine_tuning_from_another_policy_type_is_refused_with_the_allowed_types(tmp_path):
    ckpt = tmp_path / "act"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"type": "act"}))
    with pytest.raises(UserError, match=r"'act' checkpoint.*smolvla"):
        prepare_args([f"--policy.path={ckpt}", "--policy.num_mem_tokens=4"])


def test_a_checkpoint_from_the_hub_cache_loads_by_repo_id_through_the_same_path(memory_checkpoint, tmp_path):
    """A stand-in for `lerobot/smolvla_base`: a checkpoint in the Hub-cache layout, loaded offline by id."""
    import os

    from memlens.policy.finetune import resolve_checkpoint_dir
    from memlens.runtime import load_policy

    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--memlens-test--rmt-standin"
    revision = "0" * 40
    shutil.copytree(memory_checkpoint, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    assert resolve_checkpoint_dir("memlens-test/rmt-standin") == repo / "snapshots" / revision
    loaded = load_policy("memlens-test/rmt-standin")
    assert loaded.config.num_mem_tokens == 4
    with pytest.raises(FileNotFoundError, match="neither a local directory nor a Hub repo id"):
        resolve_checkpoint_dir("memlens-test/not-cached")
