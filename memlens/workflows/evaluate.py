"""Baseline against memory: closed-loop success in a simulator, or action error offline on a dataset.

`compare_in_env` runs lerobot's own `eval_policy` for each policy on identical seeded episodes, per
task variant, and adds what the guide's evaluation reports: success rate with a 95% Wilson interval,
average reward, inference time per action (p50/p95, and per chunk computation), peak memory (CUDA
max allocated on a GPU, process peak RSS on a CPU). `compare_on_dataset` replays dataset episodes and
reports the per-episode mean squared error between predicted and recorded actions.
"""

from __future__ import annotations

import math
import resource
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from memlens.errors import UserError
from memlens.policy import memory_tokens
from memlens.runtime.checkpoint import LoadedPolicy, load_policy
from memlens.runtime.quiet import quiet_progress
from memlens.runtime.rollout import ActionTimer, SingleEnv, action_dim, check_policy_matches_env, single_env


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (well behaved at 0% and 100%)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class PolicyResult:
    policy: str
    task: str
    variant: str
    n_episodes: int
    success_rate: float
    success_ci95: tuple[float, float]
    avg_sum_reward: float
    action_ms_p50: float
    action_ms_p95: float
    chunk_ms_mean: float
    peak_memory_mb: float
    memory_kind: str
    successes: list[bool] = field(default_factory=list)


def _peak_memory_mb(device: str) -> tuple[float, str]:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_process_peak_rss"


def check_same_features(a: LoadedPolicy, b: LoadedPolicy) -> None:
    def feats(lp):
        return {k: tuple(v.shape) for k, v in {**lp.config.input_features, **lp.config.output_features}.items()}

    fa, fb = feats(a), feats(b)
    if fa != fb:
        diff = sorted(set(fa.items()) ^ set(fb.items()))
        raise UserError(
            f"the two checkpoints were trained on different features ({a.path}: {fa}; {b.path}: {fb}; differing: "
            f"{diff}). Compare checkpoints trained on the same dataset."
        )


def load_comparable(checkpoints: dict[str, str], *, device: str) -> dict[str, LoadedPolicy]:
    """Load every named checkpoint and check that all were trained on the same features."""
    loaded = {name: load_policy(path, device=device) for name, path in checkpoints.items()}
    first, *others = loaded.values()
    for other in others:
        check_same_features(first, other)
    return loaded


def evaluate_in_env(loaded: LoadedPolicy, env_cfg, env: SingleEnv, *, name: str, n_episodes: int, seed: int,
                    device: str = "cpu") -> PolicyResult:
    """lerobot's `eval_policy` on `n_episodes` seeded episodes of `env` (an open env of `env_cfg`, e.g. from
    `single_env`; its processors are rebuilt for this policy, and the caller closes it), with timing and peak
    memory."""
    from lerobot.envs.factory import make_env_pre_post_processors
    from lerobot.scripts.lerobot_eval import eval_policy

    check_policy_matches_env(loaded, env_cfg)
    env = SingleEnv(env.env, *make_env_pre_post_processors(env_cfg, loaded.config))
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), quiet_progress(), ActionTimer(loaded.policy) as timer:
        info = eval_policy(env.env, loaded.policy, env.pre, env.post, loaded.preprocessor, loaded.postprocessor,
                           n_episodes=n_episodes, start_seed=seed)
    successes = [bool(e["success"]) for e in info["per_episode"]]
    peak, kind = _peak_memory_mb(device)
    calls = np.asarray(timer.calls) if timer.calls else np.asarray([float("nan")])
    return PolicyResult(
        policy=name,
        task=getattr(env_cfg, "task_kind", env_cfg.type),
        variant=getattr(env_cfg, "variant", ""),
        n_episodes=len(successes),
        success_rate=sum(successes) / len(successes),
        success_ci95=wilson_interval(sum(successes), len(successes)),
        avg_sum_reward=float(info["aggregated"]["avg_sum_reward"]),
        action_ms_p50=float(np.percentile(calls, 50)),
        action_ms_p95=float(np.percentile(calls, 95)),
        chunk_ms_mean=float(np.mean(timer.chunk_calls)) if timer.chunk_calls else float("nan"),
        peak_memory_mb=peak,
        memory_kind=kind,
        successes=successes,
    )


def compare_in_env(checkpoints: dict[str, str], env: str, *, variants: list[str] | None = None,
                   n_episodes: int = 50, batch_size: int = 10, seed: int = 100_000, device: str = "cpu",
                   progress=None) -> dict:
    """Evaluate each named checkpoint on every variant of `env` (a memlens world or a MIKASA-Robo task, whose
    variants are `cue` and `control`); returns the JSON-ready results."""
    from memlens.tasks.catalog import check_variants, env_config, is_mikasa, variants_of

    if n_episodes < 1:
        raise UserError(f"--n-episodes must be at least 1, got {n_episodes}.")
    variants = check_variants(env, variants or variants_of(env))  # InvalidInputError (a UserError) names them
    if is_mikasa(env):
        batch_size = 1  # one simulator per process: each one costs ~8 s and a renderer
    loaded = load_comparable(checkpoints, device=device)
    first = next(iter(loaded.values()))  # comparable: the same inputs and action size as the others
    results = []
    for variant in variants:
        env_cfg = env_config(env, variant, action_dim=action_dim(first))
        shared = single_env(first, env_cfg, max(1, min(batch_size, n_episodes)))
        try:  # one env per variant for every policy (a MIKASA simulator takes ~8 s to make)
            for name, lp in loaded.items():
                res = evaluate_in_env(lp, env_cfg, shared, name=name, n_episodes=n_episodes, seed=seed,
                                      device=device)
                res.task, res.variant = env, variant
                results.append(res)
                if progress is not None:
                    progress(res)
        finally:
            shared.close()
    return {
        "env": env,
        "n_episodes": n_episodes,
        "seed": seed,
        "device": device,
        "policies": {
            name: {"path": str(lp.path), "type": lp.config.type,
                   "num_mem_tokens": memory_tokens(lp.config),
                   "n_mem_segments": getattr(lp.config, "n_mem_segments", 1)}
            for name, lp in loaded.items()
        },
        "results": [asdict(r) for r in results],
    }


def compare_on_dataset(checkpoints: dict[str, str], dataset: str, *, root: str | None = None,
                       episodes: list[int] | None = None, device: str = "cpu", progress=None) -> dict:
    """Offline: per-episode MSE between each policy's actions and the dataset's, replayed as deployed."""
    from memlens.runtime.replay import check_episodes, open_matching_dataset, replay_actions

    loaded = load_comparable(checkpoints, device=device)
    ds = open_matching_dataset(next(iter(loaded.values())), dataset, root)
    episodes = check_episodes(ds, episodes)
    results = {}
    for name, lp in loaded.items():
        errors = []
        for ep in episodes:
            run = replay_actions(lp, ds, [ep])[0]
            errors.append(float(((run["predicted"] - run["recorded"]) ** 2).mean()))
            if progress is not None:
                progress(name, ep)
        arr = np.asarray(errors)
        half = 1.96 * arr.std(ddof=1) / math.sqrt(len(arr)) if len(arr) > 1 else float("nan")
        results[name] = {"action_mse_mean": float(arr.mean()), "action_mse_ci95": [float(arr.mean() - half),
                         float(arr.mean() + half)], "per_episode_mse": errors}
    return {"dataset": str(dataset), "episodes": episodes, "results": results}


def write_results(results: dict, output: str | Path) -> Path:
    import json

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(output)
    return output
