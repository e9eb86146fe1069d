"""`intervene_env`: closed-loop rollouts with and without an intervention; success, and whose cue is followed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from memlens.errors import UserError
from memlens.interventions.modes import make
from memlens.interventions.override import MemoryOverride, check_applicable
from memlens.interventions.result import InterventionResult


def _reached(state_xy: np.ndarray, targets: np.ndarray, radius: float) -> int | None:
    d = np.linalg.norm(targets - state_xy, axis=1)
    return int(np.argmin(d)) if d.min() <= radius + 1e-6 else None


class _WorldEpisodes:
    """memlens's own worlds: cues by replaying the seed, the reached target from the final position."""

    def __init__(self, env_cfg):
        from memlens.tasks.worlds import SUCCESS_RADIUS, target_positions

        self.spec = env_cfg._spec
        self.targets, self.radius = target_positions(self.spec.task, self.spec.n_targets), SUCCESS_RADIUS
        self.max_batch = None

    def cues(self, env, seeds) -> list[int]:
        from memlens.tasks.worlds import MemoryWorld

        out = []
        for s in seeds:
            world = MemoryWorld(self.spec)
            world.reset(seed=s)
            out.append(int(world.cue))
        return out

    def rollout(self, loaded, env, seeds, seed) -> list[dict]:
        from memlens.runtime.rollout import episode_length, rollout
        from memlens.tasks.worlds import MAX_SPEED

        data = rollout(loaded, env, seeds, torch_seed=seed)
        out = []
        for b in range(len(seeds)):
            last = episode_length(data["done"][b]) - 1
            # Where the last action took the agent (the world's step: clipped velocity times MAX_SPEED); the
            # rollout keeps the observation before each action, not the terminal one.
            before = data["observation"]["observation.state"][b, last, :2].float().numpy()
            action = np.clip(data["action"][b, last, :2].float().numpy(), -1, 1)
            xy = np.clip(before + MAX_SPEED * action, -1, 1)
            out.append({"success": bool(data["success"][b, : last + 1].any()), "length": last + 1,
                        "reached": _reached(xy, self.targets, self.radius)})
        return out


class _MikasaEpisodes:
    """MIKASA-Robo: cues read from the simulator after a reset, the reached cube watched while it steps (the
    first cube the TCP comes within 5 cm of, `memlens.tasks.mikasa.ReachTracker`). Two simulators at most:
    enough to swap memories between two episodes, and each costs ~8 s and a renderer."""

    max_batch = 2

    def cues(self, env, seeds) -> list[int]:
        from memlens.tasks.mikasa import cue_of_seed

        return [cue_of_seed(env.env.envs[0], s) for s in seeds]

    def rollout(self, loaded, env, seeds, seed) -> list[dict]:
        from contextlib import ExitStack

        from memlens.runtime.rollout import episode_length, rollout
        from memlens.tasks.mikasa import ReachTracker

        with ExitStack() as stack:
            trackers = [stack.enter_context(ReachTracker(sub)) for sub in env.env.envs]
            data = rollout(loaded, env, seeds, torch_seed=seed)
        out = []
        for b in range(len(seeds)):
            last = episode_length(data["done"][b]) - 1
            out.append({"success": bool(data["success"][b, : last + 1].any()), "length": last + 1,
                        "reached": trackers[b].episodes[0]["reached"]})
        return out


def intervene_env(ckpt, env_name: str, *, mode: str, from_update: int = 0, n_episodes: int = 20,
                  variant: str | None = None, batch_size: int = 10, every_update: bool = False, seed: int = 100_000,
                  device: str = "cpu", progress: Callable[[int, int], None] | None = None) -> InterventionResult:
    """Closed-loop rollouts (lerobot's `rollout`, episode i seeded `seed + i`) with and without the
    intervention: success of each, and which target each episode reached (its own cue's, for `swap` its
    donor's, another, or none). `env_name` is a memlens world (variant default `medium`) or a MIKASA-Robo
    task (variants `cue`, `control`; reached = the first cube the TCP came within 5 cm of)."""
    from memlens.runtime.checkpoint import load_policy
    from memlens.runtime.rollout import action_dim, single_env
    from memlens.tasks.catalog import check_variants, env_config, is_mikasa

    if n_episodes < 1:
        raise UserError(f"--n-episodes must be at least 1, got {n_episodes}.")
    variant = variant or ("cue" if is_mikasa(env_name) else "medium")
    check_variants(env_name, [variant])  # before loading: InvalidInputError (a UserError) names them
    loaded = load_policy(ckpt, device=device)
    env_cfg = env_config(env_name, variant, action_dim=action_dim(loaded))  # a MIKASA task: the policy's controller
    intervention = make(mode, num_tokens=loaded.config.num_mem_tokens, seed=seed)
    if intervention.across_episodes and n_episodes < 2:
        raise UserError(f"mode {intervention.name!r} moves memories between episodes: pass --n-episodes 2 or more.")
    check_applicable(loaded.policy, from_update)
    episodes = _MikasaEpisodes() if is_mikasa(env_name) else _WorldEpisodes(env_cfg)
    if episodes.max_batch:
        batch_size = min(batch_size, episodes.max_batch)
    seeds = [seed + i for i in range(n_episodes)]
    env = single_env(loaded, env_cfg, min(max(1, batch_size), n_episodes))
    rows = []
    try:
        cues = episodes.cues(env, seeds)
        batches = intervention.batches(list(range(n_episodes)), max(1, batch_size), cues, seed)
        width = env.env.num_envs
        for group, donors in batches:
            pad = width - len(group)
            batch_seeds = [seeds[i] for i in group] + [seeds[group[-1]]] * pad
            full_donors = None if donors is None else list(donors) + list(range(len(group), width))
            reference = episodes.rollout(loaded, env, batch_seeds, seed)
            with MemoryOverride(loaded.policy, intervention, from_update=from_update, every_update=every_update,
                                donors=full_donors):
                intervened = episodes.rollout(loaded, env, batch_seeds, seed)
            for b, i in enumerate(group):
                donor = None if donors is None or donors[b] == b else group[donors[b]]
                rows.append({
                    "episode": i, "seed": seeds[i], "cue": cues[i],
                    "donor": donor, "donor_cue": None if donor is None else cues[donor],
                    "success_reference": reference[b]["success"], "success_intervened": intervened[b]["success"],
                    "reached_reference": reference[b]["reached"], "reached_intervened": intervened[b]["reached"],
                    "length_reference": reference[b]["length"], "length_intervened": intervened[b]["length"],
                })
            if progress is not None:
                progress(len(rows), n_episodes)
    finally:
        env.close()
    rows.sort(key=lambda r: r["episode"])
    result = InterventionResult(intervention.name, from_update, every_update, "env", str(loaded.path), rows, _env_summary(rows),
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
