"""Interventions: does the policy use its memory? Override the memory at one update and see what changes.

    >>> from memlens.analysis import intervene_env, intervene_replay
    >>> res = intervene_env(CKPT, "memlens_cue_recall", mode="swap", from_update=2, n_episodes=40)  # doctest: +SKIP
    >>> res.summary["donor_target_rate"], res.summary["own_target_rate"]                           # doctest: +SKIP
    >>> res = intervene_replay(CKPT, "data/cue_medium", mode="zero", from_update=3)                # doctest: +SKIP
    >>> res.summary["mean_l2_after"], res.figure.show()                                            # doctest: +SKIP

Modes, applied to the memory the chunk computation at update `from_update` reads (`every_update=True`
applies them again at every later update, a persistent ablation instead of a one-time transplant):

| mode | the memory each episode reads |
|---|---|
| `zero` | zeros |
| `reset` | the learned initial memory (`mem_tokens`), as if the episode had just started |
| `shuffle` | another episode's memory: a random derangement across the episodes replayed together (the batch) |
| `shuffle_tokens` | its own memory with the M token slots in a random order (the same order for every episode) |
| `swap` | its partner's memory: episodes are paired (partners with different labels, e.g. cues, when known) and exchange memories |

After a one-time intervention the policy runs on: the memory it writes from then on is computed from
the overridden one. Everything else is identical between the reference and the intervened run (same
frames or env seeds, same denoising noise), so actions before the intervention match exactly.

With `read_mem_from_cache`, the cached memory history is overridden with the memory (dropped for
`zero`/`reset`, its batch rows permuted for `shuffle`/`swap`).

Implementation: `MemoryOverride` wraps `policy._get_action_chunk` on the instance (as `CaptureHooks` does)
and replaces the committed memory through `policy.memory.set` right before the chunk computation; no lerobot
code is copied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from memlens.errors import UserError

MODES = ("zero", "reset", "shuffle", "shuffle_tokens", "swap")
ACROSS_EPISODES = ("shuffle", "swap")


class MemoryOverride:
    """Context manager that overrides the memory read by chunk computation `from_update` (and later ones
    with `every_update`). `donors[b]`: the batch row whose memory row b receives (`shuffle`, `swap`).
    `applied`: the update indices at which it acted. The update index restarts after `policy.reset()`."""

    def __init__(self, policy, mode: str, *, from_update: int = 0, every_update: bool = False,
                 donors=None, token_order=None):
        if mode not in MODES:
            raise UserError(f"unknown intervention mode {mode!r}; expected one of {', '.join(MODES)}.")
        if from_update < 0:
            raise UserError(f"--from-update must be >= 0 (a memory update index), got {from_update}.")
        from memlens.policy import memory_tokens

        if not memory_tokens(policy.config):
            raise UserError(f"the policy ({policy.config.type}, num_mem_tokens=0) has no memory to intervene on. "
                            "Intervene on a checkpoint trained with memory tokens.")
        if mode in ACROSS_EPISODES and donors is None:
            raise UserError(f"mode {mode!r} needs donors (which batch row gives its memory to which).")
        import torch

        self.policy, self.mode, self.from_update, self.every_update = policy, mode, from_update, every_update
        self.donors = None if donors is None else torch.as_tensor(np.asarray(donors), dtype=torch.long)
        self.token_order = None if token_order is None else torch.as_tensor(np.asarray(token_order), dtype=torch.long)
        self.update = -1
        self.applied: list[int] = []

    def _override(self, mem):
        """`[B, M, H]` -> the memory to read instead."""
        import torch

        if self.mode == "zero":
            return torch.zeros_like(mem)
        if self.mode == "reset":
            return self.policy.model.initial_memory(mem.shape[0]).to(mem)
        if self.mode == "shuffle_tokens":
            order = self.token_order if self.token_order is not None else torch.roll(torch.arange(mem.shape[1]), 1)
            return mem[:, order.to(mem.device)]
        if len(self.donors) != mem.shape[0]:
            raise UserError(f"{len(self.donors)} donors for a batch of {mem.shape[0]} episodes; give one donor per "
                            "episode of the batch.")
        return mem[self.donors.to(mem.device)]

    def _override_history(self):
        memory = self.policy.memory
        history = memory.kv_history
        if history is None:
            return
        if self.mode in ("zero", "reset"):
            memory.set(kv_history=None)
        elif self.mode in ACROSS_EPISODES:
            idx = self.donors
            layers = [(k[idx.to(k.device)], v[idx.to(v.device)]) for k, v in history[0]]
            memory.set(kv_history=(layers, history[1][idx.to(history[1].device)]))

    def _chunk(self, batch, noise=None, **kwargs):
        from lerobot.utils.constants import OBS_LANGUAGE_TOKENS

        policy = self.policy
        self.update = policy.memory.segments  # the update this computation reads (0 right after reset())
        u = self.update
        due = u == self.from_update or (self.every_update and u > self.from_update)
        if due and u not in self.applied:  # once per update, also when several chunks read it
            mem = policy.memory.read(batch[OBS_LANGUAGE_TOKENS].shape[0])
            policy.memory.set(self._override(mem))
            self._override_history()
            self.applied.append(u)
        return self._inner(batch, noise, **kwargs)

    def __enter__(self):
        from memlens.capture.recorder import check_internals

        from memlens.runtime.patching import patched

        check_internals(self.policy)
        self._patch = patched(self.policy, "_get_action_chunk", self._chunk)
        self._inner = self._patch.__enter__()  # what was there: the class method or another wrapper
        return self

    def __exit__(self, *exc):
        self._patch.__exit__(*exc)  # restores exactly what __enter__ found
        return False


# -- pairing -----------------------------------------------------------------------------------------

def swap_pairs(labels, *, seed: int = 0) -> list[tuple[int, int]]:
    """Pairs of indices into `labels`, as many as possible with different labels (None: unknown, paired at
    random): the two most common remaining labels give one item each. An odd item out stays unpaired."""
    rng = np.random.default_rng(seed)
    buckets: dict = {}
    for i in rng.permutation(len(labels)).tolist():
        buckets.setdefault(("?", i) if labels[i] is None else labels[i], []).append(i)
    pairs = []
    while sum(len(b) for b in buckets.values()) >= 2:
        ranked = sorted((b for b in buckets.values() if b), key=len, reverse=True)
        if len(ranked) >= 2:
            pairs.append((ranked[0].pop(), ranked[1].pop()))
        else:
            pairs.append((ranked[0].pop(), ranked[0].pop()))
    return pairs


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of range(n) with no fixed point (n >= 2)."""
    order = rng.permutation(n)
    out = np.empty(n, dtype=int)
    out[order] = np.roll(order, -1)  # a random n-cycle
    return out


