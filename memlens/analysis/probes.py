"""Probes: what can a linear read-out decode from the memory, when, and is it more than chance?

    >>> from memlens.analysis import probe
    >>> res = probe("traces/cue", "cue")                                   # doctest: +SKIP
    >>> res.mean, res.control_mean, res.selectivity, res.chance            # doctest: +SKIP
    (0.97, 0.26, 0.71, 0.27)
    >>> res.by_step[["since_cue", "score", "control_score"]]               # doctest: +SKIP
    >>> res.figure.show()                                                  # doctest: +SKIP

Done the way probing papers ask for (Hewitt & Liang 2019, "Designing and Interpreting Probes with
Control Tasks"):

- Cross-validation grouped by episode (`StratifiedGroupKFold` for classes, `GroupKFold` for
  regression): the updates of one episode are never on both sides of a split, so a probe cannot score
  by recognising an episode it was trained on.
- A control task: the same probe on random labels assigned per episode with the same distribution.
  Selectivity = score - control score. With grouped folds the control should sit at chance; a control
  well above chance means something still identifies episodes across the split.
- Chance: the frequency of the most common class (what always guessing it scores), per step too;
  for regression R2 = 0 (predicting the mean).
- Memory-free baselines through `features=`: `"observation"` (the current observation's embedding,
  `hidden/observation`) and `"initial"` (the memory every episode starts from: the floor).

Labels (one value per memory update, read at the frame of the update):

| label | kind | from |
|---|---|---|
| `cue`, `phase`, `n_targets`, `delay_steps`, any `label/<name>` | classification | the store's per-frame labels |
| `task` | classification | the episode's task text (episode attrs) |
| `"future_action"` / `FutureAction(horizon, dim)` | regression (R2) | `action/dataset` `horizon` frames later |
| `FutureAction(horizon, dim, binarize_at=x)` | classification | whether that action dimension exceeds x (a gripper, a sign) |

Features (`features=`): `"memory"` (all tokens of `site`, `[M*H]`), `"token:<i>"` (one token, `[H]`),
`"layer:<l>"` (entry l of `hidden/memory`, captured with `--hidden`, `[M*H]`), `"observation"` (`[H]`),
`"initial"` (`memory/read` at update 0 of the episode, `[M*H]`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from memlens.analysis.data import AnalysisInputError, FeaturesUnavailableError
from memlens.analysis.estimators import CLASSIFICATION, MemoryProbe, score
from memlens.analysis.probe_data import ProbeData, probe_data


# -- cross-validation --------------------------------------------------------------------------------

def check_probe_input(y: np.ndarray, groups: np.ndarray, kind: str, n_splits: int, label: str = "label") -> None:
    """Raise `AnalysisInputError` when grouped `n_splits`-fold cross-validation cannot score `y`."""
    n_groups = len(np.unique(groups))
    if n_splits < 2:
        raise AnalysisInputError(f"n_splits must be at least 2 for cross-validation, got {n_splits}.")
    if n_groups < n_splits:
        raise AnalysisInputError(
            f"{n_splits}-fold cross-validation grouped by episode needs at least {n_splits} episodes; found "
            f"{n_groups} ({len(y)} updates). Capture more episodes, or pass a smaller n_splits (at least 2).")
    flat = y.reshape(len(y), -1)
    if len(np.unique(flat, axis=0)) < 2:
        raise AnalysisInputError(
            f"label {label!r} has the single value {flat[0].tolist() if flat.shape[1] > 1 else flat[0, 0].item()!r} in all "
            f"{len(y)} updates of {n_groups} episodes: there is nothing to decode. Probe a label that varies, or "
            "capture episodes where it does (e.g. several cues, several delays).")
    if kind == CLASSIFICATION:
        classes, first = np.unique(y, return_inverse=True)
        per_class = {c: len(np.unique(groups[first == i])) for i, c in enumerate(classes.tolist())}
        rare = {c: n for c, n in per_class.items() if n < 2}
        if rare:
            raise AnalysisInputError(
                f"label {label!r}: classes {sorted(rare)} occur in only one episode each; grouped cross-validation needs "
                f"every class in at least 2 episodes (one to train on, one to test on). Episodes per class: "
                f"{per_class}. Capture more episodes of those classes.")


def grouped_folds(groups: np.ndarray, y: np.ndarray | None = None, *, n_splits: int = 5, seed: int = 0):
    """`(train, test)` index pairs in which no group (episode) is on both sides; stratified by `y`
    (StratifiedGroupKFold) when class labels are given, else GroupKFold."""
    groups = np.asarray(groups)
    if y is not None:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
            warnings.simplefilter("ignore", category=UserWarning)
            return list(splitter.split(np.zeros(len(groups)), y, groups))
    return list(GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(len(groups)), None, groups))


def control_labels(y: np.ndarray, groups: np.ndarray, kind: str, *, seed: int = 0) -> np.ndarray:
    """Random labels assigned per episode, with the distribution of `y` (the control task).

    - classes constant within each episode (a cue): the episodes' labels shuffled across episodes;
    - classes that vary within episodes (a phase): each episode maps the classes through its own random
      permutation, keeping which updates share a label but not what the label means;
    - regression: each episode takes another episode's targets (aligned by update, repeated if shorter).
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    ids, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(ids))]
    if kind == CLASSIFICATION and all((y[rows] == y[rows[0]]).all() for rows in members):
        return y[first][rng.permutation(len(ids))][inverse]
    out = y.copy()
    if kind == CLASSIFICATION:
        classes = np.unique(y)
        for rows in members:
            shuffled = classes[rng.permutation(len(classes))]
            out[rows] = shuffled[np.searchsorted(classes, y[rows])]
        return out
    order = rng.permutation(len(ids))  # a random cycle: every episode takes the next one's targets
    for i, g in enumerate(order):
        donor = y[members[order[(i + 1) % len(ids)]]]
        out[members[g]] = np.resize(donor, (len(members[g]), *y.shape[1:]))
    return out


