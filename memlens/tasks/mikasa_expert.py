"""Scripted experts for MIKASA-Robo's colour tasks that read the simulator's privileged state.

MIKASA's own oracles plan with mplib, which segfaults with numpy 2; these do not plan. They read the
target colours, the cube and button poses and the task's phase from the ManiSkill env (``env.unwrapped``),
never from the policy's observation, and steer the tool centre point (TCP) through a resolved-motion
loop: each step asks SAPIEN's built-in Pinocchio IK for the joints that put the TCP a bounded step
closer to a waypoint (gripper pointing down as at reset, fingers closed), and sends the joint difference
as a ``pd_joint_delta_pos`` action (8 values in [-1, 1]; +-1 is +-0.1 rad; the gripper value -1 closes). In an
env made with ``control_mode="pd_ee_delta_pos"`` they send that bounded TCP step itself (4 values: x y z in the
robot's base frame, +-1 is +-0.1 m, and the gripper), and ManiSkill's controller solves the IK.

Nothing they do before the cubes reappear depends on the answer: through the cue and the delay they
move to the same neutral point (behind the cue cube as the base camera sees it, so the cue stays in view)
whatever the cue, so no frame after the cue shows it, and a policy that imitates them has to remember.

- RememberColor: neutral point, then down a funnel onto the target cube (success: TCP within 5 cm of it,
  robot still).
- BunchOfColors / SeqOfColors / ChainOfColors: each target in the cue's order (which also satisfies the
  unordered tasks), touched from above and held still until the simulator counts the touch, at 6 cm over
  the cubes in between; then the button: down onto it, up by 11 cm (MIKASA's press-and-lift), still.

Measured success (docs/mikasa.md, "Experts"; ``bench/bench_mikasa.py success``): 99-100 of 100 seeded
episodes on every task here; the RememberColor failures ran out of time (25 steps).
"""

from __future__ import annotations

import numpy as np

PHASE_CUE, PHASE_DELAY, PHASE_GO = 0, 1, 2  # as memlens.tasks.worlds

NEUTRAL = np.array([-0.06, 0.0, 0.10])  # metres, world frame; the cue cube stands at (0, 0, 0.02)
TOUCH_HEIGHT = 0.033  # TCP over a cube's centre when touching it (cube half size 0.02)
FUNNEL_SLOPE = 1.5  # metres of height per metre of horizontal distance still to go
FUNNEL_TOP = 0.05  # the most the funnel rises over the touch height (clears the other cubes)
FUNNEL_FLOOR_RADIUS = 0.01  # horizontal distance at which the funnel reaches the touch height
CLEAR_RADIUS = 0.045  # metres: horizontal distance to another cube's centre within which ...
CLEARANCE = 0.06  # ... the TCP must be this high over that cube's centre (4 cm over its top)
HIDDEN_ABOVE = 1.0  # MIKASA hides a cube by lifting it to z = 1000
MAX_STEP = 0.12  # metres the IK target may lead the TCP by
JOINT_GAIN = 2.0  # joint error -> commanded delta
JOINT_DAMPING = 1.0  # joint velocity (per control step) subtracted from the command
DELTA_LIMIT = 0.1  # radians at action +-1 (panda pd_joint_delta_pos)
EE_DELTA_LIMIT = 0.1  # metres at action +-1 (panda pd_ee_delta_pos)
EE_GAIN = 1.0  # TCP error -> commanded TCP delta (pd_ee_delta_pos)
BUTTON_PRESS_HEIGHT = 0.015  # TCP over the button cap's top when pressing
BUTTON_LIFT = 0.11  # metres to rise after the press (MIKASA counts a press after 0.085)


def phase(env) -> int:
    """PHASE_CUE, PHASE_DELAY or PHASE_GO of the frame the env shows now (ManiSkill env, one sub-env)."""
    u = env.unwrapped
    t = int(u.elapsed_steps[0])
    cue_end = int(u.cue_steps_per_env[0])
    if t < cue_end:
        return PHASE_CUE
    return PHASE_DELAY if t < cue_end + int(u.empty_steps_per_env[0]) else PHASE_GO


def targets(env) -> list[int]:
    """The colour indices to touch, in the cue's order (one for RememberColor)."""
    return [int(k) for k in np.atleast_1d(env.unwrapped.true_color_indices[0].cpu().numpy())]


