"""The Gymnasium adapter (on tiny envs and memlens's own task, no simulator needed) and MIKASA-Robo through it.

The MIKASA tests skip when MIKASA-Robo is not installed (`make setup-mikasa`); they share one env
(making one takes ~8-18 s on one core).
"""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from typer.testing import CliRunner

from memlens.cli import app
from memlens.tasks.gym_adapter import GymEnvConfig, LeRobotGymEnv, ObservationSpec, record_gym_dataset

POLICY_KEYS = {"action", "observation.state"}


class SecretEnv(gym.Env):
    """A tiny env whose observation carries the answer next to a camera and a position; success on
    reaching the answer's corner. ``batched`` returns every value with a leading env axis of 1."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}

    def __init__(self, batched: bool = False, image_dtype=np.uint8):
        self.batched, self.image_dtype = batched, image_dtype
        self.observation_space = spaces.Dict({
            "camera": spaces.Box(0, 255, (8, 8, 3), np.uint8),
            "robot": spaces.Dict({"pos": spaces.Box(-1, 1, (2,), np.float32)}),
            "answer": spaces.Discrete(2),
        })
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)
        self.spec = gym.envs.registration.EnvSpec("SecretEnv-v0", max_episode_steps=20)

    def _b(self, x):
        return np.asarray(x)[None] if self.batched else x

    def _obs(self):
        image = np.full((8, 8, 3), 100 + 50 * self.answer, self.image_dtype)
        return {"camera": self._b(image), "robot": {"pos": self._b(self.pos.copy())}, "answer": self._b(self.answer)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.answer = int(self.np_random.integers(2))
        self.pos = np.zeros(2, np.float32)
        return self._obs(), {"instruction": "go to the corner the image shows", "answer": self.answer}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.5 * np.asarray(action, np.float32), -1, 1)
        success = bool(np.allclose(self.pos, [1, 1] if self.answer else [-1, -1]))
        return self._obs(), self._b(float(success)), self._b(False), self._b(False), \
            {"success": self._b(success), "answer": self.answer}


SPEC = ObservationSpec(cameras={"top": "camera"}, state=("robot/pos",), state_names=("x", "y"),
                       instruction_key="instruction")


def corner_expert(env, obs):
    return np.full(2, 1.0 if env.unwrapped.answer else -1.0, np.float32)


# ---- the adapter, no simulator needed -----------------------------------------------------------------------


def test_the_adapter_lets_through_only_the_named_camera_and_state_and_reports_only_success():
    env = LeRobotGymEnv(SecretEnv(), SPEC, task="corner")
    obs, info = env.reset(seed=0)
    assert set(obs) == {"pixels", "agent_pos"} and set(obs["pixels"]) == {"top"}
    assert obs["pixels"]["top"].shape == (8, 8, 3) and obs["pixels"]["top"].dtype == np.uint8
    assert obs["agent_pos"].dtype == np.float32 and obs["agent_pos"].shape == (2,)
    assert info == {"is_success": False}
    assert env.observation_space.contains(obs)
    assert env.task_description == "go to the corner the image shows" and env._max_episode_steps == 20
    obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert info == {"is_success": False} and "answer" not in obs and not terminated
    assert env.metadata["render_fps"] == 5 and env.render().shape == (8, 8, 3)


@pytest.mark.parametrize("batched", [False, True])
def test_the_episode_stops_on_the_first_success_and_batched_values_lose_their_env_axis(batched):
    env = LeRobotGymEnv(SecretEnv(batched=batched), dataclasses.replace(SPEC, batched=batched))
    obs, _ = env.reset(seed=3)
    assert obs["pixels"]["top"].shape == (8, 8, 3) and obs["agent_pos"].shape == (2,)
    steps = []
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(corner_expert(env, obs))
        steps.append((terminated, info["is_success"]))
        if terminated:
            break
    assert steps == [(False, False), (True, True)]  # two half-steps to the corner, then stop
    assert isinstance(reward, float) and isinstance(terminated, bool)


def test_a_missing_path_and_a_non_rgb_camera_say_what_was_expected():
    with pytest.raises(KeyError, match=r"no key 'wrist'.*found \['answer', 'camera', 'robot'\]"):
        LeRobotGymEnv(SecretEnv(), ObservationSpec(cameras={"w": "wrist"}, instruction="x"))
    with pytest.raises(ValueError, match=r"camera 'top'.*float32 \[8, 8, 3\]; expected uint8"):
        LeRobotGymEnv(SecretEnv(image_dtype=np.float32), SPEC)
    with pytest.raises(ValueError, match="language instruction"):
        ObservationSpec(cameras={"top": "camera"})
    with pytest.raises(ValueError, match="leading env axis"):
        LeRobotGymEnv(SecretEnv(), dataclasses.replace(SPEC, batched=True))
    env = LeRobotGymEnv(SecretEnv(), SPEC)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action has shape \[3\]; expected \[2\]"):
        env.step(np.zeros(3, np.float32))


CUE_GYM = dict(env_id="memlens/CueRecall-v0", import_module="memlens.tasks.envs", cameras={"top": "pixels/top"},
               image_shapes={"top": [64, 64, 3]}, state=["agent_pos"], state_dim=4, action_dim=2,
               success_key="is_success", task="reach the target whose colour the cue showed", fps=10)


def test_lerobot_builds_the_memlens_gym_type_over_memlens_own_task_and_feeds_only_images_and_state():
    from lerobot.envs.factory import make_env
    from lerobot.envs.utils import env_to_policy_features, preprocess_observation

    cfg = GymEnvConfig(**CUE_GYM)
    assert cfg.type == "memlens_gym"
    assert set(env_to_policy_features(cfg)) == POLICY_KEYS | {"observation.images.top"}
    vec = make_env(cfg, n_envs=2)["memlens_gym"][0]
    try:
        assert vec.call("task_description") == (cfg.task, cfg.task) and vec.call("_max_episode_steps") == (43, 43)
        obs, _ = vec.reset(seed=[0, 1])
        batch = preprocess_observation(obs)
        assert set(batch) == {"observation.images.top", "observation.state"}
        assert batch["observation.images.top"].shape == (2, 3, 64, 64)
        obs, _, _, _, info = vec.step(np.zeros((2, 2), np.float32))
        assert set(info) <= {"is_success", "_is_success", "final_info", "_final_info", "final_obs", "_final_obs"}
    finally:
        vec.close()


def test_a_gym_config_whose_shapes_differ_from_the_env_says_which():
    cfg = GymEnvConfig(**{**CUE_GYM, "state_dim": 5})
    with pytest.raises(ValueError, match=r"gives .*'state_dim': 4.*declares .*'state_dim': 5"):
        cfg.make()
    with pytest.raises(ValueError, match="must name the same cameras"):
        GymEnvConfig(**{**CUE_GYM, "image_shapes": {"wrist": [64, 64, 3]}})


def test_a_recorded_gym_dataset_has_the_labels_of_every_frame_and_lerobot_reads_it_back(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from memlens.tasks.expert import ScriptedExpert
    from memlens.tasks.record import load_labels

    env = GymEnvConfig(**CUE_GYM).make()
    expert = ScriptedExpert()
    seen = []

    def labels(env):
        world = env.unwrapped.world
        seen.append((world.cue, world.phase))
        return {"cue": world.cue, "phase": world.phase}

    root = record_gym_dataset(env, lambda env, obs: expert.act(env.unwrapped.world), root=tmp_path / "ds",
                              repo_id="local/ds", n_episodes=2, seed=5, labels_fn=labels, progress=False,
                              meta={"source": "test"})
    ds = LeRobotDataset("local/ds", root=root, video_backend="pyav")
    assert ds.num_episodes == 2 and ds.fps == 10
    assert {k for k in ds.features if k.startswith("observation")} == {"observation.images.top", "observation.state"}
    assert {k for k in ds.features if k.startswith("label.")} == {"label.cue", "label.phase"}
    column = [(int(ds[i]["label.cue"]), int(ds[i]["label.phase"])) for i in range(ds.num_frames)]
    assert column == seen  # one label row per frame, in order
    meta = load_labels(root)
    assert meta["source"] == "test" and [e["seed"] for e in meta["episodes"]] == [5, 6]
    assert all(e["success"] for e in meta["episodes"])
    assert [e["cue"] for e in meta["episodes"]] == [column[0][0], column[meta["episodes"][0]["length"]][0]]
    assert ds[0]["task"] == CUE_GYM["task"] and tuple(ds[0]["observation.images.top"].shape) == (3, 64, 64)
    with pytest.raises(FileExistsError, match="not empty"):
        record_gym_dataset(env, corner_expert, root=root, repo_id="local/ds", n_episodes=1)


def test_recording_an_unknown_env_lists_the_mikasa_types_and_needs_one_directory(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["record", "--env", "mikasa_nope", "--root", str(tmp_path / "x")])
    assert result.exit_code == 2 and "mikasa_remember_color3" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["record", "--root", str(tmp_path / "y"), "--control-mode", "pd_ee_delta_pos"])
    assert result.exit_code == 2 and "MIKASA-Robo env (--env)" in result.output and not (tmp_path / "y").exists()
    result = runner.invoke(app, ["record", "--env", "mikasa_remember_color3"])
    assert result.exit_code == 2 and "--root" in result.output


def test_the_mikasa_env_types_declare_two_cameras_25_state_values_and_8_actions_without_mikasa():
    from lerobot.envs.utils import env_to_policy_features

    from memlens.tasks.mikasa import KNOWN_ENVS, make_env_config

    assert {"mikasa_remember_color3", "mikasa_remember_color5", "mikasa_remember_color9", "mikasa_bunch_of_colors3",
            "mikasa_seq_of_colors3", "mikasa_chain_of_colors3", "mikasa_remember_color3_visible"} <= set(KNOWN_ENVS)
    for name in KNOWN_ENVS:
        cfg = make_env_config(name)
        assert cfg.type == name
        features = env_to_policy_features(cfg)
        assert set(features) == POLICY_KEYS | {"observation.images.base", "observation.images.hand"}
        assert features["observation.state"].shape == (25,) and features["action"].shape == (8,)
        assert features["observation.images.base"].shape == (3, 128, 128)
    assert make_env_config("mikasa_chain_of_colors3").episode_length == 400
    with pytest.raises(ValueError, match="expected one of"):
        make_env_config("mikasa_shell_game")


def test_the_tcp_delta_action_space_is_a_choice_that_sets_the_action_size_and_follows_the_policy():
    from lerobot.envs.utils import env_to_policy_features

    from memlens.errors import InvalidInputError
    from memlens.tasks.catalog import env_config
    from memlens.tasks.mikasa import control_mode_of, make_env_config

    cfg = make_env_config("mikasa_remember_color3", control_mode="pd_ee_delta_pos")
    assert cfg.action_dim == 4 and cfg.env_kwargs["control_mode"] == "pd_ee_delta_pos"
    assert env_to_policy_features(cfg)["action"].shape == (4,)
    assert make_env_config("mikasa_remember_color3").env_kwargs["control_mode"] == "pd_joint_delta_pos"
    # env_kwargs, as lerobot's --env.env_kwargs passes them, choose it too
    assert make_env_config("mikasa_remember_color3", env_kwargs={"control_mode": "pd_ee_delta_pos"}).action_dim == 4
    with pytest.raises(InvalidInputError, match="pd_ee_pose.*expected one of pd_joint_delta_pos, pd_ee_delta_pos"):
        make_env_config("mikasa_remember_color3", control_mode="pd_ee_pose")
    # a checkpoint's action size picks the controller it was trained on
    assert control_mode_of(8) == "pd_joint_delta_pos" and control_mode_of(4) == "pd_ee_delta_pos"
    assert env_config("mikasa_remember_color3", "control", action_dim=4).control_mode == "pd_ee_delta_pos"
    assert env_config("mikasa_remember_color3", "control", action_dim=4).type == "mikasa_remember_color3_visible"
    with pytest.raises(InvalidInputError, match="outputs 2 action values.*8 \\(pd_joint_delta_pos\\), 4 \\(pd_ee_delta_pos\\)"):
        env_config("mikasa_remember_color3", action_dim=2)


# ---- MIKASA-Robo ---------------------------------------------------------------------------------------------

ANSWER_KEYS = ("oracle_info", "task_cue", "obj_to_goal_pos", "goal", "target", "cue", "prompt", "reward_dict")


@pytest.fixture(scope="module")
def mikasa():
    from memlens.tasks.mikasa import is_installed, make_env_config

    if not is_installed():
        pytest.skip("MIKASA-Robo is not installed (install it with `make setup-mikasa`)")
    env = make_env_config("mikasa_remember_color3").make()
    yield env
    env.close()


def run_expert(env, seed):
    from memlens.tasks.mikasa_expert import MikasaExpert

    expert = MikasaExpert()
    obs, _ = env.reset(seed=seed)
    expert.reset(env)
    for t in range(env._max_episode_steps):
        obs, _, terminated, truncated, info = env.step(expert(env, obs))
        if terminated or truncated:
            return info["is_success"], terminated, t + 1
    return False, False, env._max_episode_steps


def test_mikasa_reset_and_step_give_two_cameras_25_state_values_and_the_instruction(mikasa):
    obs, info = mikasa.reset(seed=0)
    assert {cam: img.shape for cam, img in obs["pixels"].items()} == {"base": (128, 128, 3), "hand": (128, 128, 3)}
    assert obs["agent_pos"].shape == (25,) and info == {"is_success": False}
    assert mikasa.action_space.shape == (8,) and mikasa._max_episode_steps == 25
    assert mikasa.task_description == "Observe the cube's color, wait, then touch the cube of the same color."
    qpos = mikasa.unwrapped.agent.robot.get_qpos()[0].numpy()
    assert np.allclose(obs["agent_pos"][:9], qpos)
    obs, reward, terminated, truncated, info = mikasa.step(np.zeros(8, np.float32))
    assert set(info) == {"is_success"} and isinstance(reward, float)


def test_no_answer_carrying_key_reaches_the_mikasa_policy_observation_or_the_env_features(mikasa):
    from lerobot.envs.utils import env_to_policy_features, preprocess_observation

    from memlens.tasks.mikasa import make_env_config

    raw = mikasa.unwrapped.get_obs(mikasa.unwrapped.get_info())  # what the simulator offers
    assert "oracle_info" in mikasa.unwrapped.evaluate()  # the answer is right there, in the simulator
    obs, _ = mikasa.reset(seed=1)
    batch = preprocess_observation({"pixels": {k: v[None] for k, v in obs["pixels"].items()},
                                    "agent_pos": obs["agent_pos"][None]})
    assert set(batch) == {"observation.images.base", "observation.images.hand", "observation.state"}
    assert set(raw) - {"agent", "extra", "sensor_data", "sensor_param"} == set()  # nothing more to filter...
    assert set(raw["extra"]) == {"tcp_pose"}  # ...in rgb mode MIKASA keeps its answer keys out of obs
    features = env_to_policy_features(make_env_config("mikasa_remember_color3"))
    for key in list(batch) + list(features):
        assert not any(word in key for word in ANSWER_KEYS), key


def test_the_mikasa_expert_succeeds_and_the_episode_stops_on_success(mikasa):
    for seed in (0, 1):
        success, terminated, steps = run_expert(mikasa, seed)
        assert success and terminated and steps < 25, (seed, steps)


def test_a_two_episode_mikasa_dataset_reads_back_with_lerobot_with_labels_and_no_answer_columns(mikasa, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.utils.feature_utils import dataset_to_policy_features

    from memlens.tasks.mikasa import record_mikasa_dataset

    root = record_mikasa_dataset("mikasa_remember_color3", root=tmp_path / "rc3", n_episodes=2, seed=0, env=mikasa,
                                 progress=False)
    ds = LeRobotDataset("local/rc3", root=root, video_backend="pyav")
    assert ds.num_episodes == 2 and ds.fps == 20
    policy_inputs = dataset_to_policy_features(ds.features)
    assert set(policy_inputs) == POLICY_KEYS | {"observation.images.base", "observation.images.hand"}
    assert {k for k in ds.features if k.startswith("label.")} == {
        "label.cue", "label.phase", "label.cue_steps", "label.delay_steps"}
    meta = json.loads((root / "meta" / "memlens_labels.json").read_text())
    assert meta["env"] == "mikasa_remember_color3" and all(e["success"] for e in meta["episodes"])
    first = meta["episodes"][0]
    phases = [int(ds[i]["label.phase"]) for i in range(first["length"])]
    cue_steps, delay = first["cue_steps"], first["delay_steps"]
    assert phases == [0] * cue_steps + [1] * delay + [2] * (first["length"] - cue_steps - delay)
    assert {int(ds[i]["label.cue"]) for i in range(first["length"])} == {first["cue"]}
    frame = ds[0]
    assert tuple(frame["observation.images.base"].shape) == (3, 128, 128) and frame["observation.state"].shape == (25,)
    assert frame["task"].startswith("Observe the cube's color")


def test_the_expert_records_a_tcp_delta_dataset_that_lerobot_reads_with_4_action_values(mikasa, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from memlens.errors import InvalidInputError
    from memlens.tasks.mikasa import make_env_config, record_mikasa_dataset

    with pytest.raises(InvalidInputError, match="the env given runs pd_joint_delta_pos.*asks for pd_ee_delta_pos"):
        record_mikasa_dataset("mikasa_remember_color3", root=tmp_path / "no", n_episodes=1, env=mikasa,
                              control_mode="pd_ee_delta_pos")
    env = make_env_config("mikasa_remember_color3", control_mode="pd_ee_delta_pos").make()
    try:
        assert env.action_space.shape == (4,) and env.unwrapped.control_mode == "pd_ee_delta_pos"
        success, terminated, steps = run_expert(env, 3)
        assert success and terminated and steps < 25
        root = record_mikasa_dataset("mikasa_remember_color3", root=tmp_path / "ee", n_episodes=1, seed=3, env=env,
                                     progress=False, control_mode="pd_ee_delta_pos")
    finally:
        env.close()
    ds = LeRobotDataset("local/ee", root=root, video_backend="pyav")
    assert ds.features["action"]["shape"] == (4,)
    actions = np.stack([ds[i]["action"].numpy() for i in range(ds.num_frames)])
    assert np.abs(actions).max() <= 1.0 and (actions[:, 3] == -1).all()  # normalised TCP steps, fingers closed
    meta = json.loads((root / "meta" / "memlens_labels.json").read_text())
    assert meta["control_mode"] == "pd_ee_delta_pos" and meta["episodes"][0]["success"]


def test_the_visible_control_keeps_a_tile_of_the_cue_colour_in_view_in_the_same_episode(mikasa):
    from memlens.tasks.mikasa import make_env_config
    from memlens.tasks.mikasa_sim import CUE_TILE_POSITION, HIDDEN_Z

    def cue_pixels(image, colour):  # pixels of the pure cube colour (red, lime or blue)
        bright = image[..., colour] > 120
        dark = np.delete(image, colour, axis=-1).max(-1) < 60
        return int((bright & dark).sum())

    control = make_env_config("mikasa_remember_color3_visible").make()
    try:
        for seed in (0, 4):
            for env in (mikasa, control):
                env.reset(seed=seed)
            plain, shown = mikasa.unwrapped, control.unwrapped
            key = int(shown.true_color_indices[0])
            assert key == int(plain.true_color_indices[0])  # the same episode: cue, delays, cube places
            assert int(shown.empty_steps_per_env[0]) == int(plain.empty_steps_per_env[0])
            for k in plain.cubes:
                assert np.allclose(plain.initial_poses[k].numpy(), shown.initial_poses[k].numpy())
            for k, tile in shown.cue_tiles.items():
                z = float(tile.pose.p[0, 2])
                assert z == pytest.approx(CUE_TILE_POSITION[2] if k == key else HIDDEN_Z)
            # through the delay (cubes hidden) the control's base camera still shows the cue colour
            cue_end = int(plain.cue_steps_per_env[0])
            for t in range(cue_end + 1):
                o_plain, *_ = mikasa.step(np.zeros(8, np.float32))
                o_shown, *_ = control.step(np.zeros(8, np.float32))
            assert cue_pixels(o_plain["pixels"]["base"], key) == 0
            assert cue_pixels(o_shown["pixels"]["base"], key) > 30
    finally:
        control.close()


@pytest.mark.slow
def test_the_mikasa_expert_solves_at_least_95_percent_of_seeded_episodes_of_every_task():
    import sys
    from pathlib import Path

    from memlens.tasks.mikasa import is_installed

    if not is_installed():
        pytest.skip("MIKASA-Robo is not installed (install it with `make setup-mikasa`)")
    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    from bench_mikasa import _episode, _raw_env

    from memlens.tasks.mikasa import TASKS
    from memlens.tasks.mikasa_expert import MikasaExpert

    for name, task in TASKS.items():
        env = _raw_env(name, "state")
        try:
            wins = [_episode(env, MikasaExpert(), seed, task.episode_length)[0] for seed in range(20)]
        finally:
            env.close()
        assert sum(wins) >= 19, (name, wins)


@pytest.mark.slow
def test_memlens_record_writes_a_mikasa_dataset(tmp_path):
    from memlens.tasks.mikasa import is_installed

    if not is_installed():
        pytest.skip("MIKASA-Robo is not installed (install it with `make setup-mikasa`)")
    result = CliRunner().invoke(app, ["record", "--env", "mikasa_remember_color3", "--episodes", "1",
                                      "--root", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "x" / "meta" / "memlens_labels.json").read_text())["n_episodes"] == 1


# ---- one catalog of envs: MIKASA tasks take variants cue and control (no simulator needed) ---------------------


def test_the_catalog_maps_a_mikasa_task_and_its_control_to_their_env_types():
    from memlens.errors import InvalidInputError
    from memlens.tasks.catalog import env_config, env_names, variant_of_config, variants_of

    assert variants_of("mikasa_remember_color3") == ("cue", "control")
    assert variants_of("mikasa_chain_of_colors3") == ("cue",)  # no cue-visible twin
    control = env_config("mikasa_remember_color3", "control")
    assert control.type == "mikasa_remember_color3_visible"
    assert variant_of_config(control) == "control"
    assert env_config("mikasa_remember_color3").type == "mikasa_remember_color3"
    assert env_config("memlens_cue_recall", "long").variant == "long"
    assert "mikasa_remember_color3_visible" not in env_names() and "memlens_order" in env_names()
    with pytest.raises(InvalidInputError, match="it has cue, control"):
        env_config("mikasa_remember_color3", "medium")
    with pytest.raises(InvalidInputError, match="expected one of memlens_cue_recall"):
        env_config("mikasa_shell_game")


def test_memlens_experiment_names_the_tasks_it_takes():
    result = CliRunner().invoke(app, ["experiment", "--tasks", "mikasa_remember_color3_visible"])
    assert result.exit_code == 2 and "mikasa_remember_color3" in result.output and "Traceback" not in result.output
    assert "a control is evaluated with its task" in result.output


# ---- the pipeline on MIKASA: experiment, capture (live and replayed), probe data, swap, app, Rerun --------------


@pytest.fixture(scope="module")
def mikasa_experiment(tmp_path_factory):
    """`memlens experiment` on mikasa_remember_color3 at the smallest budget (2 expert episodes per variant, 2
    training steps per policy, 1 evaluation episode per policy and variant): the pipeline, not a result."""
    from memlens.tasks.mikasa import is_installed

    if not is_installed():
        pytest.skip("MIKASA-Robo is not installed (install it with `make setup-mikasa`)")
    out = tmp_path_factory.mktemp("mikasa_experiment")
    result = CliRunner().invoke(app, ["experiment", "--out", str(out), "--tasks", "mikasa_remember_color3",
                                      "--steps", "2", "--mikasa-episodes", "2", "--n-episodes", "1"])
    assert result.exit_code == 0, result.output
    return out / "mikasa_remember_color3"


def test_memlens_experiment_trains_both_policies_on_task_and_control_and_evaluates_both_variants(mikasa_experiment):
    results = json.loads((mikasa_experiment / "evaluation_results.json").read_text())
    assert {(r["policy"], r["variant"]) for r in results["results"]} == {
        (p, v) for p in ("baseline", "memory") for v in ("cue", "control")}
    assert all(r["n_episodes"] == 1 and r["task"] == "mikasa_remember_color3" for r in results["results"])
    table = (mikasa_experiment.parent / "results.md").read_text()
    assert "| mikasa_remember_color3 | control |" in table and "| mikasa_remember_color3 | cue |" in table
    config = json.loads((mikasa_experiment / "memory" / "checkpoints" / "last" / "pretrained_model" /
                         "config.json").read_text())
    assert (config["num_mem_tokens"], config["n_mem_segments"], config["mem_segment_stride"]) == (4, 3, 5)
    assert (config["max_state_dim"], config["n_action_steps"]) == (32, 5)
    base = json.loads((mikasa_experiment / "baseline" / "checkpoints" / "last" / "pretrained_model" /
                       "config.json").read_text())
    assert base["num_mem_tokens"] == 0 and base["n_mem_segments"] == 3  # the same budget
    for variant, control in (("cue", False), ("control", True)):  # the control replays the task's seeds
        meta = json.loads((mikasa_experiment / "parts" / f"{variant}-seed0" / "meta" / "memlens_labels.json").read_text())
        assert meta["control"] is control and [e["seed"] for e in meta["episodes"]] == [0, 1]


def test_live_mikasa_captures_hold_both_cameras_and_the_cue_and_phase_of_every_frame(mikasa_experiment, tmp_path):
    from memlens.apps.gradio_app import TraceView
    from memlens.store import TraceStore

    ckpt = mikasa_experiment / "memory" / "checkpoints" / "last" / "pretrained_model"
    out = tmp_path / "live"
    result = CliRunner().invoke(app, ["capture", str(ckpt), "--env", "mikasa_remember_color3", "--n-episodes", "2",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    store = TraceStore.open(out)
    recorded = json.loads((mikasa_experiment / "parts" / "cue-seed0" / "meta" / "memlens_labels.json").read_text())
    assert store.provenance["env"] == {"name": "mikasa_remember_color3", "variant": "cue", "seed": 0}
    for ep in (0, 1):
        trace = store.episode(ep)
        n = trace.attrs["length"]
        assert trace.shapes["frames/base"] == trace.shapes["frames/hand"] == (n, 128, 128, 3)
        labels = trace.attrs["labels"]
        # the expert's episode of the same seed (lerobot's vector env has already reset the simulator to the
        # next episode when a rollout ends, so these were read at the rollout's reset)
        expected = recorded["episodes"][ep]
        assert (labels["cue"], labels["cue_steps"], labels["delay_steps"]) == (
            expected["cue"], expected["cue_steps"], expected["delay_steps"])
        assert (trace.load("label/cue") == labels["cue"]).all()
        phase = trace.load("label/phase")
        cue, delay = labels["cue_steps"], labels["delay_steps"]
        assert (phase[:cue] == 0).all() and (phase[cue:cue + delay] == 1).all() and (phase[cue + delay:] == 2).all()
        assert trace.shapes["memory/write"][0] == trace.attrs["n_updates"] == -(-n // 5)
    view = TraceView(out)
    both = view.frame(0, 0)
    assert both.shape == (256, 256 * 2 + 6, 3) and view.camera_label(0) == "cameras: base | hand"  # 2x, nearest
    np.testing.assert_array_equal(both[::2, 262::2], store.episode(0).load("frames/hand")[0])
    rrd = tmp_path / "live.rrd"
    result = CliRunner().invoke(app, ["rerun", str(out), "--save", str(rrd), "--no-umap"])
    assert result.exit_code == 0, result.output
    from test_rerun_viewer import read_rrd

    recording = read_rrd(rrd)
    assert {"/camera/base", "/camera/hand", "/labels/cue", "/labels/phase"} <= set(recording)


def test_a_recorded_mikasa_dataset_replays_into_a_trace_store_with_its_labels(mikasa_experiment, tmp_path):
    from memlens.analysis import probe_data
    from memlens.store import TraceStore

    ckpt = mikasa_experiment / "memory" / "checkpoints" / "last" / "pretrained_model"
    data = mikasa_experiment / "parts" / "cue-seed0"
    result = CliRunner().invoke(app, ["capture", str(ckpt), str(data), "--out", str(tmp_path / "replay")])
    assert result.exit_code == 0, result.output
    store = TraceStore.open(tmp_path / "replay")
    recorded = json.loads((data / "meta" / "memlens_labels.json").read_text())
    assert store.episodes() == [0, 1]
    rows = probe_data(store, "cue", after_cue=True)
    assert len(rows.y) and (rows.since_cue >= 0).all()
    assert {int(y) for y in rows.y} <= {e["cue"] for e in recorded["episodes"]}


def test_swapping_memory_between_mikasa_episodes_reports_which_cube_each_reached(mikasa_experiment, mikasa):
    from memlens.interventions import intervene_env
    from memlens.tasks.mikasa import cue_of_seed

    ckpt = mikasa_experiment / "memory" / "checkpoints" / "last" / "pretrained_model"
    cues = {s: cue_of_seed(mikasa, s) for s in range(100_000, 100_006)}
    start = next(s for s in range(100_000, 100_005) if cues[s] != cues[s + 1])  # neighbours with different cues
    result = intervene_env(ckpt, "mikasa_remember_color3", mode="swap", from_update=1, n_episodes=2, seed=start)
    assert result.summary["n_swapped"] == 2
    for row in result.episodes:
        assert row["cue"] == cues[row["seed"]] and row["donor_cue"] == cues[start + 1 - (row["seed"] - start)]
        assert row["reached_reference"] in (None, 0, 1, 2) and row["reached_intervened"] in (None, 0, 1, 2)
    assert {"own_target_rate", "donor_target_rate"} <= set(result.summary)