def _fit_predict(estimator, X, train, test, ys: list, seed: int) -> list[np.ndarray]:
    """Fit on rows `train` (one fit per label vector in `ys`, labels given for all rows), predict `test`."""
    if not isinstance(estimator, MemoryProbe):
        return [clone(estimator).fit(X[train], y[train]).predict(X[test]) for y in ys]
    # The default probe: fit the reduction on (a subsample of) the training rows, project every row once,
    # and never copy the wide feature matrix.
    reducer = estimator.make_reducer(len(train), X.shape[1])
    if reducer is not None:
        rng = np.random.default_rng(seed)
        sub = train if len(train) <= reducer.max_rows else np.sort(rng.choice(train, reducer.max_rows, replace=False))
        Z = reducer.fit(X[sub]).transform(X)
    else:
        Z = X
    probes = estimator.fit_heads(Z[train], [y[train] for y in ys], reducer)
    return [p.head_.predict(Z[test]) for p in probes]


@dataclass
class _CV:
    pred: np.ndarray
    control_pred: np.ndarray | None
    scores: np.ndarray
    control_scores: np.ndarray | None
    folds: list


def _cross_validate(X, y, yc, groups, kind, estimator, n_splits, seed) -> _CV:
    folds = grouped_folds(groups, y if kind == CLASSIFICATION else None, n_splits=n_splits, seed=seed)
    pred = np.empty_like(y)
    control_pred = None if yc is None else np.empty_like(yc)
    scores, control_scores = [], []
    for train, test in folds:
        outs = _fit_predict(estimator, X, train, test, [y] + ([] if yc is None else [yc]), seed)
        pred[test] = outs[0]
        scores.append(score(kind, y[test], outs[0]))
        if yc is not None:
            control_pred[test] = outs[1]
            control_scores.append(score(kind, yc[test], outs[1]))
    return _CV(pred, control_pred, np.asarray(scores), None if yc is None else np.asarray(control_scores), folds)


def chance_level(kind: str, y) -> float:
    """Accuracy of always guessing the most common class; 0 (R2 of the mean) for regression."""
    if kind != CLASSIFICATION or not len(y):
        return 0.0
    return float(np.unique(np.asarray(y), return_counts=True)[1].max() / len(y))


# -- results -----------------------------------------------------------------------------------------

