"""Everything memlens registers with LeRobot: importing this module is enough."""

import memlens.policy  # noqa: F401  (policy type `smolvla_rmt`)

try:  # env types (memory tasks); optional so that the policy works on its own
    import memlens.tasks.envs  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - only while the tasks package is absent
    if exc.name not in ("memlens.tasks", "memlens.tasks.envs"):
        raise
