"""A tiny 2D world where memory is necessary. Pure numpy, deterministic from a seed.

Every episode has three phases, one frame per step:

    cue   (phase 0, ``cue_steps`` frames)   the cue is shown; the agent cannot move
    delay (phase 1, ``delay_steps`` frames) the cue is hidden; the agent cannot move
    go    (phase 2, up to ``go_steps``)     the agent (white dot, starts at the centre)
                                            must reach the target the cue named

Three task kinds:

- ``cue_recall``: ``n_targets`` coloured discs on a circle around the centre. The cue is a
  border around the image in one of their colours. Reach the disc of that colour.
- ``count``: the border around the image flashes yellow ``count`` times (9 frames on, 1 off
  each, from the first frame), ``count`` in 1..n_targets. Reach target number ``count``: grey
  discs at the cue-recall positions, numbered clockwise from the top and marked with 1..n
  white pips on the centre side of each.

- ``order``: two different colours are shown one after the other as the border (10 frames
  each); reach the disc of the *first* colour. A memory that keeps only the latest cue
  goes to the second colour's disc. Same targets as cue recall.

The layout (targets, pips) is the same in every episode, so it reveals nothing.
After the cue phase nothing in the observation (image or state) depends on the cue,
except in the ``control`` variant, where the cue stays visible all episode (cue_recall:
the border stays; order: the first colour fills the image's four corners all episode, where the
distractor never appears, while the border shows both colours in turn as in every variant; count: the
bottom edge of the border is split into ``n_targets`` slots and the first ``count`` of them stay yellow).

The count display is as large as the cue-recall border and the targets sit where cue recall's
do: a first design (a 10-pixel lamp, 4-pixel pips, targets 0.5 apart on a row) failed even on
the control, where no memory is needed, because the tiny policy could not read it or aim
between neighbouring targets (docs/experiment.md).

Coordinates: x, y in [-1, 1], y up; pixel column = (x + 1) / 2 * (size - 1),
pixel row = (1 - y) / 2 * (size - 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from memlens.errors import InvalidInputError

TASKS = ("cue_recall", "count", "order")
DELAY_PRESETS = {"short": 3, "medium": 30, "long": 100, "extra_long": 160, "control": 30}
VARIANTS = tuple(DELAY_PRESETS)
MIN_TARGETS, MAX_TARGETS = 2, 6
# A chunked policy looks at one frame per action chunk (10 frames for the tiny model), so every cue
# lasts at least a chunk: cue recall shows its cue for 10 frames; each count flash is lit for 9 frames
# and dark for 1, so an observer sampling every 10 frames sees the lamp lit once per flash whatever
# its phase (except the 1-in-10 phase that lands on every dark frame).
CUE_STEPS_CUE_RECALL = 10
FLASH_ON, FLASH_OFF = 9, 1
FLASH_PERIOD = FLASH_ON + FLASH_OFF


def default_cue_steps(task: str, n_targets: int) -> int:
    """Cue-phase length: 10 frames for cue recall, 10 per colour for order (20), room for
    ``n_targets`` flashes for count."""
    if task == "count":
        return n_targets * FLASH_PERIOD
    return CUE_STEPS_CUE_RECALL * (2 if task == "order" else 1)
INSTRUCTIONS = {
    "cue_recall": "reach the target that matches the cue",
    "count": "reach the target given by the number of flashes",
    "order": "reach the target of the first colour shown",
}
PHASE_CUE, PHASE_DELAY, PHASE_GO = 0, 1, 2

MAX_SPEED = 0.06  # world units per frame at |action| = 1: 11-15 frames to any target
SUCCESS_RADIUS = 0.08
RING_RADIUS = 0.65  # targets of every task

COLOURS = np.array(  # target colours, in cue index order
    [[230, 40, 40], [40, 200, 60], [50, 90, 255], [240, 220, 40], [220, 60, 220], [40, 220, 220]],
    dtype=np.uint8,
)
BACKGROUND = (20, 20, 20)
GREY, WHITE, YELLOW = (150, 150, 150), (255, 255, 255), (255, 230, 0)


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines a task; episodes differ only in the cue."""

    task: str = "cue_recall"
    variant: str = "short"
    n_targets: int = 4
    cue_steps: int = 10
    delay_steps: int = 3
    go_steps: int = 30
    image_size: int = 64

    @property
    def episode_length(self) -> int:
        """Frames (= actions) in an episode that times out."""
        return self.cue_steps + self.delay_steps + self.go_steps

    @property
    def go_start(self) -> int:
        """Index of the first go frame."""
        return self.cue_steps + self.delay_steps

    @property
    def cue_always_visible(self) -> bool:
        return self.variant == "control"

    @property
    def instruction(self) -> str:
        return INSTRUCTIONS[self.task]

    def phase(self, t: int) -> int:
        """Phase (0 cue, 1 delay, 2 go) of frame ``t``."""
        return PHASE_CUE if t < self.cue_steps else PHASE_DELAY if t < self.go_start else PHASE_GO


