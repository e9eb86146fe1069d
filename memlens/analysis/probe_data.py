"""The rows of a probe: features and labels per memory update, read from trace stores (`probe_data`).

Labels, features and their names are documented in :mod:`memlens.analysis.probes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memlens.analysis.data import (
    CLASSIFICATION,
    REGRESSION,
    AnalysisInputError,
    FeaturesUnavailableError,
    as_store,
    check_same_checkpoint,
    select_episodes,
)

EPISODE_LABELS = ("task",)  # read from episode attrs, not from label/<name> arrays


# -- labels ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FutureAction:
    """The recorded action `horizon` frames after the update's frame (rows whose target lies past the
    episode end are dropped). `dim`: one action dimension (default: all, multi-output regression).
    `binarize_at`: classify whether action[dim] > binarize_at instead (needs `dim`). `source`:
    `"dataset"` (the recorded action) or `"predicted"` (the policy's own; live rollouts have only that)."""

    horizon: int = 10
    dim: int | None = None
    binarize_at: float | None = None
    source: str = "dataset"

    def __post_init__(self):
        if self.horizon < 0:
            raise AnalysisInputError(f"FutureAction.horizon must be >= 0 frames, got {self.horizon}.")
        if self.binarize_at is not None and self.dim is None:
            raise AnalysisInputError("FutureAction(binarize_at=...) needs dim=<action dimension> to binarise, e.g. "
                                     "FutureAction(horizon=10, dim=6, binarize_at=0.5) for a gripper.")
        if self.source not in ("dataset", "predicted"):
            raise AnalysisInputError(f"FutureAction.source must be 'dataset' or 'predicted', got {self.source!r}.")

    @property
    def kind(self) -> str:
        return CLASSIFICATION if self.binarize_at is not None else REGRESSION

    @property
    def name(self) -> str:
        dim = "" if self.dim is None else f"[{self.dim}]"
        cut = "" if self.binarize_at is None else f" > {self.binarize_at:g}"
        return f"future_action{dim}(+{self.horizon}){cut}"


def _label_spec(label) -> tuple[str, FutureAction | None]:
    if isinstance(label, FutureAction):
        return label.name, label
    if label == "future_action":
        return FutureAction().name, FutureAction()
    if not isinstance(label, str):
        raise AnalysisInputError(f"label must be a label name or a FutureAction, got {label!r}.")
    return label, None


# -- data: features and labels per memory update -----------------------------------------------------

@dataclass
class ProbeData:
    """Rows of a probe: one per memory update of every selected episode (and store)."""

    X: np.ndarray  # [N, D] float32
    y: np.ndarray  # [N] (classes) or [N] / [N, A] (regression)
    kind: str  # classification | regression
    groups: np.ndarray  # [N] one id per (store, episode): the unit of grouped cross-validation
    store: np.ndarray  # [N] index into `stores`
    episode: np.ndarray  # [N]
    update: np.ndarray  # [N] update index within the episode
    frame: np.ndarray  # [N] frame of the update
    since_cue: np.ndarray  # [N] frames since the cue ended (negative while shown; NaN without a phase label)
    label: str = ""
    features: str = ""
    stores: list[str] = field(default_factory=list)

    def subset(self, keep: np.ndarray) -> ProbeData:
        """The rows where `keep` (a boolean [N]) holds."""
        from dataclasses import replace

        rows = {k: getattr(self, k)[keep] for k in ("X", "y", "groups", "store", "episode", "update", "frame",
                                                   "since_cue")}
        return replace(self, **rows)


def _feature_error(trace, features: str, url: str, why: str) -> FeaturesUnavailableError:
    have = set(trace.names)
    options = []
    if "memory/write" in have:
        m = trace.shapes["memory/write"][1]
        options += ["memory", f"token:0..{m - 1}", "initial"]
    if "hidden/memory" in have:
        options.append(f"layer:0..{trace.shapes['hidden/memory'][1] - 1}")
    if "hidden/observation" in have:
        options.append("observation")
    return FeaturesUnavailableError(
        f"features {features!r} cannot be read from the trace store at {url}: {why}. This store offers "
        f"{', '.join(options) or 'no probe features'}.")


def _index(arg: str, n: int, trace, features: str, url: str, what: str, out_of_range: str) -> int:
    """`arg` as an index in 0..n-1, or the feature error saying why not."""
    try:
        i = int(arg)
    except ValueError:
        raise _feature_error(trace, features, url, f"the {what} index is not an integer") from None
    if not 0 <= i < n:
        raise _feature_error(trace, features, url, out_of_range)
    return i


def _episode_features(trace, features: str, site: str, url: str) -> np.ndarray:
    """`[U, D]` features of one episode."""
    has_memory = site in trace
    kind, _, arg = features.partition(":")
    if kind in ("memory", "token", "initial") and not has_memory:
        raise _feature_error(trace, features, url, f"it has no {site!r} (captured from a checkpoint without "
                             "memory, or with --attention-only)")
    if kind == "memory" and not arg:
        x = trace.load(site)
        return x.reshape(len(x), -1)
    if kind == "token":
        x = trace.load(site)
        return x[:, _index(arg, x.shape[1], trace, features, url, "token", f"there are {x.shape[1]} memory tokens")]
    if kind == "layer":
        if "hidden/memory" not in trace:
            raise _feature_error(trace, features, url, "it has no 'hidden/memory' (capture with --hidden)")
        x = trace["hidden/memory"]
        layer = _index(arg, x.shape[1], trace, features, url, "layer", f"hidden/memory holds {x.shape[1]} layer entries")
        x = np.asarray(x[:, layer])
        return x.reshape(len(x), -1)
    if kind == "observation" and not arg:
        if "hidden/observation" not in trace:
            raise _feature_error(trace, features, url, "it has no 'hidden/observation' (captured before memlens "
                                 "recorded it; capture again to get the observation baseline)")
        return trace.load("hidden/observation")
    if kind == "initial" and not arg:
        read0 = np.asarray(trace["memory/read"][0])
        n = trace.shapes["memory/read"][0]
        return np.broadcast_to(read0.reshape(1, -1), (n, read0.size))
    raise _feature_error(trace, features, url, "unknown feature spec (expected memory, token:<i>, layer:<l>, "
                         "observation or initial)")


def _label_error(label: str, store, url: str) -> AnalysisInputError:
    from memlens.analysis.data import available_labels

    found = available_labels(store) + list(EPISODE_LABELS) + ["future_action"]
    return AnalysisInputError(
        f"label {label!r} is not in the trace store at {url}. Expected one of its per-frame labels "
        f"(label/<name>, from the dataset's label.* columns), 'task', or 'future_action'; found {found}. Pick one "
        "of those, or record the dataset with that label (memlens record writes cue, phase, n_targets, delay_steps).")


def _episode_label(trace, name: str, spec: FutureAction | None, update_frame: np.ndarray, store, url: str):
    """(`y` for the rows kept, boolean mask `[U]` of kept rows)."""
    keep = np.ones(len(update_frame), dtype=bool)
    if spec is not None:
        array = f"action/{spec.source}"
        if array not in trace:
            raise AnalysisInputError(
                f"{name} needs {array!r}, which the trace store at {url} lacks (live rollouts record only "
                "action/predicted). Use FutureAction(source='predicted') to probe the policy's own future action.")
        actions = trace.load(array)
        target = update_frame + spec.horizon
        keep = target < len(actions)
        y = actions[target[keep]]
        if spec.dim is not None:
            if not 0 <= spec.dim < actions.shape[1]:
                raise AnalysisInputError(f"{name}: action dimension {spec.dim} is out of range; actions have "
                                         f"{actions.shape[1]} dimensions (0..{actions.shape[1] - 1}).")
            y = y[:, spec.dim]
            if spec.binarize_at is not None:
                y = (y > spec.binarize_at).astype(np.int64)
        return y, keep
    if name == "task":
        return np.full(len(update_frame), str(trace.attrs.get("task", ""))), keep
    if f"label/{name}" not in trace:
        raise _label_error(name, store, url)
    return trace.load(f"label/{name}")[update_frame], keep


def _since_cue(trace, update_frame: np.ndarray) -> np.ndarray:
    if "label/phase" not in trace:
        return np.full(len(update_frame), np.nan)
    after = np.flatnonzero(trace.load("label/phase") != 0)
    cue_end = after[0] if len(after) else trace.shapes["label/phase"][0]
    return (update_frame - cue_end).astype(np.float64)


def probe_data(stores, label, *, features: str = "memory", site: str = "memory/write", episodes=None,
               allow_mixed: bool = False, after_cue: bool = False) -> ProbeData:
    """Features and labels of every memory update of `episodes` (default: all) in one or more stores.

    Several stores are pooled only if captured with the same checkpoint (`allow_mixed=True` overrides).
    `after_cue` keeps only the updates made once the cue was gone (at or after the first frame whose
    `label/phase` is not 0), where reading the cue needs memory; it needs a phase label."""
    stores = [as_store(s) for s in (stores if isinstance(stores, list | tuple) else [stores])]
    if len(stores) > 1:
        check_same_checkpoint(*stores, allow_mixed=allow_mixed)
    name, spec = _label_spec(label)
    kind = spec.kind if spec is not None else CLASSIFICATION
    cols = {k: [] for k in ("X", "y", "groups", "store", "episode", "update", "frame", "since_cue")}
    for si, store in enumerate(stores):
        url = str(store.url)
        for ep in select_episodes(store, episodes):
            trace = store.episode(ep)
            update_frame = trace.load("memory/update_frame")
            x = _episode_features(trace, features, site, url)
            y, keep = _episode_label(trace, name, spec, update_frame, store, url)
            n = int(keep.sum())
            cols["X"].append(np.asarray(x[keep], dtype=np.float32))
            cols["y"].append(y)
            cols["groups"].append(np.full(n, si * 1_000_000_000 + ep, dtype=np.int64))
            cols["store"].append(np.full(n, si))
            cols["episode"].append(np.full(n, ep))
            cols["update"].append(np.arange(len(update_frame))[keep])
            cols["frame"].append(update_frame[keep])
            cols["since_cue"].append(_since_cue(trace, update_frame)[keep])
    out = {k: np.concatenate(v) for k, v in cols.items()}
    data = ProbeData(**out, kind=kind, label=name, features=features, stores=[str(s.url) for s in stores])
    if after_cue:
        if np.isnan(data.since_cue).any():
            raise AnalysisInputError(
                "after_cue needs a `label/phase` in every episode (0 while the cue is shown) to know when the cue "
                f"ended; {', '.join(data.stores)} has episodes without one. Capture from a dataset or env that records "
                "the phase (memlens record and memlens's envs, MIKASA included, do), or probe every update.")
        data = data.subset(data.since_cue >= 0)
    return data
