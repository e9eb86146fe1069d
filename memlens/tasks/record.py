"""Record scripted-expert episodes of a memory task as a local LeRobotDataset v3.

Episode ``i`` is ``MemoryWorld.reset(seed=seed + i)``: the same cue as
``MemoryTaskEnv.reset(seed=seed + i)``. Columns per frame:

    observation.images.top  video (or image) [64, 64, 3]
    observation.state       float32 [4]   (x, y, go flag, go fraction)
    action                  float32 [2]
    label.cue, label.phase, label.n_targets, label.delay_steps   int64 [1]

plus ``meta/memlens_labels.json`` with per-episode labels and the generation parameters.

Videos are encoded as all-intra H.264 in yuv444p at CRF 0 (:func:`video_encoder`), not with
lerobot's default AV1 (GOP 2, CRF 30, yuv420p): AV1's inter prediction and temporal filtering
let a frame's decoded pixels depend on its neighbours, so the first go frame (agent not yet
moved) carried a faint trace of where the agent went next (up to 15/255), i.e. of the answer.
With all-intra lossless H.264 every decoded frame depends only on its own image (max error 1/255
from the RGB->YUV rounding), so the "nothing after the cue depends on it" property survives
encoding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from memlens.errors import InvalidInputError, OutputExistsError
from memlens.runtime.quiet import quiet_progress
from memlens.tasks.expert import ScriptedExpert
from memlens.tasks.worlds import MemoryWorld, TaskSpec, make_spec

LABELS_FILE = "meta/memlens_labels.json"
LABEL_KEYS = ("cue", "phase", "n_targets", "delay_steps")


def label_keys(spec: TaskSpec) -> tuple[str, ...]:
    """The ``label.*`` columns of a task's datasets: ``LABEL_KEYS`` and any other per-episode label its
    world gives (order: ``second``, the distractor colour)."""
    return LABEL_KEYS + tuple(k for k in MemoryWorld(spec).labels if k not in LABEL_KEYS)


CAMERAS = ("top", "wrist")  # "wrist": a second view of the same scene (the top image turned 90 degrees)


def camera_image(image, camera: str):
    """The image of `camera` given the world's (top) image."""
    if camera == "top":
        return image
    if camera == "wrist":
        return np.ascontiguousarray(np.rot90(image))
    raise InvalidInputError(f"unknown camera {camera!r}; expected one of {CAMERAS}.")


def dataset_features(spec: TaskSpec, use_videos: bool = True, cameras: tuple[str, ...] = ("top",)) -> dict:
    """LeRobotDataset ``features`` for a task spec."""
    size = spec.image_size
    int1 = {"dtype": "int64", "shape": (1,), "names": None}
    return {
        **{f"observation.images.{cam}": {
            "dtype": "video" if use_videos else "image",
            "shape": (size, size, 3),
            "names": ["height", "width", "channels"],
        } for cam in cameras},
        "observation.state": {"dtype": "float32", "shape": (4,), "names": ["x", "y", "go", "go_fraction"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["vx", "vy"]},
        **{f"label.{k}": dict(int1) for k in label_keys(spec)},
    }


def video_encoder():
    """The encoder config used for ``observation.images.top`` videos (see module docstring)."""
    from lerobot.configs.video import RGBEncoderConfig

    return RGBEncoderConfig(
        vcodec="h264", pix_fmt="yuv444p", g=1, crf=0, preset=None, extra_options={"x264-params": "log=0"}
    )


def _label_columns(labels: dict) -> dict:
    """``{"label.cue": int64 [1], ...}``: the world's labels and the phase, the keys of ``label_keys``."""
    return {f"label.{k}": np.array([v], np.int64) for k, v in labels.items()}


def _check_root(root: Path) -> None:
    if root.exists():
        if not root.is_dir() or any(root.iterdir()):
            raise OutputExistsError(
                f"Dataset root {str(root)!r} already exists and is not empty; expected a new or empty "
                f"directory. Choose another path, or delete this one if you no longer need it "
                f"(memlens never overwrites data)."
            )
        root.rmdir()  # empty: LeRobotDataset.create wants to make it itself


def record_dataset(
    *,
    root: str | Path,
    repo_id: str,
    task: str = "cue_recall",
    variant: str = "short",
    n_episodes: int = 50,
    seed: int = 0,
    n_targets: int = 4,
    use_videos: bool = True,
    progress: bool = True,
    expert_noise: float = 0.0,
    cameras: tuple[str, ...] = ("top",),
) -> Path:
    """Roll out the scripted expert ``n_episodes`` times and write a LeRobotDataset at ``root``.

    Episode ``i`` uses seed ``seed + i`` (its cue); frames are 64x64 at 10 fps, with the task's
    instruction as the ``task`` text. ``use_videos=False`` stores PNG images (lossless) instead
    of mp4. ``expert_noise`` is the expert's Gaussian action noise after the cue (0: exact). ``cameras``:
    any of ``CAMERAS`` (``("top", "wrist")`` records two video streams, as a user's robot would).
    Returns the dataset root. Raises ``FileExistsError`` if ``root`` exists and is not empty,
    ``ValueError`` for an unknown task/variant or ``n_targets`` out of range.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset  # heavy import, only here

    spec = make_spec(task, variant, n_targets)
    for cam in cameras:
        camera_image(np.zeros((1, 1, 3), np.uint8), cam)  # unknown camera: ValueError before anything is written
    if n_episodes < 1:
        raise InvalidInputError(f"n_episodes must be >= 1, got {n_episodes}.")
    root = Path(root)
    _check_root(root)

    dataset = LeRobotDataset.create(
        repo_id=repo_id,
        root=root,
        fps=10,
        features=dataset_features(spec, use_videos, tuple(cameras)),
        use_videos=use_videos,
        video_backend="pyav",
        rgb_encoder=video_encoder() if use_videos else None,
    )
    world = MemoryWorld(spec)
    expert = ScriptedExpert(noise=expert_noise, seed=seed)
    episodes = []
    iterator = range(n_episodes)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"recording {task}/{variant}")
    with quiet_progress():
        try:
            for i in iterator:
                obs = world.reset(seed=seed + i)
                labels = world.labels
                while not world.done:
                    action = expert.act(world)
                    frame = {
                        **{f"observation.images.{cam}": camera_image(obs["image"], cam) for cam in cameras},
                        "observation.state": obs["state"],
                        "action": action,
                        **_label_columns({**labels, "phase": world.phase}),
                        "task": spec.instruction,
                    }
                    dataset.add_frame(frame)
                    obs, *_ = world.step(action)
                dataset.save_episode()
                episodes.append(
                    {"episode_index": i, "seed": seed + i, "length": world.t, "success": world.success}
                    | labels
                )
        finally:
            dataset.finalize()  # a partial dataset stays readable; root is then not empty

    meta = {
        "task": task,
        "variant": variant,
        "seed": seed,
        "n_episodes": n_episodes,
        "n_targets": spec.n_targets,
        "cue_steps": spec.cue_steps,
        "delay_steps": spec.delay_steps,
        "go_steps": spec.go_steps,
        "episode_length": spec.episode_length,
        "image_size": spec.image_size,
        "instruction": spec.instruction,
        "fps": 10,
        "expert_noise": expert_noise,
        "episodes": episodes,
    }
    (root / LABELS_FILE).write_text(json.dumps(meta, indent=2))
    return root


def load_labels(root: str | Path) -> dict:
    """The ``meta/memlens_labels.json`` written by :func:`record_dataset`."""
    return json.loads((Path(root) / LABELS_FILE).read_text())
