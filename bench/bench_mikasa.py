#!/usr/bin/env python
"""MIKASA-Robo in memlens: expert success per task, per-step cost, recording throughput (docs/mikasa.md).

Modes (one thread; the machine's other load changes the timings):

- ``success``: the scripted expert (memlens.tasks.mikasa_expert) on ``--episodes`` seeded episodes per env
  type (seeds 0, 1, ...), stopping on success or at the task's step limit. ``--state-only`` runs the same
  simulator with ``obs_mode="state"`` (no cameras rendered, same physics: the expert reads privileged state
  either way, and ``--compare`` checks that both modes give the same episodes), which is ~30x faster.
- ``cost``: per-step wall time over ``--steps`` expert steps of one env type: the raw ManiSkill step with
  both cameras, the adapted env's step (raw + conversion), the expert's action, and a reset; ``gym.make``.
- ``record``: ``record_mikasa_dataset`` of ``--episodes`` episodes into a temporary folder, episodes per minute
  (env creation excluded, printed apart).
- ``policy``: a trained checkpoint (``--ckpt``) through lerobot's own ``rollout`` on seeded episodes (seeds
  ``--seed``, ``--seed``+1, ...; ``--n-action-steps`` overrides the checkpoint's), with what tells a failure of
  manipulation from one of choice, read from the simulator after every step: the closest the TCP came to the
  target cube and to any other cube over the cubes' phase (``reach`` = within 5 cm, MIKASA's touch radius),
  which cube it ended nearest to, and per episode the time in the env, in the policy (the rest) and in total.

Usage:

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_mikasa.py success --state-only --episodes 100
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_mikasa.py success --envs mikasa_remember_color3 --episodes 20
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_mikasa.py success --state-only --control-mode pd_ee_delta_pos
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_mikasa.py cost --envs mikasa_remember_color3 --steps 50
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_mikasa.py record --envs mikasa_remember_color3 --episodes 10
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_mikasa.py policy --ckpt RUN/checkpoints/last/pretrained_model \
        --envs mikasa_remember_color3_visible --episodes 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


class _Raw:
    """The stand-in the expert needs (``.unwrapped``) around a raw ManiSkill env."""

    def __init__(self, env):
        self.env = env
        self.unwrapped = env.unwrapped


def _raw_env(name: str, obs_mode: str, control_mode: str):
    import gymnasium as gym

    import memlens.tasks.mikasa_sim  # noqa: F401
    from memlens.tasks.mikasa import SIM_KWARGS, TASKS

    return gym.make(TASKS[name].gym_id, **{**SIM_KWARGS, "obs_mode": obs_mode, "control_mode": control_mode})


def _episode(env, expert, seed: int, limit: int) -> tuple[bool, int]:
    env.reset(seed=seed)
    handle = _Raw(env)
    expert.reset(handle)
    for t in range(limit):
        *_, info = env.step(expert(handle))
        if bool(info["success"][0]):
            return True, t + 1
    return False, limit


def success(args) -> None:
    from memlens.tasks.mikasa import TASKS
    from memlens.tasks.mikasa_expert import MikasaExpert

    for name in args.envs:
        limit = TASKS[name].episode_length
        modes = ["state", "rgb"] if args.compare else ["state" if args.state_only else "rgb"]
        results = {}
        for mode in modes:
            env = _raw_env(name, mode, args.control_mode)
            expert = MikasaExpert()
            t = time.perf_counter()
            results[mode] = [_episode(env, expert, seed, limit) for seed in range(args.episodes)]
            elapsed = time.perf_counter() - t
            env.close()
            ok = [s for s, _ in results[mode]]
            lengths = [n for s, n in results[mode] if s]
            failed = [seed for seed, s in enumerate(ok) if not s]
            print(f"{name:32s} obs_mode={mode:5s} success {sum(ok)}/{len(ok)} ({100 * np.mean(ok):.1f}%), steps to "
                  f"success median {np.median(lengths) if lengths else float('nan'):.0f} max "
                  f"{max(lengths) if lengths else 0} of {limit}; failed seeds {failed}; {elapsed:.0f} s", flush=True)
        if args.compare:
            same = results["state"] == results["rgb"]
            print(f"{name:32s} state and rgb episodes identical: {same}", flush=True)


def cost(args) -> None:
    from memlens.tasks.mikasa import make_env_config
    from memlens.tasks.mikasa_expert import MikasaExpert

    for name in args.envs:
        t = time.perf_counter()
        env = make_env_config(name, control_mode=args.control_mode).make()
        made = time.perf_counter() - t
        expert = MikasaExpert()
        raw, adapted, act, resets = [], [], [], []
        obs, _ = env.reset(seed=0)
        expert.reset(env)
        for i in range(args.steps):
            t0 = time.perf_counter()
            action = expert(env, obs)
            t1 = time.perf_counter()
            obs, _, terminated, truncated, _ = env.step(action)
            t2 = time.perf_counter()
            act.append(t1 - t0)
            adapted.append(t2 - t1)
            if terminated or truncated:
                t3 = time.perf_counter()
                obs, _ = env.reset(seed=i + 1)
                expert.reset(env)
                resets.append(time.perf_counter() - t3)
        inner = env.env  # the ManiSkill env under the adapter
        inner.reset(seed=0)
        for _ in range(args.steps):
            t0 = time.perf_counter()
            inner.step(np.zeros(env.action_space.shape[-1], np.float32))
            raw.append(time.perf_counter() - t0)
        env.close()
        ms = lambda xs: f"{1000 * np.median(xs):.0f} ms (p95 {1000 * np.percentile(xs, 95):.0f})"  # noqa: E731
        print(f"{name}: make {made:.1f} s (imports included); per step: ManiSkill with 2 cameras {ms(raw)}, "
              f"adapted env {ms(adapted)}, expert {ms(act)}, env+expert {1000 * (np.median(adapted) + np.median(act)):.0f} ms; "
              f"reset {ms(resets) if resets else 'n/a'}", flush=True)


def record(args) -> None:
    from memlens.tasks.mikasa import make_env_config, record_mikasa_dataset

    for name in args.envs:
        t = time.perf_counter()
        env = make_env_config(name, control_mode=args.control_mode).make()
        made = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            root = record_mikasa_dataset(name, root=Path(tmp) / "ds", n_episodes=args.episodes, env=env, progress=False,
                                         control_mode=args.control_mode)
            elapsed = time.perf_counter() - t
            import json

            meta = json.loads((root / "meta" / "memlens_labels.json").read_text())
            frames = sum(e["length"] for e in meta["episodes"])
            ok = sum(e["success"] for e in meta["episodes"])
        env.close()
        print(f"{name}: {args.episodes} episodes ({frames} frames, {ok} successful) in {elapsed:.0f} s: "
              f"{60 * args.episodes / elapsed:.1f} episodes/min, {1000 * elapsed / frames:.0f} ms/frame "
              f"(env made in {made:.1f} s, not counted)", flush=True)


REACH = 0.05  # metres: MIKASA's RememberColor counts a touch with the TCP within 5 cm of the target


def policy(args) -> None:
    import json

    from memlens.runtime.checkpoint import load_policy
    from memlens.runtime.patching import patched
    from memlens.runtime.rollout import action_dim, rollout, single_env
    from memlens.tasks.mikasa import control_mode_of, make_env_config
    from memlens.tasks.mikasa_expert import PHASE_GO, phase, targets

    loaded = load_policy(args.ckpt)
    if args.n_action_steps:
        loaded.config.n_action_steps = args.n_action_steps
    for name in args.envs:
        t = time.perf_counter()
        env = single_env(loaded, make_env_config(name, control_mode=control_mode_of(action_dim(loaded))), 1)
        made = time.perf_counter() - t
        sub = env.env.envs[0]  # the LeRobotGymEnv under lerobot's vector env
        rows = []
        for seed in range(args.seed, args.seed + args.episodes):
            record = {"env_s": 0.0, "d_target": np.inf, "d_other": np.inf}

            def step(action, inner=sub.step):
                t0 = time.perf_counter()
                out = inner(action)
                record["env_s"] += time.perf_counter() - t0
                u = sub.env.unwrapped
                if phase(sub.env) == PHASE_GO:
                    tcp = u.agent.tcp.pose.p[0].cpu().numpy()
                    goal = targets(sub.env)[0]
                    for key, cube in u.cubes.items():
                        d = float(np.linalg.norm(cube.pose.p[0].cpu().numpy() - tcp))
                        field = "d_target" if key == goal else "d_other"
                        record[field] = min(record[field], d)
                return out

            t0 = time.perf_counter()
            with patched(sub, "step", step):
                result = rollout(loaded, env, [seed], torch_seed=seed)
            total = time.perf_counter() - t0
            frames = int(result["done"].shape[1])
            rows.append({"seed": seed, "success": bool(result["success"][0].any()), "frames": frames,
                         "reach_target": record["d_target"] < REACH, "reach_other": record["d_other"] < REACH,
                         "d_target": record["d_target"], "d_other": record["d_other"],
                         "env_s": record["env_s"], "policy_s": total - record["env_s"], "total_s": total})
        env.close()
        n = len(rows)
        mean = lambda k: float(np.mean([r[k] for r in rows]))  # noqa: E731
        summary = {"env": name, "ckpt": str(args.ckpt), "n_action_steps": loaded.config.n_action_steps,
                   "episodes": n, "success": sum(r["success"] for r in rows),
                   "reached_target": sum(r["reach_target"] for r in rows),
                   "reached_other_only": sum(r["reach_other"] and not r["reach_target"] for r in rows),
                   "median_d_target_cm": 100 * float(np.median([r["d_target"] for r in rows])),
                   "median_d_other_cm": 100 * float(np.median([r["d_other"] for r in rows])),
                   "env_s_per_episode": mean("env_s"), "policy_s_per_episode": mean("policy_s"),
                   "total_s_per_episode": mean("total_s"), "frames_per_episode": mean("frames"),
                   "episodes_per_min": 60 * n / sum(r["total_s"] for r in rows), "env_made_s": made}
        print(f"{name} n_action_steps={summary['n_action_steps']}: success {summary['success']}/{n}, TCP within 5 cm "
              f"of the target {summary['reached_target']}/{n}, of another cube only {summary['reached_other_only']}/{n}; "
              f"closest to target median {summary['median_d_target_cm']:.1f} cm, to another cube "
              f"{summary['median_d_other_cm']:.1f} cm; per episode env {summary['env_s_per_episode']:.2f} s + policy "
              f"{summary['policy_s_per_episode']:.2f} s = {summary['total_s_per_episode']:.2f} s "
              f"({summary['frames_per_episode']:.1f} frames; {summary['episodes_per_min']:.1f} episodes/min; env made in "
              f"{made:.1f} s)", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({**summary, "episodes_detail": rows}) + "\n")


def main() -> None:
    from memlens.tasks.mikasa import CONTROL_MODES, TASKS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["success", "cost", "record", "policy"])
    parser.add_argument("--envs", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--state-only", action="store_true")
    parser.add_argument("--control-mode", default="pd_joint_delta_pos", choices=list(CONTROL_MODES),
                        help="success, cost, record: the action space (policy: the checkpoint's action size picks it)")
    parser.add_argument("--compare", action="store_true", help="success: run state and rgb, check they agree")
    parser.add_argument("--ckpt", help="policy: the checkpoint to roll out")
    parser.add_argument("--seed", type=int, default=100_000, help="policy: first episode seed")
    parser.add_argument("--n-action-steps", type=int, help="policy: override the checkpoint's n_action_steps")
    parser.add_argument("--json", help="policy: append the summary and per-episode rows to this JSON-lines file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"success": success, "cost": cost, "record": record, "policy": policy}[args.mode](args)


if __name__ == "__main__":
    main()
