"""Tiny `smolvla_rmt` policies and batches built directly (no dataset), for the policy tests."""

import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE

from memlens.models import tiny_smolvla_kwargs
from memlens.policy import SmolVLARMTConfig, SmolVLARMTPolicy

IMG = "observation.images.top"
STRIDE = 10  # frames between memory segments of the tiny config (n_action_steps)
STATE_DIM, ACTION_DIM, LANG_LEN = 4, 2, 6


def features():
    return dict(
        input_features={
            IMG: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 64, 64)),
            OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
        },
        output_features={ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))},
    )


def config_kwargs(**overrides):
    kw = {**tiny_smolvla_kwargs(), **features(), "device": "cpu"}
    kw.update(overrides)
    return kw


def make_policy(seed=0, **overrides) -> SmolVLARMTPolicy:
    torch.manual_seed(seed)
    return SmolVLARMTPolicy(SmolVLARMTConfig(**config_kwargs(**overrides)))


def obs_batch(batch_size=2, seed=0, k=None):
    """Observations as the policy sees them after preprocessing; with `k`, a K axis is added."""
    g = torch.Generator().manual_seed(seed)
    lead = (batch_size,) if k is None else (batch_size, k)
    return {
        IMG: torch.rand(*lead, 3, 64, 64, generator=g),
        OBS_STATE: torch.randn(*lead, STATE_DIM, generator=g),
        OBS_LANGUAGE_TOKENS: torch.randint(10, 40, (batch_size, LANG_LEN), generator=g),
        OBS_LANGUAGE_ATTENTION_MASK: torch.ones(batch_size, LANG_LEN, dtype=torch.bool),
    }


def train_batch(policy, batch_size=2, seed=0):
    """A K-segment training batch shaped like lerobot's dataset output for this config."""
    cfg = policy.config
    k = cfg.n_mem_segments
    batch = obs_batch(batch_size, seed, k=k if k > 1 else None)
    n_actions = len(cfg.action_delta_indices)
    g = torch.Generator().manual_seed(seed + 1)
    batch[ACTION] = torch.randn(batch_size, n_actions, ACTION_DIM, generator=g)
    batch["action_is_pad"] = torch.zeros(batch_size, n_actions, dtype=torch.bool)
    if k > 1:
        batch[f"{OBS_STATE}_is_pad"] = torch.zeros(batch_size, k, dtype=torch.bool)
        batch[f"{IMG}_is_pad"] = torch.zeros(batch_size, k, dtype=torch.bool)
    return batch


def noise_for(policy, batch_size=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = policy.config
    return torch.randn(batch_size, cfg.chunk_size, cfg.max_action_dim, generator=g)