def _batches_with_donors(items: list, mode: str, batch_size: int, labels: list, seed: int):
    """Split `items` into batches; returns [(batch items, donors as batch rows)] (donors None when unused)."""
    rng = np.random.default_rng(seed)
    if mode == "swap":
        pairs = swap_pairs(labels, seed=seed)
        paired = {i for p in pairs for i in p}
        units = [list(p) for p in pairs] + [[i] for i in range(len(items)) if i not in paired]
        per_batch = max(2, batch_size - batch_size % 2)
        out, current = [], []
        for unit in units:
            if len(current) + len(unit) > per_batch:
                out.append(current)
                current = []
            current += unit
        if current:
            out.append(current)
        result = []
        for batch in out:
            donors = list(range(len(batch)))
            for a, b in pairs:
                if a in batch and b in batch:
                    donors[batch.index(a)], donors[batch.index(b)] = batch.index(b), batch.index(a)
            result.append(([items[i] for i in batch], donors))
        return result
    chunks = [list(range(s, min(s + batch_size, len(items)))) for s in range(0, len(items), batch_size)]
    if mode == "shuffle":
        if len(chunks) > 1 and len(chunks[-1]) == 1:  # never leave one episode alone in its batch
            chunks[-2].append(chunks.pop()[0])
        if any(len(c) < 2 for c in chunks):
            raise UserError("mode 'shuffle' moves memories between the episodes replayed together: it needs at least "
                            "2 episodes per batch. Pass more episodes, or a batch size of at least 2.")
        return [([items[i] for i in c], derangement(len(c), rng).tolist()) for c in chunks]
    return [([items[i] for i in c], None) for c in chunks]


