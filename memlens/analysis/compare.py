"""Two checkpoints on the same episodes: action error of each, how far apart they act, what each memory holds.

    >>> from memlens.analysis import compare_checkpoints
    >>> cmp = compare_checkpoints("traces/baseline", "traces/memory", names=("baseline", "memory"))  # doctest: +SKIP
    >>> cmp.summary, cmp.per_episode.head()                                                          # doctest: +SKIP
    >>> cmp.figure.show()                                                                            # doctest: +SKIP

The stores must hold the same episodes of the same data: captured from one dataset (episode ids mean
the same recorded episodes), or live in one env with one variant and seed. Only the episodes both hold
are compared; none in common is an error. For live rollouts the two policies' trajectories diverge, so
the action difference mixes what the policies do with where they are; there is no recorded action.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memlens.analysis.data import AnalysisInputError, as_store, checkpoint_of


def _source(store) -> dict:
    prov = store.provenance
    if "dataset" in prov:
        ds = prov["dataset"] or {}
        return {"dataset": ds.get("root") or ds.get("repo_id")}
    if "env" in prov:
        return {"env": prov["env"]}
    return {}


@dataclass
class CompareResult:
    """`per_episode`: a DataFrame, one row per shared episode: `length`, `mse_<a>`, `mse_<b>` (against the
    recorded actions; NaN for live rollouts), `action_l2` (mean per-frame L2 distance between the two
    checkpoints' actions). `per_frame`: name -> mean over episodes per frame. `probes`: name ->
    `ProbeResult` (None without memory or without the label). `figure`: both views side by side."""

    names: tuple[str, str]
    stores: tuple[str, str]
    checkpoints: tuple[str, str]
    episodes: list[int]
    per_episode: object  # pandas.DataFrame
    per_frame: dict[str, np.ndarray]
    summary: dict
    probes: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    figure: object = None

    def to_dict(self) -> dict:
        return {"names": list(self.names), "stores": list(self.stores), "checkpoints": list(self.checkpoints),
                "episodes": self.episodes, "summary": self.summary, "notes": self.notes,
                "per_episode": self.per_episode.to_dict(orient="list"),
                "probes": {k: (v.to_dict() if v is not None else None) for k, v in self.probes.items()}}

    def save(self, path, **kw):
        from memlens.analysis.figures import save_figure

        return save_figure(self.figure, path, **kw)


def compare_checkpoints(store_a, store_b, *, names: tuple[str, str] = ("a", "b"), episodes=None,
                        label: str | None = "cue", features: str = "memory", n_splits: int = 5,
                        seed: int = 0) -> CompareResult:
    """Compare the stores of two checkpoints on the episodes both hold (or `episodes`, which both must hold).

    `label`: probed from `features` of each store that has memory (None: no probes). Raises
    `AnalysisInputError` when the stores come from different data or share no episodes."""
    import pandas as pd

    from memlens.analysis.probes import probe

    a, b = as_store(store_a), as_store(store_b)
    if names[0] == names[1]:
        raise AnalysisInputError(f"names must differ, got {names}.")
    src_a, src_b = _source(a), _source(b)
    if src_a != src_b:
        raise AnalysisInputError(
            f"the two trace stores replayed different data ({a.url}: {src_a or 'unknown'}; {b.url}: {src_b or 'unknown'}), "
            "so the same episode index names different episodes. Capture both checkpoints on the same dataset (or "
            "the same env, variant and seed).")
    have_a, have_b = set(a.episodes()), set(b.episodes())
    shared = sorted(have_a & have_b)
    if episodes is not None:
        missing = sorted(set(int(e) for e in episodes) - set(shared))
        if missing:
            raise AnalysisInputError(f"episodes {missing} are not in both stores; {a.url} holds {sorted(have_a)}, "
                                     f"{b.url} holds {sorted(have_b)}.")
        shared = sorted(set(int(e) for e in episodes))
    if not shared:
        raise AnalysisInputError(
            f"the two trace stores share no episodes: {a.url} holds {sorted(have_a)[:10]}"
            f"{' ...' if len(have_a) > 10 else ''}, {b.url} holds {sorted(have_b)[:10]}{' ...' if len(have_b) > 10 else ''}."
            " Capture the same episodes with both checkpoints, e.g. memlens capture CKPT DATASET --episodes 0:20 for each.")
    notes = []
    if checkpoint_of(a) == checkpoint_of(b):
        notes.append(f"both stores were captured with the same checkpoint ({checkpoint_of(a)}).")
    rows, frame_err = [], {names[0]: [], names[1]: [], "action_l2": []}
    for ep in shared:
        ta, tb = a.episode(ep), b.episode(ep)
        pa, pb = ta.load("action/predicted"), tb.load("action/predicted")
        if "action/dataset" in ta and len(pa) != len(pb):
            raise AnalysisInputError(f"episode {ep} has {len(pa)} frames in {a.url} but {len(pb)} in {b.url}: the stores "
                                     "did not replay the same data.")
        n = min(len(pa), len(pb))
        l2 = np.linalg.norm(pa[:n] - pb[:n], axis=-1)
        row = {"episode": ep, "length": n, "action_l2": float(l2.mean())}
        frame_err["action_l2"].append(l2)
        for name, trace, pred in ((names[0], ta, pa), (names[1], tb, pb)):
            if "action/dataset" in trace:
                err = ((pred[:n] - trace.load("action/dataset")[:n]) ** 2).mean(axis=-1)
                row[f"mse_{name}"] = float(err.mean())
                frame_err[name].append(err)
            else:
                row[f"mse_{name}"] = float("nan")
        row.update({f"label_{k}": v for k, v in (ta.attrs.get("labels") or {}).items()})
        if "success" in ta.attrs:
            row[f"success_{names[0]}"], row[f"success_{names[1]}"] = ta.attrs["success"], tb.attrs.get("success")
        rows.append(row)
    per_episode = pd.DataFrame(rows)
    per_frame = {k: _mean_ragged(v) for k, v in frame_err.items() if v}
    summary = {"n_episodes": len(shared), "action_l2": float(per_episode["action_l2"].mean())}
    for name in names:
        summary[f"mse_{name}"] = float(per_episode[f"mse_{name}"].mean())
    if np.isfinite(summary[f"mse_{names[0]}"]) and np.isfinite(summary[f"mse_{names[1]}"]):
        summary[f"{names[1]}_better_rate"] = float((per_episode[f"mse_{names[1]}"] < per_episode[f"mse_{names[0]}"]).mean())
    probes = {}
    if label is not None:
        for name, store in zip(names, (a, b), strict=True):
            if "memory/write" not in store.episode(shared[0]):
                probes[name] = None
                notes.append(f"{name}: no memory in {store.url}, so no probe.")
                continue
            try:
                res = probe(store, label, features=features, n_splits=n_splits, episodes=shared, seed=seed)
            except AnalysisInputError as exc:
                probes[name] = None
                notes.append(f"{name}: no probe of {label!r}: {exc}")
                continue
            probes[name] = res
            summary[f"probe_{name}"] = res.mean
            summary[f"probe_{name}_selectivity"] = res.selectivity
    result = CompareResult(names=tuple(names), stores=(str(a.url), str(b.url)), checkpoints=(checkpoint_of(a), checkpoint_of(b)),
                           episodes=shared, per_episode=per_episode, per_frame=per_frame, summary=summary, probes=probes,
                           notes=notes)
    result.figure = compare_figure(result)
    return result


def _mean_ragged(arrays: list[np.ndarray]) -> np.ndarray:
    out = np.full((len(arrays), max(len(x) for x in arrays)), np.nan)
    for i, x in enumerate(arrays):
        out[i, : len(x)] = x
    return np.nanmean(out, axis=0)


def compare_figure(result: CompareResult):
    """Left: per-episode action error of each checkpoint. Right: per frame, each one's error and the
    distance between their actions (means over episodes)."""
    from plotly.subplots import make_subplots

    a, b = result.names
    df = result.per_episode
    fig = make_subplots(rows=1, cols=2, subplot_titles=("action error per episode (MSE vs recorded)",
                                                        "per frame, mean over episodes"))
    for name, colour in ((a, "#7f7f7f"), (b, "#1f77b4")):
        fig.add_bar(x=df["episode"].astype(str), y=df[f"mse_{name}"], name=f"{name} MSE", marker_color=colour,
                    row=1, col=1)
        if name in result.per_frame:
            fig.add_scatter(y=result.per_frame[name], mode="lines", name=f"{name} MSE per frame",
                            line={"color": colour}, row=1, col=2)
    fig.add_scatter(y=result.per_frame["action_l2"], mode="lines", name=f"L2({a} - {b})",
                    line={"color": "#d62728", "dash": "dot"}, row=1, col=2)
    probe_text = "; ".join(f"{n}: probe {r.label} {r.mean:.2f} (sel. {r.selectivity:+.2f})"
                           for n, r in result.probes.items() if r is not None)
    fig.update_layout(title=f"{a} vs {b} on {len(result.episodes)} episodes" + (f" — {probe_text}" if probe_text else ""),
                      barmode="group", template="plotly_white")
    fig.update_xaxes(title_text="episode", row=1, col=1)
    fig.update_xaxes(title_text="frame", row=1, col=2)
    return fig
