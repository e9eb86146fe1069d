"""Memory tasks: the world, the expert, the gym/LeRobot envs and the recorded datasets."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from memlens.tasks.expert import ScriptedExpert
from memlens.tasks.worlds import (
    DELAY_PRESETS,
    PHASE_CUE,
    PHASE_DELAY,
    PHASE_GO,
    BACKGROUND,
    COLOURS,
    TASKS,
    MemoryWorld,
    flash_on,
    make_spec,
    target_positions,
)


def rollout(spec, cue, policy=None):
    """Observations and per-frame phases of one episode; ``policy(world)`` -> action."""
    world = MemoryWorld(spec)
    obs = [world.reset(cue=cue)]
    phases = []
    while not world.done:
        phases.append(world.phase)
        action = policy(world) if policy else np.zeros(2, np.float32)
        obs.append(world.step(action)[0])
    return world, obs, phases


def same_obs(a, b):
    return np.array_equal(a["image"], b["image"]) and np.array_equal(a["state"], b["state"])


# ---- the world ----------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("variant", ["short", "long"])
def test_observations_after_the_cue_do_not_reveal_it(task, variant):
    spec = make_spec(task, variant, n_targets=4)
    expert = ScriptedExpert()
    episodes = {cue: rollout(spec, cue, expert.act)[1] for cue in range(4)}
    for a, b in itertools.combinations(range(4), 2):
        # the agent first moves with the action taken at go_start, so obs[go_start] is still shared
        for t in range(spec.cue_steps, spec.go_start + 1):
            assert same_obs(episodes[a][t], episodes[b][t]), (task, variant, a, b, t)
        assert not same_obs(episodes[a][spec.go_start + 1], episodes[b][spec.go_start + 1])


@pytest.mark.parametrize("task", TASKS)
def test_with_a_still_agent_every_frame_after_the_cue_is_identical_across_cues(task):
    spec = make_spec(task, "medium", n_targets=5)
    episodes = [rollout(spec, cue)[1] for cue in range(5)]
    for obs in episodes[1:]:
        assert len(obs) == len(episodes[0]) == spec.episode_length + 1
        assert all(same_obs(x, y) for x, y in zip(obs[spec.cue_steps :], episodes[0][spec.cue_steps :]))


@pytest.mark.parametrize("task", TASKS)
def test_the_cue_phase_shows_which_target_is_correct(task):
    spec = make_spec(task, "short", n_targets=6)
    cue_frames = [np.stack([o["image"] for o in rollout(spec, cue)[1][: spec.cue_steps]]) for cue in range(6)]
    for a, b in itertools.combinations(range(6), 2):
        assert not np.array_equal(cue_frames[a], cue_frames[b])
    if task == "cue_recall":  # every cue frame alone tells the cue
        for a, b in itertools.combinations(range(6), 2):
            assert all(not np.array_equal(x, y) for x, y in zip(cue_frames[a], cue_frames[b]))


@pytest.mark.parametrize("task", TASKS)
def test_the_control_variant_keeps_the_cue_visible_all_episode(task):
    spec = make_spec(task, "control", n_targets=4)
    assert spec.delay_steps == DELAY_PRESETS["medium"]
    episodes = [rollout(spec, cue)[1] for cue in range(4)]
    for a, b in itertools.combinations(range(4), 2):  # every frame, order's distractor frames included
        assert all(not np.array_equal(fa["image"], fb["image"]) for fa, fb in zip(episodes[a], episodes[b]))


@pytest.mark.parametrize("n", range(1, 7))
def test_the_border_flashes_count_times_within_the_cue_phase(n):
    spec = make_spec("count", "short", n_targets=6)
    lit = [flash_on(t, n) for t in range(spec.cue_steps)]
    onsets = sum(1 for t, on in enumerate(lit) if on and (t == 0 or not lit[t - 1]))
    assert onsets == n
    # and the whole border, as large as cue recall's cue, is what the images show
    frames = rollout(spec, n - 1)[1][: spec.cue_steps]
    yellow = np.array([255, 230, 0], np.uint8)
    for f, on in zip(frames, lit):
        border = np.concatenate([f["image"][:4].reshape(-1, 3), f["image"][-4:].reshape(-1, 3),
                                 f["image"][:, :4].reshape(-1, 3), f["image"][:, -4:].reshape(-1, 3)])
        assert (border == yellow).all(axis=1).all() == on
        assert (border == yellow).all(axis=1).any() == on


@pytest.mark.parametrize("seed", range(5))
def test_order_shows_the_cue_then_a_different_colour_and_the_cue_is_the_first(seed):
    spec = make_spec("order", "medium", n_targets=4)
    world = MemoryWorld(spec)
    world.reset(seed=seed)
    frames = rollout(spec, world.cue, ScriptedExpert().act)[1]  # rollout forces the cue, draws the second
    first, second = frames[0]["image"][0, 32], frames[15]["image"][0, 32]
    assert first.tolist() == COLOURS[world.cue].tolist()  # frames 0-9: the cue's colour
    assert second.tolist() != first.tolist() and second.tolist() in COLOURS[:4].tolist()
    assert frames[spec.cue_steps]["image"][0, 32].tolist() == list(BACKGROUND)  # then hidden


def test_order_never_repeats_the_cue_as_the_distractor_so_recency_fails():
    spec = make_spec("order", "short", n_targets=4)
    world = MemoryWorld(spec)
    pairs = set()
    for seed in range(200):
        world.reset(seed=seed)
        assert world.second != world.cue
        pairs.add((world.cue, world.second))
    assert len(pairs) == 12  # every ordered pair of different colours occurs


def test_the_order_control_shows_the_first_colour_in_the_corners_where_the_distractor_never_is():
    # A border colour means "the target" in the cue phase's first half and "not the target" in its second;
    # the control's reminder must not look like either, or a memoryless policy cannot read it (run 4's
    # order baseline: 14% on a control that showed the first colour as the border again after the cue).
    spec = make_spec("order", "control", n_targets=4)
    for cue in range(4):
        world, frames, _ = rollout(spec, cue)
        # the border's sides as in every variant: the first colour, the second, then nothing
        sides = [COLOURS[cue]] * 10 + [COLOURS[world.second]] * 10 + [BACKGROUND] * (len(frames) - 20)
        assert world.second != cue
        for f, side in zip(frames, sides, strict=True):
            assert all(f["image"][r, c].tolist() == COLOURS[cue].tolist() for r, c in ((0, 0), (7, 63), (63, 7)))
            assert f["image"][0, 32].tolist() == list(side) and f["image"][32, 63].tolist() == list(side)


@pytest.mark.parametrize("n_targets", [2, 4, 6])
def test_the_count_control_lights_count_of_n_slots_of_the_bottom_edge(n_targets):
    for count in range(1, n_targets + 1):
        spec = make_spec("count", "control", n_targets=n_targets)
        img = rollout(spec, count - 1)[1][spec.go_start]["image"]  # well after the cue phase
        bottom = (img[-4:] == [255, 230, 0]).all(axis=2).all(axis=0)  # [W] columns lit on all 4 rows
        runs = np.flatnonzero(np.diff(np.r_[0, bottom.astype(int), 0]) == 1)
        assert len(runs) == count and bottom.sum() >= count * (64 // n_targets - 3)
        assert not (img[:4] == [255, 230, 0]).all(axis=2).any()  # the rest of the border is dark


def test_both_tasks_put_their_targets_on_the_same_ring():
    np.testing.assert_array_equal(target_positions("count", 4), target_positions("cue_recall", 4))


@pytest.mark.parametrize("offset", range(9))
def test_a_policy_looking_once_per_chunk_sees_one_lit_lamp_per_flash(offset):
    # the tiny policy computes a chunk every 10 frames: the count must be legible at that rate
    spec = make_spec("count", "short", n_targets=4)
    for n in range(1, 5):
        assert sum(flash_on(t, n) for t in range(offset, spec.cue_steps, 10)) == n


def test_the_agent_cannot_move_before_go_and_state_has_position_go_flag_and_go_fraction():
    spec = make_spec("cue_recall", "short", n_targets=3)
    rng = np.random.default_rng(0)
    world, obs, phases = rollout(spec, 1, lambda w: rng.uniform(-1, 1, 2).astype(np.float32))
    assert phases[: spec.go_start] == [PHASE_CUE] * spec.cue_steps + [PHASE_DELAY] * spec.delay_steps
    assert set(phases[spec.go_start :]) == {PHASE_GO}
    for t, o in enumerate(obs):
        assert o["image"].shape == (64, 64, 3) and o["image"].dtype == np.uint8
        assert o["state"].shape == (4,) and o["state"].dtype == np.float32
        if t < spec.go_start:
            np.testing.assert_array_equal(o["state"], [0, 0, 0, 0])
        elif t == spec.go_start:
            np.testing.assert_array_equal(o["state"], [0, 0, 1, 0])  # go, not moved yet
        else:
            assert o["state"][2] == 1 and o["state"][3] == pytest.approx((t - spec.go_start) / spec.go_steps)
    assert np.abs(obs[-1]["state"][:2]).max() > 0  # it did move in go


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("n_targets", range(2, 7))
def test_the_expert_reaches_the_correct_target_for_every_cue(task, n_targets):
    spec = make_spec(task, "short", n_targets)
    expert = ScriptedExpert()
    for cue in range(n_targets):
        world = MemoryWorld(spec)
        world.reset(cue=cue)
        rewards = []
        while not world.done:
            _, reward, terminated, _, info = world.step(expert.act(world))
            rewards.append(reward)
        assert world.success and info["is_success"] and terminated
        assert 8 <= world.t - spec.go_start <= 15  # frames in go
        assert rewards[: spec.go_start] == [0.0] * spec.go_start
        assert rewards[-1] > 0.9  # +1 on success, minus the last small distance


@pytest.mark.parametrize("task", TASKS)
def test_the_expert_commands_the_goal_through_the_delay_so_a_chunk_need_not_guess_when_go_starts(task):
    # Zero while the cue is shown; from the first delay frame on, the same full-speed action as at the
    # first go frame (the world ignores it until go), and it differs between cues.
    spec = make_spec(task, "medium", 4)
    first_go = {}
    for cue in range(4):
        world, expert = MemoryWorld(spec), ScriptedExpert()
        world.reset(cue=cue)
        actions = []
        for _ in range(spec.go_start + 1):
            actions.append(expert.act(world))
            world.step(actions[-1])
        assert not np.any(actions[: spec.cue_steps])
        np.testing.assert_array_equal(np.stack(actions[spec.cue_steps:]),
                                      np.repeat(actions[-1][None], spec.delay_steps + 1, axis=0))
        assert np.linalg.norm(actions[-1]) == pytest.approx(1.0)  # full speed
        first_go[cue] = tuple(actions[-1])
    assert len(set(first_go.values())) == 4


def test_a_noisy_expert_is_reproducible_from_its_seed():
    spec = make_spec("count", "short", 4)
    runs = [[o["state"] for o in rollout(spec, 2, ScriptedExpert(0.3, seed=5).act)[1]] for _ in range(2)]
    np.testing.assert_array_equal(np.stack(runs[0]), np.stack(runs[1]))


def test_reaching_a_wrong_target_ends_the_episode_as_failure():
    spec = make_spec("cue_recall", "short", 4)
    world = MemoryWorld(spec)
    world.reset(cue=0)
    wrong = target_positions("cue_recall", 4)[2]
    info = {}
    while not world.done:
        step = np.clip((wrong - world.agent) / 0.06, -1, 1) if world.phase == PHASE_GO else np.zeros(2)
        _, _, terminated, truncated, info = world.step(step)
    assert terminated and not truncated and info["is_failure"] and not info["is_success"]
    assert world.t < spec.episode_length


def test_a_still_agent_times_out_after_the_episode_length():
    for variant, delay in DELAY_PRESETS.items():
        spec = make_spec("cue_recall", variant)
        world, obs, _ = rollout(spec, 0)
        assert spec.delay_steps == delay and world.t == spec.episode_length == 10 + delay + 30
        assert not world.success


def test_episode_lengths_follow_the_variant_presets():
    lengths = {(t, v): make_spec(t, v).episode_length for t in TASKS for v in DELAY_PRESETS}
    assert lengths == {
        ("cue_recall", "short"): 43,
        ("cue_recall", "medium"): 70,
        ("cue_recall", "long"): 140,
        ("cue_recall", "extra_long"): 200,
        ("cue_recall", "control"): 70,
        ("count", "short"): 73,
        ("count", "medium"): 100,
        ("count", "long"): 170,
        ("count", "extra_long"): 230,
        ("count", "control"): 100,
        ("order", "short"): 53,
        ("order", "medium"): 80,
        ("order", "long"): 150,
        ("order", "extra_long"): 210,
        ("order", "control"): 80,
    }


def test_the_same_seed_gives_the_same_cue_and_seeds_cover_all_cues():
    spec = make_spec("cue_recall", "short", 4)
    cues = []
    for seed in range(40):
        a, b = MemoryWorld(spec), MemoryWorld(spec, seed=123)
        a.reset(seed=seed)
        b.reset(seed=seed)
        assert a.cue == b.cue
        cues.append(a.cue)
    assert set(cues) == {0, 1, 2, 3}


def test_targets_are_the_same_in_every_episode_and_distinct():
    for task, n in itertools.product(TASKS, range(2, 7)):
        pos = target_positions(task, n)
        assert pos.shape == (n, 2) and pos.dtype == np.float32
        dists = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(n) * 9
        assert dists.min() > 0.25
        assert np.abs(pos).max() < 0.9


def test_bad_task_settings_say_what_was_expected():
    with pytest.raises(ValueError, match=r"Unknown variant 'medum'.*short.*extra_long"):
        make_spec("cue_recall", "medum")
    with pytest.raises(ValueError, match=r"Unknown task 'recall'.*cue_recall"):
        make_spec("recall")
    for n in (1, 7):
        with pytest.raises(ValueError, match=rf"n_targets must be an int in 2\.\.6, got {n}"):
            make_spec("count", "short", n)
    with pytest.raises(ValueError, match="too short for 6 flashes"):
        make_spec("count", "short", 6, cue_steps=40)
    world = MemoryWorld(make_spec())
    with pytest.raises(RuntimeError, match="reset"):
        world.step(np.zeros(2))


# ---- gymnasium / LeRobot envs -------------------------------------------------------------


def test_lerobot_make_env_builds_and_steps_the_env():
    import torch
    from lerobot.envs.factory import make_env
    from lerobot.envs.utils import env_to_policy_features, preprocess_observation

    from memlens.tasks.envs import make_env_config

    cfg = make_env_config("memlens_count", variant="short", n_targets=3)
    assert cfg.type == "memlens_count" and cfg.fps == 10 and cfg.episode_length == 63
    assert cfg.task == "reach the target given by the number of flashes"
    feats = env_to_policy_features(cfg)
    assert feats["observation.images.top"].shape == (3, 64, 64)
    assert feats["observation.state"].shape == (4,) and feats["action"].shape == (2,)

    vec = make_env(cfg, n_envs=2, use_async_envs=False)["memlens_count"][0]
    try:
        assert vec.call("task_description") == (cfg.task, cfg.task)  # what lerobot-eval gives the policy
        assert vec.call("task") == ("count", "count")
        assert vec.call("_max_episode_steps") == (63, 63)
        obs, _ = vec.reset(seed=[0, 1])
        batch = preprocess_observation(obs)
        assert batch["observation.images.top"].shape == (2, 3, 64, 64)
        assert batch["observation.images.top"].dtype == torch.float32
        assert float(batch["observation.images.top"].max()) <= 1.0
        assert batch["observation.state"].shape == (2, 4)
        for _ in range(cfg.episode_length):
            obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
            assert reward.shape == (2,) and "is_success" in info
            if (terminated | truncated).all():
                break
        assert (terminated | truncated).all()
    finally:
        vec.close()


def test_the_env_with_a_seed_plays_the_same_episode_as_the_world():
    import gymnasium as gym

    import memlens.tasks.envs  # noqa: F401  (registers the gym ids)

    env = gym.make("memlens/CueRecall-v0", variant="short", n_targets=4)
    spec = make_spec("cue_recall", "short", 4)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        world = MemoryWorld(spec)
        world_obs = world.reset(seed=seed)
        assert env.unwrapped.world.cue == world.cue
        np.testing.assert_array_equal(obs["pixels"]["top"], world_obs["image"])
        np.testing.assert_array_equal(obs["agent_pos"], world_obs["state"])
        np.testing.assert_array_equal(env.render(), world_obs["image"])
    env.close()


def test_unknown_env_names_list_the_known_ones():
    from memlens.tasks.envs import KNOWN_ENVS, make_env_config

    assert set(KNOWN_ENVS) == {"memlens_cue_recall", "memlens_count", "memlens_order"}
    with pytest.raises(ValueError, match=r"'memlens_cue'.*memlens_count.*memlens_cue_recall"):
        make_env_config("memlens_cue")
    with pytest.raises(ValueError, match="Unknown variant"):
        make_env_config("memlens_cue_recall", variant="longer")


# ---- recorded datasets --------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from memlens.tasks.record import record_dataset

    root = tmp_path_factory.mktemp("data") / "cue_short"
    out = record_dataset(root=root, repo_id="local/cue_short", n_episodes=6, seed=0, progress=False)
    assert out == root
    return root


def test_a_recorded_dataset_loads_with_labels_and_task_text(recorded):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/cue_short", root=recorded, video_backend="pyav")
    labels = json.loads((recorded / "meta" / "memlens_labels.json").read_text())
    assert (labels["task"], labels["variant"], labels["seed"]) == ("cue_recall", "short", 0)
    assert ds.num_episodes == 6 and len(labels["episodes"]) == 6
    spec = make_spec("cue_recall", "short", 4)
    for ep in labels["episodes"]:
        world = MemoryWorld(spec)
        world.reset(seed=ep["seed"])
        assert ep["cue"] == world.cue and ep["success"]
        start = ds.meta.episodes["dataset_from_index"][ep["episode_index"]]
        first, go = ds[start], ds[start + spec.go_start]
        assert int(first["label.cue"]) == ep["cue"] and int(first["label.phase"]) == PHASE_CUE
        assert int(go["label.phase"]) == PHASE_GO and int(go["label.delay_steps"]) == 3
        assert int(go["label.n_targets"]) == 4
        assert first["task"] == "reach the target that matches the cue"
    assert len(ds) == sum(ep["length"] for ep in labels["episodes"])


def test_recorded_video_frames_match_the_rendered_ones(recorded):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/cue_short", root=recorded, video_backend="pyav")
    world = MemoryWorld(make_spec("cue_recall", "short", 4))
    obs, expert = world.reset(seed=0), ScriptedExpert()
    for t in range(world.spec.episode_length):
        item = ds[t]
        decoded = item["observation.images.top"].permute(1, 2, 0).numpy() * 255
        assert item["observation.images.top"].shape == (3, 64, 64)
        assert np.abs(decoded - obs["image"]).max() <= 1.001  # lossy in general; ours: RGB->YUV rounding
        np.testing.assert_allclose(item["observation.state"].numpy(), obs["state"])
        action = expert.act(world)
        np.testing.assert_allclose(item["action"].numpy(), action)
        obs, *_ = world.step(action)
        if world.done:
            break


def test_decoded_video_frames_after_the_cue_do_not_reveal_it(tmp_path):
    # medium: go_start = 40 lands on an AV1 keyframe, where lerobot's default encoding let the
    # first go frame show a trace of the next frame's (cue-dependent) move; ours must not
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from memlens.tasks.record import record_dataset

    root = record_dataset(
        root=tmp_path / "m", repo_id="local/m", variant="medium", n_episodes=3, progress=False
    )
    ds = LeRobotDataset("local/m", root=root, video_backend="pyav")
    spec = make_spec("cue_recall", "medium", 4)
    by_cue = {}
    for e in range(ds.num_episodes):
        start = ds.meta.episodes["dataset_from_index"][e]
        after_cue = range(spec.cue_steps, spec.go_start + 1)
        frames = [ds[start + t]["observation.images.top"].numpy() for t in after_cue]
        by_cue.setdefault(int(ds[start]["label.cue"]), np.stack(frames))
    assert len(by_cue) >= 2
    reference = next(iter(by_cue.values()))
    for frames in by_cue.values():
        np.testing.assert_array_equal(frames, reference)


def test_state_history_windows_pad_before_the_episode_start(recorded):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(
        "local/cue_short",
        root=recorded,
        video_backend="pyav",
        delta_timestamps={"observation.state": [-2.0, -1.0, 0.0]},
    )
    plain = LeRobotDataset("local/cue_short", root=recorded, video_backend="pyav")
    assert ds.meta.episodes["length"][0] == 23  # frames 0..22 are episode 0
    for idx, pad in [(5, [True, True, False]), (15, [True, False, False]), (22, [False, False, False]),
                     (30, [True, True, False])]:  # 30: frame 7 of episode 1
        item = ds[idx]
        assert item["observation.state"].shape == (3, 4)
        assert item["observation.state_is_pad"].tolist() == pad
        for k, back in enumerate((20, 10, 0)):
            if not pad[k]:
                expected = plain[idx - back]["observation.state"]
                np.testing.assert_array_equal(item["observation.state"][k], expected)


def test_recording_refuses_a_non_empty_root_and_accepts_an_empty_one(tmp_path):
    from memlens.tasks.record import record_dataset

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="already exists and is not empty.*Choose another path"):
        record_dataset(root=tmp_path / "full", repo_id="local/x", n_episodes=1, progress=False)
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"
    with pytest.raises(ValueError, match="n_targets"):
        record_dataset(root=tmp_path / "bad", repo_id="local/x", n_targets=9, progress=False)
    assert not (tmp_path / "bad").exists()

    (tmp_path / "empty").mkdir()
    root = record_dataset(
        root=tmp_path / "empty",
        repo_id="local/img",
        task="count",
        n_episodes=2,
        use_videos=False,
        progress=False,
    )
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/img", root=root)
    world = MemoryWorld(make_spec("count", "short", 4))
    first = world.reset(seed=0)
    stored = (ds[0]["observation.images.top"].permute(1, 2, 0).numpy() * 255).round()
    np.testing.assert_array_equal(stored, first["image"])  # PNG frames are lossless


def test_order_datasets_label_the_distractor_colour_too(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from memlens.tasks.record import dataset_features, load_labels, record_dataset

    root = record_dataset(root=tmp_path / "o", repo_id="local/o", task="order", n_episodes=4, seed=3,
                          use_videos=False, progress=False)
    ds = LeRobotDataset("local/o", root=root)
    world = MemoryWorld(make_spec("order", "short", 4))
    for ep in load_labels(root)["episodes"]:
        world.reset(seed=ep["seed"])
        assert (ep["cue"], ep["second"]) == (world.cue, world.second) and ep["cue"] != ep["second"]
        start = ds.meta.episodes["dataset_from_index"][ep["episode_index"]]
        assert int(ds[start]["label.second"]) == world.second
    assert "label.second" in ds.features
    assert "label.second" not in dataset_features(make_spec("cue_recall", "short", 4))  # no distractor there


def test_an_env_config_can_override_the_variant_delay_and_lerobot_builds_it():
    from lerobot.envs.factory import make_env

    from memlens.tasks.envs import make_env_config

    cfg = make_env_config("memlens_cue_recall", variant="short", delay_steps=10)
    assert cfg._spec.delay_steps == 10 and cfg.episode_length == 10 + 10 + 30
    vec = make_env(cfg, n_envs=1, use_async_envs=False)["memlens_cue_recall"][0]
    try:
        assert vec.call("_max_episode_steps") == (50,)
        assert vec.call("task_spec")[0].delay_steps == 10
    finally:
        vec.close()
    assert make_env_config("memlens_cue_recall", variant="short")._spec.delay_steps == 3