# -- results -----------------------------------------------------------------------------------------

@dataclass
class InterventionResult:
    """Per-episode rows and a summary of one intervention against the unmodified reference run."""

    mode: str
    from_update: int
    every_update: bool
    source: str  # "dataset" | "env"
    checkpoint: str
    episodes: list[dict]
    summary: dict
    config: dict = field(default_factory=dict)
    figure: object = None  # plotly Figure

    def to_dict(self) -> dict:
        return {"mode": self.mode, "from_update": self.from_update, "every_update": self.every_update,
                "source": self.source, "checkpoint": self.checkpoint, "config": self.config,
                "summary": self.summary, "episodes": self.episodes}

    def save(self, path, **kw):
        from memlens.analysis.figures import save_figure

        return save_figure(self.figure, path, **kw)


def _load(ckpt, device):
    from memlens.replay import LoadedPolicy, load_policy

    if isinstance(ckpt, LoadedPolicy):
        return ckpt
    try:
        return load_policy(ckpt, device=device)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from exc


def _check_policy(loaded, mode, from_update):
    MemoryOverride(loaded.policy, mode, from_update=from_update, donors=[0])  # validates mode, update, memory


# -- dataset replay ----------------------------------------------------------------------------------

def _episode_label(ds, ep: int, name: str = "label.cue"):
    if name not in ds.meta.features:
        return None
    start = int(ds.meta.episodes[ep]["dataset_from_index"])
    return int(np.asarray(ds.hf_dataset[start][name]).reshape(-1)[0])


def intervene_replay(ckpt, dataset, *, mode: str, from_update: int = 0, episodes=None, n_episodes: int | None = None,
                     root=None,
                     batch_episodes: int = 8, every_update: bool = False, seed: int = 0, device: str = "cpu",
                     progress: Callable[[int, int], None] | None = None) -> InterventionResult:
    """Replay dataset episodes with and without the intervention; per frame, the L2 distance between the
    two runs' predicted actions, and each run's mean squared error against the recorded actions (for
    `swap`, also against the donor episode's recorded actions). `episodes` default: the first
    `n_episodes` of the dataset (all without `n_episodes`)."""
    import torch

    from memlens.capture.run import open_matching_dataset, replay_batch

    loaded = _load(ckpt, device)
    _check_policy(loaded, mode, from_update)
    ds = open_matching_dataset(loaded, dataset, root)
    total = ds.meta.total_episodes
    if episodes is None:
        episodes = list(range(total if n_episodes is None else min(n_episodes, total)))
    episodes = [int(e) for e in episodes]
    bad = [e for e in episodes if not 0 <= e < total]
    if bad or not episodes:
        raise UserError(f"episodes {bad or '(none)'} are out of range: the dataset has episodes 0..{total - 1}.")
    if batch_episodes < 1:
        raise UserError(f"--batch-episodes must be at least 1, got {batch_episodes}.")
    labels = [_episode_label(ds, e) for e in episodes]
    n_steps = loaded.config.n_action_steps
    rows, done = [], 0
    token_order = np.random.default_rng(seed).permutation(loaded.config.num_mem_tokens)
    for group, donors in _batches_with_donors(episodes, mode, batch_episodes, labels, seed):
        torch.manual_seed(seed)
        reference = replay_batch(loaded, ds, group, record=False)
        torch.manual_seed(seed)
        with MemoryOverride(loaded.policy, mode, from_update=from_update, every_update=every_update, donors=donors,
                            token_order=token_order) as override:
            intervened = replay_batch(loaded, ds, group, record=False)
        for b, ep in enumerate(group):
            ref, new = reference[b][0], intervened[b][0]
            l2 = np.linalg.norm(new["action/predicted"] - ref["action/predicted"], axis=-1)
            at = min(from_update * n_steps, len(l2))
            donor = None if donors is None or donors[b] == b else group[donors[b]]
            row = {
                "episode": ep, "donor": donor, "length": len(l2), "intervention_frame": at,
                "applied_at_updates": sorted(set(override.applied)),
                "label": labels[episodes.index(ep)],
                "donor_label": None if donor is None else labels[episodes.index(donor)],
                "l2": l2.round(6).tolist(),
                "mean_l2_before": float(l2[:at].mean()) if at else 0.0,
                "mean_l2_after": float(l2[at:].mean()) if at < len(l2) else float("nan"),
                "mse_reference": float(np.mean((ref["action/predicted"] - ref["action/dataset"]) ** 2)),
                "mse_intervened": float(np.mean((new["action/predicted"] - ref["action/dataset"]) ** 2)),
            }
            if donor is not None:
                own, theirs = ref["action/dataset"][at:], intervened[donors[b]][0]["action/dataset"][at:]
                n = min(len(own), len(theirs))
                pred = new["action/predicted"][at : at + n]
                row["mse_after_to_own"] = float(np.mean((pred - own[:n]) ** 2)) if n else float("nan")
                row["mse_after_to_donor"] = float(np.mean((pred - theirs[:n]) ** 2)) if n else float("nan")
            rows.append(row)
            done += 1
        if progress is not None:
            progress(done, len(episodes))
    rows.sort(key=lambda r: episodes.index(r["episode"]))
    result = InterventionResult(mode, from_update, every_update, "dataset", str(loaded.path), rows,
                                _replay_summary(rows), config={"dataset": str(dataset), "seed": seed,
                                                               "batch_episodes": batch_episodes})
    result.figure = replay_figure(result)
    return result