@dataclass
class ProbeResult:
    """Scores of one probe. `scores`, `control_scores`: one per fold; `chance`: see `chance_level`. `by_step`: a
    DataFrame with one row per update index (`update`, `since_cue`, `n`, `score`, `control_score`,
    `chance`), None with `by_step=False`. `predictions`/`control_predictions`: out-of-fold, per row of
    `data`. `figure`: score against step next to its control."""

    label: str
    features: str
    kind: str
    metric: str
    scores: np.ndarray
    control_scores: np.ndarray | None
    chance: float
    n_splits: int
    data: ProbeData
    predictions: np.ndarray
    control_labels: np.ndarray | None
    control_predictions: np.ndarray | None
    by_step: object = None  # pandas.DataFrame
    by_step_mode: str | None = None
    figure: object = None  # plotly.graph_objects.Figure

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.scores))

    @property
    def std(self) -> float:
        return float(np.nanstd(self.scores))

    @property
    def control_mean(self) -> float:
        return float(np.nanmean(self.control_scores)) if self.control_scores is not None else float("nan")

    @property
    def selectivity(self) -> float:
        return self.mean - self.control_mean

    @property
    def n_episodes(self) -> int:
        return len(np.unique(self.data.groups))

    def summary(self) -> str:
        text = (f"{self.label} from {self.features}: {self.metric} {self.mean:.3f} ± {self.std:.3f} over "
                f"{self.n_splits} folds ({len(self.data.y)} updates, {self.n_episodes} episodes), chance "
                f"{self.chance:.3f}")
        if self.control_scores is not None:
            text += f", control {self.control_mean:.3f}, selectivity {self.selectivity:+.3f}"
        return text

    def to_dict(self) -> dict:
        out = {"label": self.label, "features": self.features, "kind": self.kind, "metric": self.metric,
               "mean": self.mean, "std": self.std, "chance": self.chance, "control_mean": self.control_mean,
               "selectivity": self.selectivity, "n_splits": self.n_splits, "n_rows": len(self.data.y),
               "n_episodes": self.n_episodes, "stores": self.data.stores}
        if self.by_step is not None:
            out["by_step"] = self.by_step.to_dict(orient="list")
        return out

    def save(self, path, **kw):
        """Write the figure to `.html` or `.png` (see `memlens.analysis.figures.save_figure`)."""
        from memlens.analysis.figures import save_figure

        return save_figure(self.figure, path, **kw)

    def __repr__(self) -> str:
        return f"ProbeResult({self.summary()})"


def _by_step(data: ProbeData, y, pred, yc, control_pred, kind):
    import pandas as pd

    rows = []
    for u in np.unique(data.update):
        at = data.update == u
        since = data.since_cue[at]
        rows.append({
            "update": int(u),
            "since_cue": float(np.median(since)) if np.isfinite(since).all() else float("nan"),
            "n": int(at.sum()),
            "score": score(kind, y[at], pred[at]),
            "control_score": score(kind, yc[at], control_pred[at]) if yc is not None else float("nan"),
            "chance": chance_level(kind, y[at]),
        })
    return pd.DataFrame(rows)


