"""Every env type memlens can evaluate, capture and intervene on, with its variants, in one place.

Two families: memlens's own worlds (``memlens_cue_recall``, ``memlens_order``, ``memlens_count``; variants are
delay presets and ``control``, :mod:`memlens.tasks.envs`) and MIKASA-Robo (:mod:`memlens.tasks.mikasa`;
variants ``cue``, the task itself, and ``control``, its cue-visible twin where one exists, so
``env_config("mikasa_remember_color3", "control")`` is ``mikasa_remember_color3_visible``). Importing this
module does not import MIKASA.
"""

from __future__ import annotations

from contextlib import contextmanager

from memlens.errors import InvalidInputError

MIKASA_VARIANTS = ("cue", "control")


def _mikasa():
    from memlens.tasks import mikasa

    return mikasa


def is_mikasa(name: str) -> bool:
    return name in _mikasa().TASKS


def env_names() -> list[str]:
    """The env types: memlens's worlds, then MIKASA-Robo's tasks (controls are a variant of their task)."""
    from memlens.tasks.envs import KNOWN_ENVS

    return [*KNOWN_ENVS, *(n for n, t in _mikasa().TASKS.items() if not t.control)]


def variants_of(name: str) -> tuple[str, ...]:
    """The variants `name` takes (its first is the default)."""
    check_env(name)
    if is_mikasa(name):
        return MIKASA_VARIANTS if f"{name}_visible" in _mikasa().TASKS else ("cue",)
    from memlens.tasks.worlds import VARIANTS

    return VARIANTS


def check_env(name: str) -> None:
    from memlens.tasks.envs import KNOWN_ENVS

    if name not in KNOWN_ENVS and not is_mikasa(name):
        raise InvalidInputError(f"unknown env {name!r}: expected one of {', '.join(env_names())}. Use one of those.")


def check_variants(name: str, variants) -> list[str]:
    known = variants_of(name)
    bad = [v for v in variants if v not in known]
    if bad:
        raise InvalidInputError(f"unknown variant(s) {bad} of env {name}: it has {', '.join(known)}. Use those.")
    return list(variants)


def env_config(name: str, variant: str | None = None, *, action_dim: int | None = None):
    """The LeRobot env config of `name` in `variant` (None: the default variant). `action_dim`: the size of the
    policy's actions; a MIKASA-Robo task then runs the controller of that size (a policy trained on
    `pd_ee_delta_pos` datasets, 4 values, gets that controller; None: MIKASA's `pd_joint_delta_pos`)."""
    variant = variant or variants_of(name)[0]
    check_variants(name, [variant])
    if is_mikasa(name):
        mikasa = _mikasa()
        mode = {} if action_dim is None else {"control_mode": mikasa.control_mode_of(action_dim)}
        return mikasa.make_env_config(f"{name}_visible" if variant == "control" else name, **mode)
    from memlens.tasks.envs import make_env_config

    return make_env_config(name, variant=variant)


def variant_of_config(env_cfg) -> str:
    """The variant an env config was made for (`env_config`'s inverse)."""
    if is_mikasa(getattr(env_cfg, "type", "")):
        return "control" if _mikasa().TASKS[env_cfg.type].control else "cue"
    return getattr(env_cfg, "variant", "")


# ---- labels of live episodes -------------------------------------------------------------------------------

_CONSTANT_WORLD_LABELS = ("n_targets", "delay_steps")  # settings of a memlens variant, not of an episode


def label_keys(env_cfg) -> list[str]:
    """The per-episode labels a live capture of `env_cfg` stores per frame (besides `phase`)."""
    if is_mikasa(env_cfg.type):
        spec = _mikasa().TASKS[env_cfg.type]
        return ["cue"] if spec.n_targets == 1 else [f"cue_{i}" for i in range(spec.n_targets)]
    from memlens.tasks.worlds import MemoryWorld

    return [k for k in MemoryWorld(env_cfg._spec).labels if k not in _CONSTANT_WORLD_LABELS]


@contextmanager
def watch_episode(env_cfg, sub_env):
    """Around one rollout of `sub_env` (one env of lerobot's vector env): yields `labels_of(seed, length)`, which
    after the rollout gives (the episode's labels, the phase of each of its `length` frames). memlens's worlds
    replay the seed; MIKASA's labels are read from the simulator right after the rollout's reset (lerobot's
    vector env resets an env in the step that ends its episode, so afterwards it holds the next one)."""
    if is_mikasa(env_cfg.type):
        with _mikasa().ReachTracker(sub_env) as tracker:
            def labels_of(seed: int, length: int):
                labels = dict(tracker.episodes[0]["labels"])
                labels.pop("phase")
                labels.pop("touched", None)
                cue, delay = labels["cue_steps"], labels["delay_steps"]
                return labels, [0 if t < cue else 1 if t < cue + delay else 2 for t in range(length)]

            yield labels_of
        return
    from memlens.tasks.worlds import MemoryWorld

    def world_labels(seed: int, length: int):
        spec = sub_env.unwrapped.task_spec
        world = MemoryWorld(env_cfg._spec)
        world.reset(seed=seed)
        return dict(world.labels), [spec.phase(t) for t in range(length)]

    yield world_labels


def task_description(sub_env) -> str:
    return sub_env.get_wrapper_attr("task_description")