def _replay_summary(rows: list[dict]) -> dict:
    before = [r["mean_l2_before"] for r in rows if r["intervention_frame"]]
    after = [r["mean_l2_after"] for r in rows if np.isfinite(r["mean_l2_after"])]
    out = {
        "n_episodes": len(rows),
        "mean_l2_before": float(np.mean(before)) if before else 0.0,
        "max_l2_before": float(max((max(r["l2"][: r["intervention_frame"]], default=0.0) for r in rows), default=0.0)),
        "mean_l2_after": float(np.mean(after)) if after else float("nan"),
        "mse_reference": float(np.mean([r["mse_reference"] for r in rows])),
        "mse_intervened": float(np.mean([r["mse_intervened"] for r in rows])),
    }
    swapped = [r for r in rows if "mse_after_to_donor" in r and np.isfinite(r["mse_after_to_donor"])
               and (r["label"] is None or r["label"] != r["donor_label"])]  # a same-cue donor cannot flip anything
    if swapped:
        out["n_swapped"] = len(swapped)
        out["closer_to_donor_rate"] = float(np.mean([r["mse_after_to_donor"] < r["mse_after_to_own"] for r in swapped]))
    return out


def replay_figure(result: InterventionResult):
    """Mean (over episodes) L2 distance between intervened and reference actions at every frame."""
    import plotly.graph_objects as go

    length = max(r["length"] for r in result.episodes)
    l2 = np.full((len(result.episodes), length), np.nan)
    for i, r in enumerate(result.episodes):
        l2[i, : r["length"]] = r["l2"]
    fig = go.Figure()
    fig.add_scatter(x=np.arange(length), y=np.nanmean(l2, axis=0), mode="lines", name="mean over episodes")
    fig.add_scatter(x=np.arange(length), y=np.nanmax(l2, axis=0), mode="lines", name="max", line={"dash": "dot"})
    at = result.episodes[0]["intervention_frame"]
    fig.add_vline(x=at, line={"color": "black", "width": 1},
                  annotation_text=f"{result.mode} at update {result.from_update}")
    fig.update_layout(title=f"memory {result.mode}{' (every update)' if result.every_update else ''}: change in "
                            f"predicted actions ({result.summary['n_episodes']} episodes)",
                      xaxis_title="frame", yaxis_title="L2(intervened - reference action)", template="plotly_white")
    return fig


# -- live rollouts -----------------------------------------------------------------------------------

def _reached(state_xy: np.ndarray, targets: np.ndarray, radius: float) -> int | None:
    d = np.linalg.norm(targets - state_xy, axis=1)
    return int(np.argmin(d)) if d.min() <= radius + 1e-6 else None