def make_spec(
    task: str = "cue_recall",
    variant: str = "short",
    n_targets: int = 4,
    *,
    cue_steps: int | None = None,
    delay_steps: int | None = None,
    go_steps: int = 30,
    image_size: int = 64,
) -> TaskSpec:
    """Validated :class:`TaskSpec`; ``delay_steps`` defaults to the variant's preset."""
    if task not in TASKS:
        raise InvalidInputError(f"Unknown task {task!r}: expected one of {TASKS}. Pick one of those.")
    if variant not in DELAY_PRESETS:
        raise InvalidInputError(
            f"Unknown variant {variant!r}: expected one of {VARIANTS} "
            f"(delays {DELAY_PRESETS}). Pick one of those."
        )
    if not (isinstance(n_targets, int | np.integer) and MIN_TARGETS <= n_targets <= MAX_TARGETS):
        raise InvalidInputError(
            f"n_targets must be an int in {MIN_TARGETS}..{MAX_TARGETS}, got {n_targets!r}. "
            f"Use a value in that range (there are {MAX_TARGETS} distinct colours/positions)."
        )
    cue_steps = default_cue_steps(task, n_targets) if cue_steps is None else cue_steps
    if task == "order" and cue_steps < 2:
        raise InvalidInputError(f"cue_steps={cue_steps} is too short for two colours in turn: use at least 2.")
    if task == "count" and cue_steps < n_targets * FLASH_PERIOD - FLASH_OFF:
        raise InvalidInputError(
            f"cue_steps={cue_steps} is too short for {n_targets} flashes "
            f"({FLASH_ON} on + {FLASH_OFF} off each): use at least "
            f"{n_targets * FLASH_PERIOD - FLASH_OFF}."
        )
    delay_steps = DELAY_PRESETS[variant] if delay_steps is None else delay_steps
    if cue_steps < 1 or delay_steps < 0 or go_steps < 1 or image_size < 32:
        raise InvalidInputError(
            f"Expected cue_steps >= 1, delay_steps >= 0, go_steps >= 1, image_size >= 32; got "
            f"{cue_steps}, {delay_steps}, {go_steps}, {image_size}."
        )
    return TaskSpec(task, variant, int(n_targets), cue_steps, delay_steps, go_steps, image_size)


