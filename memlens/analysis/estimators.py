"""The estimators of memlens's analyses, on the scikit-learn contract: arrays in, `fit` returns `self`,
`__init__` only stores its keyword arguments (so `clone`, `get_params`/`set_params` and Pipelines work),
learned attributes end in `_`. Reading trace stores is the business of the functions that call them.

- `SubsampledPCA`: PCA with its basis fitted on at most `max_rows` rows (randomized SVD); the one
  reduction of wide memory features, used by the probes and by the UMAP embedding.
- `MemoryProbe`: [SubsampledPCA ->] StandardScaler -> LogisticRegression or Ridge.
- `MemoryEmbedding`: memory states `[N, M, H]` or `[N, F]` -> [SubsampledPCA ->] UMAP coordinates `[N, C]`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import time
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from memlens.analysis.data import CLASSIFICATION, REGRESSION, AnalysisInputError

# Above LARGE states the embedding's defaults trade a little layout polish for time (bench/bench_umap.py): PCA
# initialisation instead of spectral, and LARGE_EPOCHS optimisation epochs instead of umap-learn's 200.
LARGE, LARGE_EPOCHS = 10_000, 100


_EIGSH_SEED = threading.local()


@contextlib.contextmanager
def _seeded_eigsh(seed: int):
    """Within this block (this thread only), `scipy.sparse.linalg.eigsh` calls made without `rng=` get one
    seeded from `seed`. umap-learn's spectral initialisation calls eigsh without one, and SciPy >= 1.17 then
    draws ARPACK's restart vectors from OS entropy: a seeded UMAP of a graph with several cliques came out
    different on every run. Other threads' calls, and calls outside the block, are unchanged."""
    import scipy.sparse.linalg as linalg

    if "rng" not in inspect.signature(linalg.eigsh).parameters:  # SciPy < 1.17: ARPACK's own fixed seed
        yield
        return
    if not getattr(linalg.eigsh, "_memlens_seeded", False):
        original = linalg.eigsh

        @functools.wraps(original)
        def eigsh(*args, **kwargs):
            seed_now = getattr(_EIGSH_SEED, "value", None)
            if seed_now is not None and kwargs.get("rng") is None:
                kwargs["rng"] = np.random.default_rng(seed_now)
            return original(*args, **kwargs)

        eigsh._memlens_seeded = True
        linalg.eigsh = eigsh
    previous = getattr(_EIGSH_SEED, "value", None)
    _EIGSH_SEED.value = seed
    try:
        yield
    finally:
        _EIGSH_SEED.value = previous


class SubsampledPCA(TransformerMixin, BaseEstimator):
    """PCA fitted on at most `max_rows` rows (randomized SVD), projecting without copying the input.

    Memory features are wide (M*H = 3,840 at full size) and rows many (one per update of every
    episode); fitting the basis on a subsample keeps a cross-validated probe on 100k rows fast."""

    def __init__(self, n_components: int = 128, *, max_rows: int = 5000, random_state=0):
        self.n_components = n_components
        self.max_rows = max_rows
        self.random_state = random_state

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float32)
        rng = np.random.default_rng(self.random_state)
        rows = X if len(X) <= self.max_rows else X[np.sort(rng.choice(len(X), self.max_rows, replace=False))]
        k = min(self.n_components, *rows.shape)
        pca = PCA(k, svd_solver="randomized", iterated_power=2, random_state=self.random_state).fit(rows)
        self.components_ = pca.components_.astype(np.float32)  # [k, D]
        self.mean_ = pca.mean_.astype(np.float32)
        self.explained_variance_ratio_ = pca.explained_variance_ratio_
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        check_is_fitted(self, "components_")
        X = np.asarray(X, dtype=np.float32)
        return X @ self.components_.T - self.mean_ @ self.components_.T


