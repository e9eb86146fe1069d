"""`intervene_replay`: replay dataset episodes with and without an intervention and compare the actions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from memlens.errors import UserError
from memlens.interventions.modes import make
from memlens.interventions.override import MemoryOverride, check_applicable
from memlens.interventions.result import InterventionResult


def _episode_label(ds, ep: int, name: str = "label.cue"):
    if name not in ds.meta.features:
        return None
    start = int(ds.meta.episodes[ep]["dataset_from_index"])
    return int(np.asarray(ds.hf_dataset[start][name]).reshape(-1)[0])


def intervene_replay(ckpt, dataset, *, mode: str, from_update: int = 0, episodes=None, n_episodes: int | None = None,
                     root=None,
                     batch_episodes: int = 8, every_update: bool = False, seed: int = 0, device: str = "cpu",
                     progress: Callable[[int, int], None] | None = None) -> InterventionResult:
    """Replay dataset episodes with and without the intervention; per frame, the L2 distance between the
    two runs' predicted actions, and each run's mean squared error against the recorded actions (for
    `swap`, also against the donor episode's recorded actions). `episodes` default: the first
    `n_episodes` of the dataset (all without `n_episodes`)."""
    import torch

    from memlens.runtime.checkpoint import load_policy
    from memlens.runtime.replay import check_episodes, open_matching_dataset, replay_actions

    loaded = load_policy(ckpt, device=device)
    intervention = make(mode, num_tokens=loaded.config.num_mem_tokens, seed=seed)
    check_applicable(loaded.policy, from_update)
    ds = open_matching_dataset(loaded, dataset, root)
    if episodes is None:
        total = ds.meta.total_episodes
        episodes = list(range(total if n_episodes is None else min(n_episodes, total)))
    episodes = check_episodes(ds, episodes)
    if batch_episodes < 1:
        raise UserError(f"--batch-episodes must be at least 1, got {batch_episodes}.")
    labels = [_episode_label(ds, e) for e in episodes]
    n_steps = loaded.config.n_action_steps
    rows, done = [], 0
    for group, donors in intervention.batches(episodes, batch_episodes, labels, seed):
        torch.manual_seed(seed)
        reference = replay_actions(loaded, ds, group)
        torch.manual_seed(seed)
        with MemoryOverride(loaded.policy, intervention, from_update=from_update, every_update=every_update,
                            donors=donors) as override:
            intervened = replay_actions(loaded, ds, group)
        for b, ep in enumerate(group):
            ref, new = reference[b], intervened[b]
            l2 = np.linalg.norm(new["predicted"] - ref["predicted"], axis=-1)
            at = min(from_update * n_steps, len(l2))
            donor = None if donors is None or donors[b] == b else group[donors[b]]
            row = {
                "episode": ep, "donor": donor, "length": len(l2), "intervention_frame": at,
                "applied_at_updates": sorted(set(override.applied)),
                "label": labels[episodes.index(ep)],
                "donor_label": None if donor is None else labels[episodes.index(donor)],
                "l2": l2.round(6).tolist(),
                "mean_l2_before": float(l2[:at].mean()) if at else 0.0,
                "mean_l2_after": float(l2[at:].mean()) if at < len(l2) else float("nan"),
                "mse_reference": float(np.mean((ref["predicted"] - ref["recorded"]) ** 2)),
                "mse_intervened": float(np.mean((new["predicted"] - ref["recorded"]) ** 2)),
            }
            if donor is not None:
                own, theirs = ref["recorded"][at:], intervened[donors[b]]["recorded"][at:]
                n = min(len(own), len(theirs))
                pred = new["predicted"][at : at + n]
                row["mse_after_to_own"] = float(np.mean((pred - own[:n]) ** 2)) if n else float("nan")
                row["mse_after_to_donor"] = float(np.mean((pred - theirs[:n]) ** 2)) if n else float("nan")
            rows.append(row)
            done += 1
        if progress is not None:
            progress(done, len(episodes))
    rows.sort(key=lambda r: episodes.index(r["episode"]))
    result = InterventionResult(intervention.name, from_update, every_update, "dataset", str(loaded.path), rows,
                                _replay_summary(rows), config={"dataset": str(dataset), "seed": seed,
                                                               "batch_episodes": batch_episodes})
    result.figure = replay_figure(result)
    return result


def _replay_summary(rows: list[dict]) -> dict:
    before = [r["mean_l2_before"] for r in rows if r["intervention_frame"]]
    after = [r["mean_l2_after"] for r in rows if np.isfinite(r["mean_l2_after"])]
    out = {
        "n_episodes": len(rows),
        "mean_l2_before": float(np.mean(before)) if before else 0.0,
        "max_l2_before": float(max((max(r["l2"][: r["intervention_frame"]], default=0.0) for r in rows), default=0.0)),
        "mean_l2_after": float(np.mean(after)) if after else float("nan"),
        "mse_reference": float(np.mean([r["mse_reference"] for r in rows])),
        "mse_intervened": float(np.mean([r["mse_intervened"] for r in rows])),
    }
    swapped = [r for r in rows if "mse_after_to_donor" in r and np.isfinite(r["mse_after_to_donor"])
               and (r["label"] is None or r["label"] != r["donor_label"])]  # a same-cue donor cannot flip anything
    if swapped:
        out["n_swapped"] = len(swapped)
        out["closer_to_donor_rate"] = float(np.mean([r["mse_after_to_donor"] < r["mse_after_to_own"] for r in swapped]))
    return out


def replay_figure(result: InterventionResult):
    """Mean (over episodes) L2 distance between intervened and reference actions at every frame."""
    import plotly.graph_objects as go

    length = max(r["length"] for r in result.episodes)
    l2 = np.full((len(result.episodes), length), np.nan)
    for i, r in enumerate(result.episodes):
        l2[i, : r["length"]] = r["l2"]
    fig = go.Figure()
    fig.add_scatter(x=np.arange(length), y=np.nanmean(l2, axis=0), mode="lines", name="mean over episodes")
    fig.add_scatter(x=np.arange(length), y=np.nanmax(l2, axis=0), mode="lines", name="max", line={"dash": "dot"})
    at = result.episodes[0]["intervention_frame"]
    fig.add_vline(x=at, line={"color": "black", "width": 1},
                  annotation_text=f"{result.mode} at update {result.from_update}")
    fig.update_layout(title=f"memory {result.mode}{' (every update)' if result.every_update else ''}: change in "
                            f"predicted actions ({result.summary['n_episodes']} episodes)",
                      xaxis_title="frame", yaxis_title="L2(intervened - reference action)", template="plotly_white")
    return fig