def rollout_data(loaded, env, env_pre, env_post, seeds, seed: int | None) -> dict:
    """lerobot's `rollout` of one batch (row b seeded `seeds[b]`; torch seeded `seed` first unless None) with
    its observations: per-frame `action`, `observation`, `success`, `done`, ... [batch, frame, ...]."""
    import torch

    import lerobot.scripts.lerobot_eval as lerobot_eval

    if seed is not None:
        torch.manual_seed(seed)
    # lerobot's rollout draws a progress bar per rollout unless inside_slurm(); memlens shows its own.
    inside_slurm = lerobot_eval.inside_slurm
    lerobot_eval.inside_slurm = lambda: True
    try:
        return lerobot_eval.rollout(env, loaded.policy, env_pre, env_post, loaded.preprocessor,
                                    loaded.postprocessor, seeds=list(seeds), return_observations=True)
    finally:
        lerobot_eval.inside_slurm = inside_slurm


def _rollout(loaded, env, env_pre, env_post, seeds, seed):
    import torch

    from memlens.tasks.worlds import MAX_SPEED

    data = rollout_data(loaded, env, env_pre, env_post, seeds, seed)
    done = data["done"].to(int)
    out = []
    for b in range(len(seeds)):
        last = int(torch.argmax(done[b])) if done[b].any() else done.shape[1] - 1
        # Where the last action took the agent (the world's step: clipped velocity times MAX_SPEED); the
        # rollout keeps the observation before each action, not the terminal one.
        before = data["observation"]["observation.state"][b, last, :2].float().numpy()
        action = np.clip(data["action"][b, last, :2].float().numpy(), -1, 1)
        xy = np.clip(before + MAX_SPEED * action, -1, 1)
        out.append({"success": bool(data["success"][b, : last + 1].any()), "length": last + 1, "final_xy": xy})
    return out


def intervene_env(ckpt, env_name: str, *, mode: str, from_update: int = 0, n_episodes: int = 20,
                  variant: str = "medium", batch_size: int = 10, every_update: bool = False, seed: int = 100_000,
                  device: str = "cpu", progress: Callable[[int, int], None] | None = None) -> InterventionResult:
    """Closed-loop rollouts (lerobot's `rollout`, episode i seeded `seed + i`) with and without the
    intervention: success of each, and which target each episode reached (its own cue's, for `swap` its
    donor's, another, or none)."""
    from lerobot.envs.factory import make_env, make_env_pre_post_processors

    from memlens.evaluate import check_policy_matches_env
    from memlens.tasks.envs import KNOWN_ENVS, make_env_config
    from memlens.tasks.worlds import SUCCESS_RADIUS, VARIANTS, MemoryWorld, target_positions

    if n_episodes < 1:
        raise UserError(f"--n-episodes must be at least 1, got {n_episodes}.")
    if env_name not in KNOWN_ENVS:
        raise UserError(f"unknown env {env_name!r}; known envs: {', '.join(sorted(KNOWN_ENVS))}.")
    if variant not in VARIANTS:
        raise UserError(f"unknown variant {variant!r}; known variants: {', '.join(VARIANTS)}.")
    if mode == "swap" and n_episodes < 2:
        raise UserError("mode 'swap' exchanges memories between pairs of episodes: pass --n-episodes 2 or more.")
    loaded = _load(ckpt, device)
    _check_policy(loaded, mode, from_update)
    env_cfg = make_env_config(env_name, variant=variant)
    check_policy_matches_env(loaded, env_cfg)
    spec = env_cfg._spec
    targets = target_positions(spec.task, spec.n_targets)
    seeds = [seed + i for i in range(n_episodes)]
    cues = []
    for s in seeds:
        world = MemoryWorld(spec)
        world.reset(seed=s)
        cues.append(int(world.cue))
    batches = _batches_with_donors(list(range(n_episodes)), mode, max(1, batch_size), cues, seed)
    width = max(len(b) for b, _ in batches)
    envs = make_env(env_cfg, n_envs=width, use_async_envs=False)
    env = next(iter(next(iter(envs.values())).values()))
    env_pre, env_post = make_env_pre_post_processors(env_cfg, loaded.config)
    token_order = np.random.default_rng(seed).permutation(loaded.config.num_mem_tokens)
    rows = []
    try:
        for group, donors in batches:
            pad = width - len(group)
            batch_seeds = [seeds[i] for i in group] + [seeds[group[-1]]] * pad
            full_donors = None if donors is None else list(donors) + list(range(len(group), width))
            reference = _rollout(loaded, env, env_pre, env_post, batch_seeds, seed)
            with MemoryOverride(loaded.policy, mode, from_update=from_update, every_update=every_update,
                                donors=full_donors, token_order=token_order):
                intervened = _rollout(loaded, env, env_pre, env_post, batch_seeds, seed)
            for b, i in enumerate(group):
                donor = None if donors is None or donors[b] == b else group[donors[b]]
                ref_hit = _reached(reference[b]["final_xy"], targets, SUCCESS_RADIUS)
                new_hit = _reached(intervened[b]["final_xy"], targets, SUCCESS_RADIUS)
                rows.append({
                    "episode": i, "seed": seeds[i], "cue": cues[i],
                    "donor": donor, "donor_cue": None if donor is None else cues[donor],
                    "success_reference": reference[b]["success"], "success_intervened": intervened[b]["success"],
                    "reached_reference": ref_hit, "reached_intervened": new_hit,
                    "length_reference": reference[b]["length"], "length_intervened": intervened[b]["length"],
                })
            if progress is not None:
                progress(len(rows), n_episodes)
    finally:
        env.close()
    rows.sort(key=lambda r: r["episode"])
    result = InterventionResult(mode, from_update, every_update, "env", str(loaded.path), rows, _env_summary(rows),
                                config={"env": env_name, "variant": variant, "seed": seed, "batch_size": batch_size})
    result.figure = env_figure(result)
    return result


