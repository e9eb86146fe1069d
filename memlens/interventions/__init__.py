"""Interventions: does the policy use its memory? Override the memory at one update and see what changes.

    >>> from memlens.interventions import intervene_env, intervene_replay
    >>> res = intervene_env(CKPT, "memlens_cue_recall", mode="swap", from_update=2, n_episodes=40)  # doctest: +SKIP
    >>> res.summary["donor_target_rate"], res.summary["own_target_rate"]                           # doctest: +SKIP
    >>> res = intervene_replay(CKPT, "data/cue_medium", mode="zero", from_update=3)                # doctest: +SKIP

- :mod:`~memlens.interventions.modes`: each intervention a frozen dataclass in `REGISTRY` (`zero`, `reset`,
  `shuffle`, `shuffle_tokens`, `swap`), and how each batches episodes and picks donors;
- :mod:`~memlens.interventions.override`: `MemoryOverride`, which applies one through `policy.memory`;
- :mod:`~memlens.interventions.replay` / :mod:`~memlens.interventions.env`: against the unmodified run, on
  replayed dataset episodes (action change) or closed-loop rollouts (success; whose cue is followed).

Everything else is identical between the reference and the intervened run (same frames or env seeds, same
denoising noise), so actions before the intervention match exactly.
"""

from memlens.interventions.env import intervene_env
from memlens.interventions.modes import MODES, REGISTRY, Intervention, make, register
from memlens.interventions.override import MemoryOverride
from memlens.interventions.replay import intervene_replay
from memlens.interventions.result import InterventionResult

__all__ = ["MODES", "REGISTRY", "Intervention", "InterventionResult", "MemoryOverride", "intervene_env",
           "intervene_replay", "make", "register"]
