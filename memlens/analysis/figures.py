"""Helpers the analysis views share: writing a plotly figure to PNG or HTML, and averaging episodes of
different lengths.

    >>> import plotly.graph_objects as go
    >>> from memlens.analysis.figures import save_figure
    >>> save_figure(go.Figure(go.Scatter(y=[1, 3, 2])), "line.html")   # doctest: +SKIP
    PosixPath('line.html')

PNG export goes through plotly's kaleido, which drives a headless Chrome or Chromium (Debian's
`chromium`, installed by `scripts/setup.sh`); HTML needs nothing but plotly and opens offline.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from memlens.errors import UserError

FIGURE_SUFFIXES = (".png", ".html")


class FigureExportError(UserError):
    """A figure could not be written (unsupported suffix, or no browser for PNG export)."""


def _point_kaleido_at_chromium() -> None:
    # kaleido (through choreographer) looks for Chrome in the usual places and on PATH; name Debian's
    # chromium explicitly when the user has not chosen a browser, so a PATH without /usr/bin still works.
    if "BROWSER_PATH" not in os.environ:
        found = shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if Path(p).exists()), None)
        if found:
            os.environ["BROWSER_PATH"] = found


def save_figure(fig, path, *, width: int = 1000, height: int = 500, scale: float = 2.0) -> Path:
    """Write `fig` to `path`: `.html` (self-contained, works offline) or `.png` (`width` x `height` CSS
    pixels times `scale`). Returns the path. Raises `FigureExportError` with what to do when it cannot."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FIGURE_SUFFIXES:
        raise FigureExportError(f"cannot write a figure to {str(path)!r}: expected a file name ending in .png or "
                                f".html, found {suffix or 'no suffix'!r}. Name the output e.g. memory_evolution.png.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        fig.write_html(str(path), include_plotlyjs=True, full_html=True)
        return path
    _point_kaleido_at_chromium()
    try:
        fig.write_image(str(path), format="png", width=width, height=height, scale=scale)
    except Exception as exc:  # kaleido missing, no browser, or the browser failed to start
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise FigureExportError(
            f"could not write the PNG {str(path)!r}: plotly's PNG export (kaleido) needs a Chrome or Chromium "
            f"browser and failed with {type(exc).__name__}: {reason}. "
            "Install Debian's chromium (apt-get install chromium, as scripts/setup.sh does) or set BROWSER_PATH to "
            "a Chrome binary; or write .html instead, which needs no browser.") from exc
    return path


def stack_ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """`[E]` arrays of shape `[U_e, ...]` -> `[E, max U_e, ...]` float, padded with NaN (for nan-means)."""
    if not arrays:
        raise ValueError("stack_ragged needs at least one array")
    n = max(len(a) for a in arrays)
    out = np.full((len(arrays), n, *arrays[0].shape[1:]), np.nan, dtype=np.float64)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def nan_mean_std(stacked: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation and count of the non-NaN values along `axis` (NaN where the count is 0),
    without numpy's "mean of empty slice" warnings."""
    valid = ~np.isnan(stacked)
    count = valid.sum(axis=axis)
    total = np.where(valid, stacked, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        dev = np.where(valid, stacked - np.expand_dims(mean, axis), 0.0)
        std = np.where(count > 0, np.sqrt((dev ** 2).sum(axis=axis) / np.maximum(count, 1)), np.nan)
    return mean, std, count