def _by_step_separate(data: ProbeData, y, yc, kind, estimator, n_splits, seed):
    """One probe per update index, cross-validated over the episodes at that update (NaN where too few)."""
    import pandas as pd

    rows = []
    for u in np.unique(data.update):
        at = np.flatnonzero(data.update == u)
        since = data.since_cue[at]
        row = {"update": int(u), "since_cue": float(np.median(since)) if np.isfinite(since).all() else float("nan"),
               "n": len(at), "score": float("nan"), "control_score": float("nan"), "chance": float("nan")}
        try:
            check_probe_input(y[at], data.groups[at], kind, n_splits)
            cv = _cross_validate(data.X[at], y[at], None if yc is None else yc[at], data.groups[at], kind, estimator,
                                 n_splits, seed)
        except (AnalysisInputError, ValueError):
            rows.append(row)
            continue
        row.update(score=float(np.nanmean(cv.scores)), chance=chance_level(kind, y[at]),
                   control_score=float(np.nanmean(cv.control_scores)) if cv.control_scores is not None else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def probe_figure(results: ProbeResult | Sequence[ProbeResult], *, title: str | None = None):
    """Score against step (frames since the cue ended when the store has a phase label, else the update
    index) for one or several probes, each next to its control (dotted), with chance (grey)."""
    import plotly.graph_objects as go

    results = [results] if isinstance(results, ProbeResult) else list(results)
    fig = go.Figure()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    x_name = "update"
    for i, res in enumerate(results):
        colour = palette[i % len(palette)]
        tag = res.features if len(results) > 1 else "probe"
        if res.by_step is None:
            continue
        steps = res.by_step
        use_since = steps["since_cue"].notna().all()
        x_name = "since_cue" if use_since else "update"
        x = steps[x_name]
        fig.add_scatter(x=x, y=steps["score"], mode="lines+markers", name=f"{tag} ({res.mean:.2f})",
                        line={"color": colour})
        if res.control_scores is not None:
            fig.add_scatter(x=x, y=steps["control_score"], mode="lines", name=f"{tag} control ({res.control_mean:.2f})",
                            line={"color": colour, "dash": "dot"})
        if i == 0:
            fig.add_scatter(x=x, y=steps["chance"], mode="lines", name=f"chance ({res.chance:.2f})",
                            line={"color": "grey", "dash": "dash"})
    if x_name == "since_cue":
        fig.add_vline(x=0, line={"color": "black", "width": 1}, annotation_text="cue hidden")
    first = results[0]
    fig.update_layout(
        title=title or (f"probe: {first.label} from {first.features}: {first.metric} {first.mean:.2f} "
                        f"(control {first.control_mean:.2f}, selectivity {first.selectivity:+.2f})" if len(results) == 1
                        else f"probes of {first.label}"),
        xaxis_title="frames since the cue ended" if x_name == "since_cue" else "memory update",
        yaxis_title=f"{first.metric} ({first.by_step_mode or 'pooled'} probe, held-out episodes)",
        template="plotly_white", legend={"orientation": "h", "y": -0.2})
    return fig


def probe(store, label, *, features: str = "memory", site: str = "memory/write", n_splits: int = 5,
          control: bool = True, by_step: bool | str = True, estimator=None, episodes=None, seed: int = 0,
          allow_mixed: bool = False, after_cue: bool = False) -> ProbeResult:
    """Cross-validated linear probe of `label` from `features` of one trace store (or a list of stores
    captured with the same checkpoint), grouped by episode, with its control task and chance level.

    - `label`: a store label (`cue`, `phase`...), `"task"`, `"future_action"` or a `FutureAction`.
    - `features`: `"memory"`, `"token:<i>"`, `"layer:<l>"`, `"observation"`, `"initial"` (module docstring).
    - `by_step`: True or `"pooled"` scores the out-of-fold predictions of the one probe per update index;
      `"separate"` fits one probe per update index (each cross-validated over the episodes at that
      update; NaN where there are too few); False skips it.
    - `estimator`: any scikit-learn estimator (default `MemoryProbe` for the label's kind).
    - `after_cue`: probe only the updates made once the cue was gone (needs a phase label).

    Raises `AnalysisInputError` for a missing label or feature, fewer than `n_splits` episodes, a class
    seen in fewer than 2 episodes, a constant label, or stores of different checkpoints.
    """
    data = probe_data(store, label, features=features, site=site, episodes=episodes, allow_mixed=allow_mixed,
                      after_cue=after_cue)
    return probe_on(data, n_splits=n_splits, control=control, by_step=by_step, estimator=estimator, seed=seed)


def probe_on(data: ProbeData, *, n_splits: int = 5, control: bool = True, by_step: bool | str = True,
             estimator=None, seed: int = 0) -> ProbeResult:
    """`probe` on rows already gathered (`probe_data`, or your own `ProbeData` from any features)."""
    if by_step not in (True, False, "pooled", "separate"):
        raise AnalysisInputError(f"by_step must be True, False, 'pooled' or 'separate'; got {by_step!r}.")
    kind = data.kind
    check_probe_input(data.y, data.groups, kind, n_splits, data.label)
    if estimator is None:
        estimator = MemoryProbe(kind, random_state=seed)
    yc = control_labels(data.y, data.groups, kind, seed=seed) if control else None
    cv = _cross_validate(data.X, data.y, yc, data.groups, kind, estimator, n_splits, seed)
    mode = None if by_step is False else ("pooled" if by_step is True else by_step)
    steps = None
    if mode == "pooled":
        steps = _by_step(data, data.y, cv.pred, yc, cv.control_pred, kind)
    elif mode == "separate":
        steps = _by_step_separate(data, data.y, yc, kind, estimator, n_splits, seed)
    result = ProbeResult(label=data.label, features=data.features, kind=kind,
                         metric="accuracy" if kind == CLASSIFICATION else "r2", scores=cv.scores,
                         control_scores=cv.control_scores, chance=chance_level(kind, data.y), n_splits=n_splits, data=data,
                         predictions=cv.pred, control_labels=yc, control_predictions=cv.control_pred, by_step=steps,
                         by_step_mode=mode)
    if steps is not None:
        result.figure = probe_figure(result)
    return result


def probe_baselines(store, label, *, features: Sequence[str] = ("memory", "observation", "initial"), **kwargs):
    """The same probe from memory and from its memory-free baselines; returns (results, DataFrame summary,
    figure overlaying their curves). Feature sets the store lacks are skipped with a note in the summary."""
    import pandas as pd

    results, rows = [], []
    for feats in features:
        try:
            res = probe(store, label, features=feats, **kwargs)
        except FeaturesUnavailableError as exc:  # a baseline this store cannot give: noted, not fatal
            rows.append({"features": feats, "note": str(exc)})
            continue
        results.append(res)
        rows.append({"features": feats, "metric": res.metric, "mean": res.mean, "std": res.std,
                     "control": res.control_mean, "selectivity": res.selectivity, "chance": res.chance, "note": ""})
    fig = probe_figure(results) if results and results[0].by_step is not None else None
    return results, pd.DataFrame(rows), fig
