"""The guide's commands as it writes them (only the dataset and the backbone differ), on a two-camera
video dataset: memory training with the default K, the no-memory baseline, fine-tuning from a plain
SmolVLA checkpoint, and the evaluation that compares the two."""

import json

import pytest
import torch
from conftest import BIN, run_ok

from memlens.models import tiny_smolvla_kwargs
from memlens.workflows.train import policy_args

GUIDE_MEMORY = ["--policy.type=smolvla_rmt", "--policy.num_mem_tokens=4", "--policy.mem_at_end=false",
                "--policy.read_mem_from_cache=false"]
GUIDE_BASELINE = ["--policy.type=smolvla_rmt", "--policy.num_mem_tokens=0"]


@pytest.fixture(scope="module")
def two_camera_video_dataset(tmp_path_factory):
    from memlens.tasks.record import record_dataset

    root = tmp_path_factory.mktemp("data") / "cue_two_cams"
    return record_dataset(root=root, repo_id="local/cue_two_cams", task="cue_recall", variant="short", n_episodes=3,
                          seed=3, cameras=("top", "wrist"), progress=False)


def _backbone_and_data(dataset, out, steps=2):
    """What the guide leaves to the user: the backbone (here the tiny local one) and the dataset."""
    return [*policy_args({**tiny_smolvla_kwargs(), "device": "cpu"}), "--policy.push_to_hub=false",
            "--dataset.repo_id=local/cue_two_cams", f"--dataset.root={dataset}", "--dataset.video_backend=pyav",
            f"--output_dir={out}", f"--steps={steps}", "--batch_size=2", "--num_workers=0", "--wandb.enable=false",
            "--log_freq=1"]


def test_the_guides_memory_command_trains_on_two_camera_video_with_the_default_k_and_says_so(
        two_camera_video_dataset, tmp_path):
    out = tmp_path / "memory"
    proc = run_ok([BIN / "lerobot-train", *GUIDE_MEMORY, *_backbone_and_data(two_camera_video_dataset, out)])
    log = proc.stdout + proc.stderr
    assert "Traceback" not in log
    notices = [line for line in log.splitlines() if "n_mem_segments not set" in line]
    assert len(notices) == 1 and "K=4" in notices[0]  # one clear line
    assert "n_valid_segments" in log  # the recurrent path ran
    config = json.loads((out / "checkpoints/last/pretrained_model/config.json").read_text())
    assert config["num_mem_tokens"] == 4 and config["n_mem_segments"] == 4
    assert {"observation.images.top", "observation.images.wrist"} <= set(config["input_features"])


def test_memory_with_k_1_trains_and_warns_in_one_line(two_camera_video_dataset, tmp_path):
    proc = run_ok([BIN / "lerobot-train", *GUIDE_MEMORY, "--policy.n_mem_segments=1",
                   *_backbone_and_data(two_camera_video_dataset, tmp_path / "k1", steps=1)])
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "n_mem_segments=1 with num_mem_tokens" in line]
    assert len(warnings) == 1 and "cannot learn to carry anything across segments" in warnings[0]


def test_the_guides_baseline_is_stock_single_frame_smolvla_and_the_evaluation_compares_both(
        two_camera_video_dataset, tmp_path):
    run_ok([BIN / "lerobot-train", *GUIDE_BASELINE, *_backbone_and_data(two_camera_video_dataset, tmp_path / "base")])
    run_ok([BIN / "lerobot-train", *GUIDE_MEMORY, *_backbone_and_data(two_camera_video_dataset, tmp_path / "mem")])
    base = tmp_path / "base/checkpoints/last/pretrained_model"
    mem = tmp_path / "mem/checkpoints/last/pretrained_model"
    assert json.loads((base / "config.json").read_text())["n_mem_segments"] == 1
    # The guide's evaluation (recipes/evaluate.sh): baseline against memory, written as JSON.
    out = tmp_path / "evaluation_results.json"
    run_ok(["bash", "recipes/evaluate.sh"], env_extra={"BASELINE": str(base), "MEMORY": str(mem),
                                                        "DATASET": str(two_camera_video_dataset), "OUTPUT": str(out)})
    results = json.loads(out.read_text())
    assert len(results["results"]) == 2 and all(r["action_mse_mean"] >= 0 for r in results["results"].values())


def test_fine_tuning_a_plain_smolvla_checkpoint_with_the_guides_memory_flags(two_camera_video_dataset, tmp_path):
    plain = tmp_path / "plain"
    run_ok([BIN / "lerobot-train", "--policy.type=smolvla", *_backbone_and_data(two_camera_video_dataset, plain, 1)])
    src = plain / "checkpoints/last/pretrained_model"
    out = tmp_path / "finetuned"
    proc = run_ok([BIN / "memlens", "train", f"--policy.path={src}", *GUIDE_MEMORY[1:],
                   *[a for a in _backbone_and_data(two_camera_video_dataset, out) if not a.startswith("--policy.")
                     or a == "--policy.push_to_hub=false"]])
    assert "every SmolVLA weight loads" in proc.stdout
    config = json.loads((out / "checkpoints/last/pretrained_model/config.json").read_text())
    assert config["type"] == "smolvla_rmt" and config["num_mem_tokens"] == 4 and config["n_mem_segments"] == 4


def test_the_guides_debugging_snippet_reads_the_memory_state_in_its_layout():
    """The guide steps an episode with `select_action` and prints `policy._mem_tokens_state` ([M, B, H]); the
    one place outside the policy that reads that name, since the guide's snippet does."""
    from policy_helpers import make_policy, obs_batch

    policy = make_policy(num_mem_tokens=4)
    policy.reset()
    assert policy._mem_tokens_state is None  # reset() clears it: the initial memory is mem_tokens
    obs = obs_batch(2)
    for _ in range(policy.config.n_action_steps + 1):  # the first boundary's write commits once time moves past it
        policy.select_action(dict(obs))
    state = policy._mem_tokens_state
    assert state.shape == (4, 2, policy.model.hidden_size)
    assert torch.equal(state, policy.memory.state) and torch.equal(state.transpose(0, 1), policy.memory.read(2))
    assert not torch.allclose(state.transpose(0, 1), policy.model.initial_memory(2).float())