class MikasaExpert:
    """Solves RememberColor, BunchOfColors, SeqOfColors and ChainOfColors (and their cue-visible controls)
    from privileged state; ``expert(env, observation)`` -> float32 [8] (float32 [4] under pd_ee_delta_pos).
    Call ``reset(env)`` after each ``env.reset`` (``record_gym_dataset`` does)."""

    def __init__(self):
        self._model_of = None
        self._pmodel = None

    def reset(self, env) -> None:
        u = env.unwrapped
        robot = u.agent.robot
        if self._model_of is not u:  # one Pinocchio model per simulator
            articulation = robot._objs[0]
            self._pmodel = articulation.create_pinocchio_model()
            names = [link.name for link in articulation.links]
            self._tcp_index = next(i for i, n in enumerate(names) if n.endswith("panda_hand_tcp"))
            self._model_of = u
        self._root = robot.pose.p[0].cpu().numpy().astype(np.float64)
        self._ee = u.control_mode == "pd_ee_delta_pos"
        if self._ee:  # world -> robot base rotation (pd_ee_delta_pos moves the TCP along the base's axes)
            import sapien

            self._to_base = sapien.Pose(q=robot.pose.q[0].cpu().numpy()).to_transformation_matrix()[:3, :3].T
        self._quat = u.agent.tcp.pose.q[0].cpu().numpy().astype(np.float64)
        self._multi = hasattr(u, "button_xy")  # Bunch/Seq/ChainOfColors end with a button
        self._press_z = None

    # ---- motion ---------------------------------------------------------------------------------------
    def _toward(self, env, goal: np.ndarray) -> np.ndarray:
        import sapien

        u = env.unwrapped
        tcp = u.agent.tcp.pose.p[0].cpu().numpy()
        step = goal - tcp
        norm = float(np.linalg.norm(step))
        if norm > MAX_STEP:
            step *= MAX_STEP / norm
        if self._ee:
            action = np.empty(4, np.float32)
            action[:3] = np.clip(EE_GAIN * (self._to_base @ step) / EE_DELTA_LIMIT, -1.0, 1.0)
            action[3] = -1.0
            return action
        q = u.agent.robot.get_qpos()[0].cpu().numpy().astype(np.float64)
        qvel = u.agent.robot.get_qvel()[0].cpu().numpy()[:7]
        q_ik, _, _ = self._pmodel.compute_inverse_kinematics(
            self._tcp_index, sapien.Pose(tcp + step - self._root, self._quat), initial_qpos=q,
            active_qmask=[1] * 7 + [0, 0], max_iterations=100)
        delta = JOINT_GAIN * (q_ik[:7] - q[:7]) - JOINT_DAMPING * qvel / u.control_freq
        action = np.empty(8, np.float32)
        action[:7] = np.clip(delta / DELTA_LIMIT, -1.0, 1.0)
        action[7] = -1.0  # fingers closed: a touch with the fingertips, nothing to catch on
        return action

    def _funnel(self, env, point: np.ndarray, height: float, goal_key: int | None = None) -> np.ndarray:
        """Toward ``height`` over ``point``, descending only as the TCP closes in horizontally; first straight
        up while, in the three-target tasks, the TCP is lower than ``CLEARANCE`` over a cube (other than
        ``goal_key``) within ``CLEAR_RADIUS`` of it, so that leaving a touched cube never sweeps a neighbour
        off its place (RememberColor touches one cube and needs every step to get there)."""
        u = env.unwrapped
        tcp = u.agent.tcp.pose.p[0].cpu().numpy()
        others = [cube.pose.p[0].cpu().numpy() for key, cube in u.cubes.items() if key != goal_key] if self._multi else []
        floor = max((float(c[2]) + CLEARANCE for c in others
                     if c[2] < HIDDEN_ABOVE and np.linalg.norm(tcp[:2] - c[:2]) < CLEAR_RADIUS), default=None)
        if floor is not None and tcp[2] < floor:
            return self._toward(env, np.array([tcp[0], tcp[1], floor + 0.01]))
        distance = float(np.linalg.norm(tcp[:2] - point[:2]))
        z = point[2] + height + np.clip((distance - FUNNEL_FLOOR_RADIUS) * FUNNEL_SLOPE, 0.0, FUNNEL_TOP)
        return self._toward(env, np.array([point[0], point[1], z]))

    # ---- the policy ------------------------------------------------------------------------------------
    def __call__(self, env, observation=None) -> np.ndarray:
        u = env.unwrapped
        if phase(env) != PHASE_GO:
            return self._toward(env, NEUTRAL)
        if not self._multi:
            key = targets(env)[0]
            return self._funnel(env, u.cubes[key].pose.p[0].cpu().numpy(), TOUCH_HEIGHT, key)
        touched = u.touched_cubes[0].cpu().numpy()
        for key in targets(env):
            if not touched[key]:
                return self._funnel(env, u.cubes[key].pose.p[0].cpu().numpy(), TOUCH_HEIGHT, key)
        button = np.array([*u.button_xy[0].cpu().numpy(), float(u.button_top_z[0])])
        if self._press_z is None and bool(u.pending_press[0] | u.button_pressed[0]):
            self._press_z = float(u.press_start_tcp_z[0])  # pressed: now lift, then hold still there
        if self._press_z is not None:
            return self._toward(env, np.array([button[0], button[1], self._press_z + BUTTON_LIFT]))
        return self._funnel(env, button, BUTTON_PRESS_HEIGHT)