class MemoryProbe(BaseEstimator):
    """A linear probe: [SubsampledPCA ->] StandardScaler -> LogisticRegression (classification) or Ridge
    (regression), with the scikit-learn estimator contract (`fit` returns self, `predict`, `score`:
    accuracy or R2, `get_params`/`set_params`, learned attributes end in `_`).

    `n_components`: None (no reduction), an int, or "auto" (128 PCA components when there are more than
    1,024 features and 10,000 rows; below that the probe is fast without it). The reduction is
    unsupervised and fitted inside each training fold."""

    def __init__(self, task: str = CLASSIFICATION, *, C: float = 1.0, alpha: float = 1.0,
                 n_components: int | str | None = "auto", max_iter: int = 1000, random_state=0):
        self.task = task
        self.C = C
        self.alpha = alpha
        self.n_components = n_components
        self.max_iter = max_iter
        self.random_state = random_state

    def _components(self, n_samples: int, n_features: int) -> int | None:
        if self.n_components == "auto":
            return 128 if n_features > 1024 and n_samples > 10_000 else None
        return self.n_components

    def _head(self):
        if self.task == CLASSIFICATION:
            return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter,
                                                                      random_state=self.random_state))
        if self.task == REGRESSION:
            return make_pipeline(StandardScaler(), Ridge(alpha=self.alpha))
        raise ValueError(f"MemoryProbe.task must be {CLASSIFICATION!r} or {REGRESSION!r}, got {self.task!r}.")

    def make_reducer(self, n_samples: int, n_features: int) -> SubsampledPCA | None:
        """The unfitted unsupervised reduction for data of this size (None: the probe sees raw features)."""
        k = self._components(n_samples, n_features)
        return SubsampledPCA(k, random_state=self.random_state) if k else None

    def fit_heads(self, Z, ys: Sequence[np.ndarray], reducer: SubsampledPCA | None) -> list[MemoryProbe]:
        """Probes sharing the fitted `reducer`, one per label vector in `ys`, fitted on reduced rows `Z`."""
        fitted = []
        for y in ys:
            est = clone(self)
            est.reducer_ = reducer
            with warnings.catch_warnings():  # lbfgs on perfectly separable probes: converged enough
                warnings.filterwarnings("ignore", message=".*lbfgs failed to converge.*")
                est.head_ = self._head().fit(Z, y)
            est.n_features_in_ = reducer.n_features_in_ if reducer is not None else Z.shape[1]
            if self.task == CLASSIFICATION:
                est.classes_ = est.head_.classes_
            fitted.append(est)
        return fitted

    def fit_many(self, X, ys: Sequence[np.ndarray]) -> list[MemoryProbe]:
        """One fitted probe per label vector in `ys`, sharing one fitted reduction (the real task and
        its control see the same features, and the reduction is paid once)."""
        X = np.asarray(X, dtype=np.float32)
        reducer = self.make_reducer(*X.shape)
        if reducer is not None:
            reducer.fit(X)
        return self.fit_heads(reducer.transform(X) if reducer is not None else X, ys, reducer)

    def fit(self, X, y):
        fitted = self.fit_many(X, [y])[0]
        self.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
        return self

    def _reduce(self, X):
        check_is_fitted(self, "head_")
        X = np.asarray(X, dtype=np.float32)
        return self.reducer_.transform(X) if self.reducer_ is not None else X

    def predict(self, X):
        Z = self._reduce(X)
        return self.head_.predict(Z)

    def predict_proba(self, X):
        if self.task != CLASSIFICATION:
            raise AttributeError("predict_proba is for classification probes.")
        Z = self._reduce(X)
        return self.head_.predict_proba(Z)

    def score(self, X, y):
        return score(self.task, y, self.predict(X))


def score(kind: str, y, pred) -> float:
    """Accuracy (classification) or R2 averaged over outputs (regression)."""
    y, pred = np.asarray(y), np.asarray(pred)
    if kind == CLASSIFICATION:
        return float(np.mean(y == pred)) if len(y) else float("nan")
    if len(y) < 2:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(r2_score(y, pred, multioutput="uniform_average")) if np.ptp(y, axis=0).any() else float("nan")