def target_positions(task: str, n_targets: int) -> np.ndarray:
    """Fixed target centres, float32 [n_targets, 2] (x, y); the same in every episode and task:
    a circle around the centre, target 0 at the top, then clockwise."""
    angles = np.pi / 2 - 2 * np.pi * np.arange(n_targets) / n_targets
    return (RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype(np.float32)


def flash_on(t: int, count: int) -> bool:
    """Whether the count lamp is lit at frame ``t`` (a cue-phase frame) for ``count`` flashes."""
    return t // FLASH_PERIOD < count and t % FLASH_PERIOD < FLASH_ON


# ---- drawing ----------------------------------------------------------------------------


def _to_px(xy: np.ndarray, size: int) -> tuple[float, float]:
    """World (x, y) -> (row, col) in pixels."""
    return (1 - float(xy[1])) / 2 * (size - 1), (float(xy[0]) + 1) / 2 * (size - 1)


def _disc(img: np.ndarray, row: float, col: float, radius: float, colour) -> None:
    rr, cc = np.ogrid[: img.shape[0], : img.shape[1]]
    img[(rr - row) ** 2 + (cc - col) ** 2 <= radius**2] = colour


def _box(img: np.ndarray, r0: int, c0: int, h: int, w: int, colour) -> None:
    img[max(r0, 0) : r0 + h, max(c0, 0) : c0 + w] = colour


@lru_cache(maxsize=64)
def _background(task: str, n_targets: int, size: int) -> np.ndarray:
    """The static part of every frame: background and targets, uint8 [size, size, 3]."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = BACKGROUND
    s = size / 64  # drawing sizes are given for 64 px
    for i, xy in enumerate(target_positions(task, n_targets)):
        row, col = _to_px(xy, size)
        if task != "count":
            _disc(img, row, col, 4 * s, COLOURS[i])
        else:
            _disc(img, row, col, 4 * s, GREY)
            # i + 1 pips just inside the disc (toward the centre), in rows of three across the ray
            out = np.array([-xy[1], xy[0]]) / np.linalg.norm(xy)  # outward, as (row, col)
            across = np.array([out[1], -out[0]])
            for k in range(i + 1):
                n_row = min(i + 1 - 3 * (k // 3), 3)
                off = -(7 + 3 * (k // 3)) * out + 3 * (k % 3 - (n_row - 1) / 2) * across
                pr, pc = np.array([row, col]) + s * off
                _box(img, round(pr - s), round(pc - s), round(2 * s), round(2 * s), WHITE)
    img.setflags(write=False)
    return img


def render(spec: TaskSpec, cue: int, t: int, agent: np.ndarray, second: int | None = None) -> np.ndarray:
    """Frame ``t`` of an episode with cue ``cue`` (``order``: first colour ``cue``, then
    ``second``) and the agent at ``agent`` (x, y).

    Returns uint8 [image_size, image_size, 3]. The cue is drawn only while ``t`` is in the
    cue phase (or always, in the ``control`` variant).
    """
    size, s = spec.image_size, spec.image_size / 64
    img = _background(spec.task, spec.n_targets, size).copy()
    show_cue = spec.phase(t) == PHASE_CUE
    b = round(4 * s)  # border width
    colour = None  # of the border
    if spec.task == "cue_recall" and (show_cue or spec.cue_always_visible):
        colour = COLOURS[cue]
    elif spec.task == "order" and show_cue:
        shown = cue  # the first colour; the second in the cue phase's second half
        if t >= spec.cue_steps // 2:
            shown = (cue + 1) % spec.n_targets if second is None else second
        colour = COLOURS[shown]
    elif spec.task == "count" and show_cue and flash_on(t, cue + 1):
        colour = YELLOW
    if colour is not None:
        img[:b], img[-b:], img[:, :b], img[:, -b:] = (colour,) * 4
    if spec.task == "order" and spec.cue_always_visible:  # the first colour in the corners, where the second never is
        c = 2 * b
        img[:c, :c], img[:c, -c:], img[-c:, :c], img[-c:, -c:] = (COLOURS[cue],) * 4
    if spec.task == "count" and spec.cue_always_visible:  # the bottom edge in n_targets slots, `count` lit
        edges = np.linspace(0, size, spec.n_targets + 1).round().astype(int)
        img[-b:] = BACKGROUND
        for k in range(cue + 1):
            img[-b:, edges[k] + 1 : edges[k + 1] - 1] = YELLOW
    row, col = _to_px(agent, size)
    _disc(img, row, col, 2 * s, WHITE)
    return img


# ---- the world --------------------------------------------------------------------------


class MemoryWorld:
    """One episode at a time of a :class:`TaskSpec`.

    ``reset(seed)`` draws the cue from ``numpy.random.default_rng(seed)`` (or from the
    world's own generator when ``seed`` is None); ``reset(cue=i)`` forces it.
    Observations are dicts ``{"image": uint8 [H, W, 3], "state": float32 [4]}`` with state
    ``(x, y, go flag, fraction of go time elapsed)``.
    """

    def __init__(self, spec: TaskSpec, seed: int | None = None):
        self.spec = spec
        self.targets = target_positions(spec.task, spec.n_targets)  # float32 [n, 2]
        self._rng = np.random.default_rng(seed)
        self.cue = 0
        self.second = 1  # order: the second colour shown (a distractor, never the cue)
        self.t = 0
        self.agent = np.zeros(2, np.float32)
        self.done = True
        self.success = False

    @property
    def phase(self) -> int:
        return self.spec.phase(self.t)

    @property
    def goal(self) -> np.ndarray:
        """Position of the correct target, float32 [2] (privileged; not in observations)."""
        return self.targets[self.cue]

    @property
    def labels(self) -> dict:
        """Per-episode labels: ``cue`` (for count: count - 1), ``n_targets``, ``delay_steps``; for order
        also ``second``, the distractor colour (lets a probe ask whether memory keeps it too)."""
        labels = {"cue": int(self.cue), "n_targets": self.spec.n_targets, "delay_steps": self.spec.delay_steps}
        return labels | ({"second": int(self.second)} if self.spec.task == "order" else {})

    def reset(self, seed: int | None = None, cue: int | None = None) -> dict:
        """Start an episode and return its first observation."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        drawn = int(self._rng.integers(self.spec.n_targets))
        if cue is not None and not 0 <= cue < self.spec.n_targets:
            raise InvalidInputError(f"cue must be in 0..{self.spec.n_targets - 1}, got {cue}.")
        self.cue = drawn if cue is None else int(cue)
        # drawn after the cue, so every task's cue is the same function of the seed
        self.second = (self.cue + 1 + int(self._rng.integers(self.spec.n_targets - 1))) % self.spec.n_targets
        self.t, self.done, self.success = 0, False, False
        self.agent = np.zeros(2, np.float32)
        return self.observation()

    def observation(self) -> dict:
        spec = self.spec
        go = self.phase == PHASE_GO
        frac = (self.t - spec.go_start) / spec.go_steps if go else 0.0
        state = np.array([self.agent[0], self.agent[1], float(go), frac], np.float32)
        return {"image": render(spec, self.cue, self.t, self.agent, self.second), "state": state}

    def step(self, action) -> tuple[dict, float, bool, bool, dict]:
        """Apply ``action`` (float [2], velocity in [-1, 1] per axis; ignored before go).

        Returns ``(obs, reward, terminated, truncated, info)``; reward is 0 before go, then
        ``-distance to the correct target`` (+1 on success). Reaching a wrong target
        terminates with failure; ``truncated`` is set when go time runs out.
        """
        if self.done:
            raise RuntimeError("The episode is over: call reset() before step().")
        reward, terminated = 0.0, False
        if self.phase == PHASE_GO:
            a = np.clip(np.nan_to_num(np.asarray(action, np.float32).reshape(2)), -1, 1)
            self.agent = np.clip(self.agent + MAX_SPEED * a, -1, 1).astype(np.float32)
            dists = np.linalg.norm(self.targets - self.agent, axis=1)
            reward = -float(dists[self.cue])
            if dists[self.cue] <= SUCCESS_RADIUS:
                self.success, terminated = True, True
                reward += 1.0
            elif dists.min() <= SUCCESS_RADIUS:
                terminated = True  # reached a wrong target
        self.t += 1
        truncated = not terminated and self.t >= self.spec.episode_length
        self.done = terminated or truncated
        info = {"is_success": self.success, "is_failure": terminated and not self.success}
        return self.observation(), reward, terminated, truncated, info
