"""Probes grouped by episode, with control tasks and memory-free baselines; comparing two checkpoints' stores."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from memlens.analysis import AnalysisInputError, FutureAction, MemoryProbe, compare_checkpoints, probe, probe_data
from memlens.analysis.probes import check_probe_input, control_labels, grouped_folds
from memlens.capture.sites import SITES, label_site
from memlens.store import TraceStore

M, H, U, EVERY = 2, 8, 7, 10


def synthetic_store(path, *, n_episodes=12, n_cues=3, checkpoint="ckpt-a", signal=4.0, seed=0, dataset="data/x",
                    phase=True):
    """Episodes whose memory (token 0) holds the cue at every update, while the observation shows it only
    at update 0 (the cue phase); recorded action dim 0 = cue + noise."""
    rng = np.random.default_rng(seed)
    sites = {n: SITES[n].to_json() for n in ("memory/read", "memory/write", "memory/update_frame", "action/dataset",
                                             "action/predicted", "hidden/observation")}
    for name in ("cue", "phase", "n_targets") if phase else ("cue", "n_targets"):
        sites[f"label/{name}"] = label_site(name).to_json()
    store = TraceStore.create(path, manifest={"provenance": {"checkpoint": checkpoint, "dataset": {"root": dataset}},
                                              "sites": sites})
    t = U * EVERY
    frames = np.arange(t)
    for ep in range(n_episodes):
        cue = ep % n_cues
        write = rng.normal(size=(U, M, H)).astype(np.float32)
        write[:, 0, cue] += signal
        obs = rng.normal(size=(U, H)).astype(np.float32)
        obs[0, cue] += signal
        actions = rng.normal(scale=0.3, size=(t, 2)).astype(np.float32)
        actions[:, 0] += cue
        arrays = {
            "memory/read": np.concatenate([np.zeros((1, M, H), np.float32), write[:-1]]), "memory/write": write,
            "memory/update_frame": (np.arange(U) * EVERY).astype(np.int32),
            "action/dataset": actions, "action/predicted": actions + 0.1 * (ep % 2), "hidden/observation": obs,
            "label/cue": np.full(t, cue, np.int64), "label/n_targets": np.full(t, 4, np.int64),
            "label/phase": np.select([frames < 10, frames < 40], [0, 1], 2).astype(np.int64),
        }
        if not phase:
            del arrays["label/phase"]
        store.write_episode(ep, arrays, {"task": f"task {ep % 2}", "length": t, "labels": {"cue": cue}})
    return TraceStore.open(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("probe") / "s")


def test_grouped_folds_never_put_one_episode_on_both_sides(store):
    data = probe_data(store, "cue")
    for y in (data.y, None):
        folds = grouped_folds(data.groups, y, n_splits=4, seed=3)
        assert len(folds) == 4
        tested = np.concatenate([test for _, test in folds])
        assert sorted(tested.tolist()) == list(range(len(data.y)))  # every row tested exactly once
        for train, test in folds:
            assert not set(data.groups[train]) & set(data.groups[test])
    res = probe(store, "cue", n_splits=4)
    assert len(res.scores) == 4 and res.data.groups.shape == res.predictions.shape


def test_memory_decodes_the_cue_at_every_step_the_observation_only_while_it_is_shown(store):
    mem = probe(store, "cue", n_splits=4)
    assert mem.mean > 0.9 and mem.chance == pytest.approx(1 / 3)
    assert mem.control_mean < 0.6 and mem.selectivity > 0.4
    steps = mem.by_step
    assert steps["update"].tolist() == list(range(U)) and steps["n"].tolist() == [12] * U
    assert steps["since_cue"].tolist() == [-10.0 + EVERY * u for u in range(U)]  # the cue ends at frame 10
    assert (steps["score"] > 0.75).all()
    obs = probe(store, "cue", features="observation", n_splits=4)
    assert obs.by_step["score"][0] > 0.75 and obs.by_step["score"][1:].mean() < 0.6
    initial = probe(store, "cue", features="initial", n_splits=4)  # the same memory in every episode: the floor
    assert initial.mean <= initial.chance + 1e-9
    assert mem.figure is not None and len(mem.figure.data) == 3  # probe, control, chance
    assert {"mean", "control_mean", "selectivity", "by_step"} <= set(mem.to_dict())


def test_after_cue_keeps_only_the_updates_made_once_the_cue_was_gone(store, tmp_path):
    every = probe_data(store, "cue")
    after = probe_data(store, "cue", after_cue=True)
    assert (after.since_cue >= 0).all() and len(after.y) == (every.since_cue >= 0).sum() == 12 * (U - 1)
    assert set(after.update.tolist()) == set(range(1, U))  # update 0 (frame 0) still shows the cue
    res = probe(store, "cue", n_splits=4, after_cue=True)
    assert res.mean > 0.9 and res.by_step["since_cue"].min() >= 0
    obs = probe(store, "cue", features="observation", n_splits=4, after_cue=True)
    assert obs.mean < 0.6  # the observation no longer holds the cue
    bare = synthetic_store(tmp_path / "no_phase", phase=False)
    with pytest.raises(AnalysisInputError, match="after_cue needs a `label/phase`"):
        probe_data(bare, "cue", after_cue=True)


def test_one_probe_per_step_and_token_and_layer_features(store):
    res = probe(store, "cue", features="token:0", by_step="separate", n_splits=3)
    assert res.data.X.shape[1] == H and res.by_step_mode == "separate"
    assert res.by_step["score"].notna().all() and res.by_step["score"].mean() > 0.6
    assert probe(store, "cue", features="token:1", n_splits=3, by_step=False).mean < 0.7  # token 1 holds noise
    with pytest.raises(AnalysisInputError, match="hidden/memory.*--hidden.*offers memory, token:0..1, initial"):
        probe(store, "cue", features="layer:0")
    with pytest.raises(AnalysisInputError, match="there are 2 memory tokens"):
        probe(store, "cue", features="token:5")


def test_control_labels_keep_the_label_distribution_per_episode():
    groups = np.repeat(np.arange(8), 5)
    cue = np.repeat([0, 0, 0, 1, 1, 2, 2, 2], 5)
    ctrl = control_labels(cue, groups, "classification", seed=1)
    assert sorted(ctrl[::5]) == sorted(cue[::5])  # same labels, reassigned across episodes
    assert all(len(set(ctrl[groups == g])) == 1 for g in range(8))  # still one label per episode
    phase = np.tile([0, 0, 1, 2, 2], 8)
    ctrl = control_labels(phase, groups, "classification", seed=1)
    for g in range(8):  # per episode, the classes go through a random permutation
        rows = groups == g
        assert [np.sum(ctrl[rows] == c) for c in range(3)] in ([2, 1, 2], [2, 2, 1], [1, 2, 2])
        assert len(set(zip(phase[rows], ctrl[rows], strict=True))) == 3
    target = np.arange(40, dtype=float)
    ctrl = control_labels(target, groups, "regression", seed=1)
    assert all(not np.array_equal(ctrl[groups == g], target[groups == g]) for g in range(8))  # another episode's
    assert sorted(ctrl) == sorted(target)


def test_future_action_is_regression_or_a_binarised_class(store):
    reg = probe(store, FutureAction(horizon=10, dim=0), n_splits=4)
    assert reg.kind == "regression" and reg.metric == "r2" and reg.mean > 0.1 and reg.selectivity > 0.5
    assert len(reg.data.y) == 12 * (U - 1)  # the last update's target lies past the episode end
    both = probe_data(store, "future_action")
    assert both.y.shape == (12 * (U - 1), 2) and both.kind == "regression"
    cls = probe(store, FutureAction(horizon=0, dim=0, binarize_at=1.5), n_splits=4)
    assert cls.kind == "classification" and set(np.unique(cls.data.y)) == {0, 1}
    live = probe_data(store, FutureAction(source="predicted"))
    assert live.y.shape[1] == 2
    with pytest.raises(AnalysisInputError, match="needs dim="):
        FutureAction(binarize_at=0.0)
    task = probe_data(store, "task")
    assert set(task.y) == {"task 0", "task 1"}


def test_memory_probe_follows_the_scikit_learn_contract():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 40)).astype(np.float32)
    X[:, 0] *= 5  # the informative direction is also the main one, as PCA assumes
    y = (X[:, 0] > 0).astype(int)
    est = MemoryProbe(C=0.5, n_components=8)
    assert est.get_params()["C"] == 0.5 and clone(est).get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        est.predict(X)
    assert est.fit(X, y) is est and est.reducer_.components_.shape == (8, 40)
    assert est.score(X, y) > 0.8 and est.predict_proba(X).shape == (300, 2) and list(est.classes_) == [0, 1]
    reg = MemoryProbe("regression", n_components=None).fit(X, X[:, 1] * 2)
    assert reg.reducer_ is None and reg.score(X, X[:, 1] * 2) > 0.99
    auto = MemoryProbe()
    assert auto._components(100_000, 3840) == 128 and auto._components(2000, 3840) is None


def test_bad_probe_input_gets_a_message_that_says_what_to_do(store, tmp_path):
    with pytest.raises(AnalysisInputError, match=r"label 'colour'.*found \['cue', 'n_targets', 'phase', 'task', 'future_action'\]"):
        probe(store, "colour")
    with pytest.raises(AnalysisInputError, match="single value 4 .*nothing to decode"):
        probe(store, "n_targets")
    with pytest.raises(AnalysisInputError, match="needs at least 5 episodes; found 3"):
        probe(store, "cue", episodes=[0, 1, 2])
    with pytest.raises(AnalysisInputError, match=r"classes \[2\] occur in only one episode.*at least 2 episodes"):
        probe(store, "cue", episodes=[0, 1, 2, 3, 4, 6, 7], n_splits=3)
    with pytest.raises(AnalysisInputError, match="at least 2"):
        check_probe_input(np.array([0, 1]), np.array([0, 1]), "classification", n_splits=1)
    other = synthetic_store(tmp_path / "other", checkpoint="ckpt-b")
    with pytest.raises(AnalysisInputError, match="different checkpoints"):
        probe([store, other], "cue")
    pooled = probe_data([store, other], "cue", allow_mixed=True)
    assert len(np.unique(pooled.groups)) == 24  # episode 0 of each store stays its own group
    with pytest.raises(AnalysisInputError, match="by_step must be"):
        probe(store, "cue", by_step="sometimes")


def test_on_captured_traces_the_cue_probe_on_memory_beats_its_control_during_the_delay(analysis_traces):
    res = probe(analysis_traces, "cue", n_splits=4)
    steps = res.by_step
    delay = steps[(steps["since_cue"] >= 0) & (steps["since_cue"] < 30)]  # medium delay: 30 frames
    assert len(delay) == 3
    assert delay["score"].mean() > delay["control_score"].mean() + 0.2
    assert res.selectivity > 0.1
    obs = probe(analysis_traces, "cue", features="observation", n_splits=4)
    obs_delay = obs.by_step[(obs.by_step["since_cue"] >= 0) & (obs.by_step["since_cue"] < 30)]
    assert delay["score"].mean() > obs_delay["score"].mean()  # nothing on screen tells the cue in the delay
    layer = probe(analysis_traces, "cue", features="layer:0", n_splits=4, control=False, by_step=False)
    assert layer.control_scores is None and np.isnan(layer.control_mean)


def test_compare_reports_both_checkpoints_on_shared_episodes_and_refuses_disjoint_stores(store, tmp_path):
    other = synthetic_store(tmp_path / "b", checkpoint="ckpt-b", seed=1)
    cmp = compare_checkpoints(store, other, names=("baseline", "memory"), episodes=range(8), n_splits=4)
    df = cmp.per_episode
    assert df["episode"].tolist() == list(range(8)) and (df["action_l2"] > 0).all()
    assert cmp.summary["n_episodes"] == 8 and 0 <= cmp.summary["memory_better_rate"] <= 1
    assert cmp.probes["baseline"].mean > 0.9 and "probe_memory" in cmp.summary
    assert cmp.figure is not None
    few = TraceStore.create(tmp_path / "few", manifest=store.manifest)
    few.write_episode(50, {n: store.episode(0).load(n) for n in store.episode(0).names})
    with pytest.raises(AnalysisInputError, match="share no episodes.*--episodes"):
        compare_checkpoints(store, few)
    elsewhere = synthetic_store(tmp_path / "c", n_episodes=5, dataset="data/other")
    with pytest.raises(AnalysisInputError, match="replayed different data"):
        compare_checkpoints(store, elsewhere)