class MemoryEmbedding(TransformerMixin, BaseEstimator):
    """UMAP of memory states, after a `SubsampledPCA` to `pca_dims` when the features are wider.

    `X`: `[N, M, H]` (all tokens concatenated, or one `token`) or `[N, F]`. `fit` sets `embedding_`
    (`[N, n_components]` coordinates of the fitted rows), `pca_` (None without reduction), `reducer_` (the
    umap-learn UMAP), `n_features_in_`, `n_neighbors_`, `init_`, `n_epochs_` and `fit_seconds_`. Above
    10,000 rows `init="auto"` / `n_epochs=None` mean PCA initialisation and 100 epochs; below, umap-learn's
    spectral initialisation and its own epoch count. With a `random_state` the fit is reproducible on any
    number of cores: it runs on one BLAS thread."""

    def __init__(self, *, n_components: int = 2, token: int | None = None, pca_dims: int | None = 50,
                 pca_max_rows: int = 20_000, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "euclidean",
                 n_epochs: int | None = None, init: str = "auto", low_memory: bool = True,
                 random_state: int | None = 0):
        self.n_components = n_components
        self.token = token
        self.pca_dims = pca_dims
        self.pca_max_rows = pca_max_rows
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.n_epochs = n_epochs
        self.init = init
        self.low_memory = low_memory
        self.random_state = random_state

    def features(self, X) -> np.ndarray:
        """`[N, F]` rows of `X` as this embedding reads them (all tokens flattened, or one `token`)."""
        x = np.asarray(X, dtype=np.float32)
        if x.ndim == 2:
            if self.token is not None:
                raise AnalysisInputError("token= needs states shaped [N, M, H]; got a flat [N, F] array.")
            return x
        if x.ndim != 3:
            raise AnalysisInputError(f"memory states must be [N, M, H] or [N, F]; got shape {x.shape}.")
        if self.token is None:
            return x.reshape(len(x), -1)
        if not -x.shape[1] <= self.token < x.shape[1]:
            raise AnalysisInputError(f"token {self.token} is out of range: the states have {x.shape[1]} memory "
                                     f"tokens (0..{x.shape[1] - 1}).")
        return x[:, self.token]

    def _reduce(self, feats: np.ndarray) -> np.ndarray:
        return self.pca_.transform(feats) if self.pca_ is not None else feats

    @contextlib.contextmanager
    def _reproducible(self):
        """Seeded: one BLAS thread and seeded ARPACK restarts while umap-learn runs (see `_seeded_eigsh`)."""
        with contextlib.ExitStack() as stack:
            if self.random_state is not None:
                from threadpoolctl import threadpool_limits

                stack.enter_context(threadpool_limits(1, user_api="blas"))
                if isinstance(self.random_state, (int, np.integer)):  # (a RandomState has no seed to hand on)
                    stack.enter_context(_seeded_eigsh(int(self.random_state)))
            yield

    def fit(self, X, y=None) -> MemoryEmbedding:
        import umap

        feats = self.features(X)
        self.n_features_in_ = feats.shape[1]
        # Seeded, the same states give the same map on any number of cores, every time. Two things moved every
        # point by tens of units between two seeded fits of a captured store (which repeats states: every
        # episode starts from the same learned memory, so its neighbour graph falls apart into cliques):
        # the BLAS thread count (the PCA's rounding decides the neighbours among repeated states) and the
        # random vectors ARPACK draws from OS entropy when its Lanczos run breaks down on such a graph.
        with self._reproducible():
            t0 = time.perf_counter()
            self.pca_ = None
            if self.pca_dims and feats.shape[1] > self.pca_dims:
                self.pca_ = SubsampledPCA(self.pca_dims, max_rows=self.pca_max_rows,
                                          random_state=self.random_state).fit(feats)
            z = self._reduce(feats)
            t1 = time.perf_counter()
            self.n_neighbors_ = min(self.n_neighbors, len(z) - 1)
            large = len(z) > LARGE
            self.init_ = self.init if self.init != "auto" else ("pca" if large else "spectral")
            self.n_epochs_ = self.n_epochs if self.n_epochs is not None else (LARGE_EPOCHS if large else None)
            self.reducer_ = umap.UMAP(
                n_components=self.n_components, n_neighbors=self.n_neighbors_, min_dist=self.min_dist,
                metric=self.metric, n_epochs=self.n_epochs_, init=self.init_, low_memory=self.low_memory,
                random_state=self.random_state,
                transform_seed=42 if self.random_state is None else self.random_state)
            with warnings.catch_warnings():  # "n_jobs overridden by random_state", spectral init fallbacks
                warnings.simplefilter("ignore")
                self.embedding_ = np.asarray(self.reducer_.fit_transform(z), dtype=np.float32)
        self.fit_seconds_ = {"pca": t1 - t0, "umap": time.perf_counter() - t1}
        return self

    def transform(self, X) -> np.ndarray:
        """`[N, n_components]` coordinates of new rows in the fitted map (the map is not refitted)."""
        check_is_fitted(self, "reducer_")
        feats = self.features(X)
        if feats.shape[1] != self.n_features_in_:
            raise AnalysisInputError(
                f"these memory states have {feats.shape[1]} features per row, the embedding was fitted on "
                f"{self.n_features_in_} (token={self.token}); expected states of the same memory size (M x H). "
                "Project states captured from policies with the same memory shape.")
        with warnings.catch_warnings(), self._reproducible():
            warnings.simplefilter("ignore")
            return np.asarray(self.reducer_.transform(self._reduce(feats)), dtype=np.float32)

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X).embedding_
