"""MIKASA-Robo's simulator side: imports MIKASA (registering its ``*-VLA-v0`` ids) and adds the cue-visible
control tasks. Importing this module needs MIKASA installed (``make setup-mikasa``); :mod:`memlens.tasks.mikasa`
(the env configs) does not import it until an env is made.

Shims: none are needed on the path memlens uses (1.0.0's VLA tasks made with ``gym.make`` on mani-skill
3.0.1, sapien 3.0.3, numpy 2, gymnasium 1.4). The two known elsewhere do not apply: nothing these tasks
import reaches ``mani_skill.agents.robots.xmate3`` (which 3.0.1 dropped; only the ShellGame tasks compare a
robot name with ``"xmate3_robotiq"``), and MIKASA's debug wrappers, which need attributes forwarded through
``gym.Wrapper`` (``'TimeLimitWrapper' object has no attribute 'color_dict'``), are not used: they add the
answer-carrying ``task_cue``/``oracle_info`` keys and draw text onto the frames.

Control tasks (``*CueVisible-VLA-v0``): the same task with a flat tile of the target's colour lying on
the table in front of the cubes from the first frame to the last. It is visual only (no collision, no mass),
is added after MIKASA's episode initialisation and draws no random numbers, so a seed gives the same cubes,
cue and delays as in the original task; everything but the images (success, phases, episode length) is the
original's. A policy that fails here fails at manipulation, not at memory.
"""

from __future__ import annotations

try:
    import mani_skill  # noqa: F401
    import mikasa_robo_suite.vla.memory_envs  # noqa: F401  (registers the *-VLA-v0 ids)
except ImportError as exc:  # pragma: no cover - depends on the machine
    raise ImportError(
        f"MIKASA-Robo is not installed ({exc}). Install it into memlens's .venv with `make setup-mikasa` "
        f"(scripts/setup_mikasa.sh: Mesa 25's Vulkan CPU renderer, mani-skill 3.0.1, sapien 3.0.3 and "
        f"mikasa-robo-suite 1.0.0), then retry."
    ) from exc

import sapien
import torch
from mani_skill.utils.registration import REGISTERED_ENVS, register_env
from mani_skill.utils.structs.pose import Pose
from mikasa_robo_suite.vla.memory_envs.remember_color_vla import (
    RememberColor3VLAEnv,
    RememberColor5VLAEnv,
    RememberColor9VLAEnv,
)

CUE_TILE_HALF_SIZE = (0.03, 0.06, 0.001)  # metres: 6 x 12 cm, 2 mm thick
CUE_TILE_POSITION = (0.13, 0.0, 0.001)  # in front of the cubes (x ~ +-0.05), in both cameras' view
HIDDEN_Z = 1000.0  # where the tiles of the other colours wait (visual only, so nothing falls)


class _CueVisibleMixin:
    """Keeps a tile of the target cube's colour on the table for the whole episode."""

    def _load_scene(self, options: dict):
        super()._load_scene(options)
        self.cue_tiles = {}
        for key, color in self.color_dict.items():
            builder = self.scene.create_actor_builder()
            builder.add_box_visual(half_size=CUE_TILE_HALF_SIZE,
                                   material=sapien.render.RenderMaterial(base_color=color))
            builder.initial_pose = sapien.Pose(p=[0.0, 0.0, HIDDEN_Z])
            self.cue_tiles[key] = builder.build_kinematic(name=f"cue_tile_{key}")

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict):
        super()._initialize_episode(env_idx, options)
        with torch.device(self.device):
            for key, tile in self.cue_tiles.items():
                p = torch.tensor(CUE_TILE_POSITION, dtype=torch.float32).repeat(len(env_idx), 1)
                p[self.true_color_indices.to(torch.int64) != key, 2] = HIDDEN_Z
                tile.set_pose(Pose.create_from_pq(p=p, q=[1.0, 0.0, 0.0, 0.0]))


def _register(name: str, base: type, max_episode_steps: int) -> None:
    if name in REGISTERED_ENVS:
        return
    cls = type(base.__name__.replace("VLAEnv", "CueVisibleVLAEnv"), (_CueVisibleMixin, base),
               {"__doc__": f"{name}: {base.__name__} with the cue kept visible (see memlens.tasks.mikasa_sim)."})
    register_env(name, max_episode_steps=max_episode_steps)(cls)


_register("RememberColor3CueVisible-VLA-v0", RememberColor3VLAEnv, 25)
_register("RememberColor5CueVisible-VLA-v0", RememberColor5VLAEnv, 25)
_register("RememberColor9CueVisible-VLA-v0", RememberColor9VLAEnv, 25)
