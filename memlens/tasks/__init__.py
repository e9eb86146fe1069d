"""Small CPU-only tasks where memory is necessary (cue recall, order, counting), with delay variants.

- :mod:`memlens.tasks.worlds`: the pure-numpy world (no gym, no lerobot).
- :mod:`memlens.tasks.expert`: the scripted expert.
- :mod:`memlens.tasks.envs`: gymnasium envs + LeRobot env types ``memlens_cue_recall``, ``memlens_order`` and
  ``memlens_count`` (importing it registers them; it imports lerobot).
- :mod:`memlens.tasks.record`: expert demonstrations as a LeRobotDataset v3.

``record_dataset``, ``make_env_config`` and ``KNOWN_ENVS`` are importable from here too; they
load lerobot on first access only.
"""

from memlens.tasks.expert import ScriptedExpert
from memlens.tasks.worlds import (
    DELAY_PRESETS,
    INSTRUCTIONS,
    TASKS,
    VARIANTS,
    MemoryWorld,
    TaskSpec,
    make_spec,
    render,
    target_positions,
)

_LAZY = {
    "record_dataset": "memlens.tasks.record",
    "load_labels": "memlens.tasks.record",
    "make_env_config": "memlens.tasks.envs",
    "KNOWN_ENVS": "memlens.tasks.envs",
    "MemoryTaskEnv": "memlens.tasks.envs",
}

__all__ = [
    "DELAY_PRESETS",
    "INSTRUCTIONS",
    "TASKS",
    "VARIANTS",
    "MemoryWorld",
    "ScriptedExpert",
    "TaskSpec",
    "make_spec",
    "render",
    "target_positions",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
