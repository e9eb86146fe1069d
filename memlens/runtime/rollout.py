"""Roll a loaded policy out in a simulator, quietly, through lerobot's own `rollout` and `eval_policy`.

One env per call site (`single_env`: lerobot's `make_env` with its pre/post-processors, checked against
the policy's features), one rollout (`rollout`: observations kept, seeded per row), and `ActionTimer`,
which times every `select_action` and, apart, those that computed a chunk.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass

import torch

from memlens.errors import UserError
from memlens.runtime.checkpoint import LoadedPolicy
from memlens.runtime.patching import patched
from memlens.runtime.quiet import quiet_progress


def check_policy_matches_env(loaded: LoadedPolicy, env_cfg) -> None:
    """Raise UserError naming the keys when the policy's inputs/outputs do not match the env's."""
    from lerobot.envs.utils import env_to_policy_features

    env_features = env_to_policy_features(env_cfg)
    problems = []
    for key, feat in {**loaded.config.input_features, **loaded.config.output_features}.items():
        if key.startswith("observation.images.empty"):
            continue
        if key not in env_features:
            problems.append(f"{key} (policy expects {tuple(feat.shape)}, the env has no such key)")
        elif tuple(env_features[key].shape) != tuple(feat.shape):
            problems.append(f"{key} (policy expects {tuple(feat.shape)}, the env gives {tuple(env_features[key].shape)})")
    if problems:
        raise UserError(
            f"checkpoint {loaded.path} does not match env {env_cfg.type}: " + "; ".join(problems)
            + f". The env provides {sorted(env_features)}. Use a checkpoint trained on this env's data."
        )


def action_dim(loaded: LoadedPolicy) -> int | None:
    """The number of action values the policy outputs (None if it declares no action feature)."""
    feat = loaded.config.output_features.get("action")
    return int(feat.shape[0]) if feat is not None else None


@dataclass
class SingleEnv:
    """A lerobot vector env of `n` copies with the env-side processors for one policy."""

    env: object
    pre: object
    post: object

    def close(self) -> None:
        self.env.close()


def single_env(loaded: LoadedPolicy, env_cfg, n: int) -> SingleEnv:
    """lerobot's `make_env` (synchronous, `n` envs) for `env_cfg`, checked against the policy first."""
    from lerobot.envs.factory import make_env, make_env_pre_post_processors

    check_policy_matches_env(loaded, env_cfg)
    envs = make_env(env_cfg, n_envs=max(1, n), use_async_envs=False)
    env = next(iter(next(iter(envs.values())).values()))
    pre, post = make_env_pre_post_processors(env_cfg, loaded.config)
    return SingleEnv(env, pre, post)


@torch.no_grad()
def rollout(loaded: LoadedPolicy, env: SingleEnv, seeds, *, torch_seed: int | None = None) -> dict:
    """lerobot's `rollout` of one batch (row b seeded `seeds[b]`; torch seeded `torch_seed` first unless None)
    with its observations: per-frame `action`, `observation`, `success`, `done`, ... `[batch, frame, ...]`."""
    import lerobot.scripts.lerobot_eval as lerobot_eval

    if torch_seed is not None:
        torch.manual_seed(torch_seed)
    with quiet_progress():
        return lerobot_eval.rollout(env.env, loaded.policy, env.pre, env.post, loaded.preprocessor,
                                    loaded.postprocessor, seeds=list(seeds), return_observations=True)


def episode_length(done_row: torch.Tensor) -> int:
    """Frames of one rollout row: up to and including its first `done`, else all of them."""
    return int(torch.argmax(done_row.to(int))) + 1 if done_row.any() else int(done_row.shape[0])


class ActionTimer:
    """Times every `select_action` call of a policy (ms), and apart those that computed a chunk (those
    during which the model's `sample_actions` ran). Synchronises CUDA around each call on a GPU."""

    def __init__(self, policy):
        self.policy, self.calls, self.chunk_calls = policy, [], []
        self._computing = False

    def __enter__(self):
        def sample_actions(*args, **kwargs):
            self._computing = True
            return inner_sample(*args, **kwargs)

        def select_action(*args, **kwargs):
            self._computing = False
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = inner_select(*args, **kwargs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            ms = (time.perf_counter() - start) * 1000
            self.calls.append(ms)
            if self._computing:
                self.chunk_calls.append(ms)
            return out

        self._stack = ExitStack()
        inner_sample = self._stack.enter_context(patched(self.policy.model, "sample_actions", sample_actions))
        inner_select = self._stack.enter_context(patched(self.policy, "select_action", select_action))
        return self

    def __exit__(self, *exc):
        self._stack.close()  # back to what was there
        return False
