"""Everything memlens registers with LeRobot: importing this module is enough."""

import memlens.policy  # noqa: F401  (policy type `smolvla_rmt`)
import memlens.deploy.config_fake_robot  # noqa: F401  (robot type `memlens_fake_robot`, for trying deployment)

try:  # env types (memory tasks, MIKASA-Robo's; the latter import MIKASA only when an env is made)
    import memlens.tasks.envs  # noqa: F401
    import memlens.tasks.mikasa  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - only while the tasks package is absent
    if exc.name not in ("memlens.tasks", "memlens.tasks.envs", "memlens.tasks.mikasa"):
        raise

import sys  # noqa: E402

if "lerobot.rollout.inference.factory" in sys.modules:  # lerobot-rollout: RTC with memory that advances as in training
    from memlens.deploy.rtc import install_in_lerobot_factory

    install_in_lerobot_factory()

if "lerobot.scripts.lerobot_train" in sys.modules:  # lerobot-train: micro-batches (`--policy.batch_chunk`)
    from memlens.workflows.train_step import accept_guide_flag, install as install_train_step

    install_train_step()
    accept_guide_flag()  # the guide's --batch_chunk, before lerobot parses the command line
