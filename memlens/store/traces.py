"""The notebook API over a trace store: open it, list and read episodes, and fetch the camera frame of
any step (from the dataset the capture replayed, or from frames stored with a live rollout).

    >>> from memlens.store.traces import open_traces, frame
    >>> store = open_traces("traces/cue")                        # doctest: +SKIP
    >>> ep = store.episode(store.episodes()[0])                  # doctest: +SKIP
    >>> ep["memory/write"][:5].shape                             # lazy: reads 5 updates -> (5, M, H)
    >>> frame(store, 0, step=12).shape                           # (H, W, 3) uint8
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from memlens.store import TraceStore


def open_traces(path_or_url) -> TraceStore:
    return TraceStore.open(path_or_url)


@lru_cache(maxsize=8)
def _dataset(repo_id: str, root: str):
    from pathlib import Path

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from memlens.errors import UserError

    if root and not (Path(root) / "meta" / "info.json").is_file():
        raise UserError(f"the camera frames of this trace store come from the dataset {repo_id} at {root}, which is "
                        "not there any more (expected a LeRobotDataset with meta/info.json). Move the dataset back, "
                        "or capture again from where the dataset is now.")
    return LeRobotDataset(repo_id, root=root)


def cameras(store: TraceStore) -> list[str]:
    """Camera keys of the replayed dataset."""
    ds = store.provenance["dataset"]
    return list(_dataset(ds["repo_id"], ds["root"]).meta.camera_keys)


def frame_cameras(store: TraceStore, episode: int) -> list[str]:
    """The cameras `frame` can show for `episode`: those stored with a live rollout, else the dataset's keys."""
    stored = [n.removeprefix("frames/") for n in store.episode(episode).names if n.startswith("frames/")]
    return stored or cameras(store)


def all_cameras(store: TraceStore, episode: int, step: int, gap: int = 4, min_height: int = 0) -> np.ndarray:
    """Every camera's frame of `step`, side by side in `frame_cameras` order (`side_by_side`):
    `[H, W_total, 3]` uint8."""
    return side_by_side([frame(store, episode, step, cam) for cam in frame_cameras(store, episode)], gap=gap,
                        min_height=min_height)


def side_by_side(images: list[np.ndarray], *, gap: int = 4, min_height: int = 0) -> np.ndarray:
    """Images side by side, `gap` white columns between, shorter ones padded white at the bottom; each is
    first scaled up by a whole factor (nearest neighbour: pixels stay sharp) to at least `min_height` rows."""
    scaled = []
    for im in images:
        im = np.asarray(im)
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=-1)
        k = max(1, -(-min_height // max(1, im.shape[0])))
        scaled.append(np.repeat(np.repeat(im[..., :3], k, axis=0), k, axis=1).astype(np.uint8))
    if len(scaled) == 1:
        return scaled[0]
    height = max(im.shape[0] for im in scaled)
    parts = []
    for i, im in enumerate(scaled):
        if i:
            parts.append(np.full((height, gap, 3), 255, np.uint8))
        parts.append(np.pad(im, ((0, height - im.shape[0]), (0, 0), (0, 0)), constant_values=255))
    return np.concatenate(parts, axis=1)


def frame(store: TraceStore, episode: int, step: int, camera: str | None = None) -> np.ndarray:
    """`[H, W, 3]` uint8 image seen at `step` of `episode` (first camera unless `camera` is given)."""
    ep = store.episode(episode)
    stored = [n for n in ep.names if n.startswith("frames/")]  # live rollouts store their frames
    if stored:
        return np.asarray(ep[f"frames/{camera}" if camera else stored[0]][step])
    ds_info = store.provenance["dataset"]
    ds = _dataset(ds_info["repo_id"], ds_info["root"])
    camera = camera or ds.meta.camera_keys[0]
    if camera not in ds.meta.camera_keys:
        raise KeyError(f"camera {camera!r} not in the dataset; it has {ds.meta.camera_keys}.")
    length = int(ep.attrs["length"])
    if not 0 <= step < length:
        raise IndexError(f"step {step} is out of range: episode {episode} has steps 0..{length - 1}.")
    start = int(ds.meta.episodes[episode]["dataset_from_index"])
    img = ds[start + step][camera]  # [3, H, W] float in [0, 1]
    return (img.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