def _outcome(target, own, donor) -> str:
    if target is None:
        return "none"
    if target == own:
        return "own"
    return "donor" if donor is not None and target == donor else "other"


def _env_summary(rows: list[dict]) -> dict:
    n = len(rows)
    out = {
        "n_episodes": n,
        "success_reference": float(np.mean([r["success_reference"] for r in rows])),
        "success_intervened": float(np.mean([r["success_intervened"] for r in rows])),
    }
    out["success_change"] = out["success_intervened"] - out["success_reference"]
    swapped = [r for r in rows if r["donor_cue"] is not None and r["donor_cue"] != r["cue"]]
    if swapped:
        for run in ("reference", "intervened"):
            kinds = [_outcome(r[f"reached_{run}"], r["cue"], r["donor_cue"]) for r in swapped]
            for k in ("own", "donor", "other", "none"):
                out[f"{k}_target_rate_{run}"] = float(np.mean([x == k for x in kinds]))
        out["n_swapped"] = len(swapped)
        out["donor_target_rate"] = out["donor_target_rate_intervened"]
        out["own_target_rate"] = out["own_target_rate_intervened"]
    return out


def env_figure(result: InterventionResult):
    """Outcomes of the reference and intervened rollouts: success, or for swap which target was reached."""
    import plotly.graph_objects as go

    s = result.summary
    fig = go.Figure()
    if "n_swapped" in s:
        kinds = ["own", "donor", "other", "none"]
        names = ["own cue's target", "donor's cue target", "another target", "no target"]
        for run in ("reference", "intervened"):
            fig.add_bar(x=names, y=[s[f"{k}_target_rate_{run}"] for k in kinds], name=run)
        title = f"memory swap at update {result.from_update}: target reached ({s['n_swapped']} swapped episodes)"
    else:
        fig.add_bar(x=["reference", f"{result.mode} at update {result.from_update}"],
                    y=[s["success_reference"], s["success_intervened"]])
        title = f"memory {result.mode}: success rate ({s['n_episodes']} episodes)"
    fig.update_layout(title=title, yaxis_title="fraction of episodes", yaxis_range=[0, 1], barmode="group",
                      template="plotly_white")
    return fig
