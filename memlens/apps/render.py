"""Clickable pictures for the app: a heat map and a scatter drawn straight into RGB arrays.

The app shows these as images rather than plotly figures because an image click reports its pixel,
which maps back to a (step, token) cell or to the nearest point without any browser-side code, and
drawing into numpy keeps every interaction fast (a few milliseconds, also on 10,000 points).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

CURSOR = (255, 40, 40)
HIGHLIGHT = (255, 255, 255)


@lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    """256 x 3 uint8 lookup table sampled from a plotly colour scale (same colours as the figures)."""
    from plotly.colors import sample_colorscale, unlabel_rgb

    return np.array([unlabel_rgb(c) for c in sample_colorscale(cmap, np.linspace(0, 1, 256).tolist())],
                    dtype=np.float64).round().astype(np.uint8)


def colorize(values: np.ndarray, cmap: str = "Viridis", vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """`[..]` floats -> `[.., 3]` uint8 through a plotly colour scale (NaN drawn grey)."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    lo = float(finite.min()) if vmin is None and finite.size else (vmin or 0.0)
    hi = float(finite.max()) if vmax is None and finite.size else (vmax if vmax is not None else 1.0)
    scaled = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    rgb = _lut(cmap)[(np.nan_to_num(scaled) * 255).round().astype(np.int64)]
    rgb[~np.isfinite(v)] = 128
    return rgb


@dataclass
class HeatmapPicture:
    """A `[rows, cols]` heat map scaled to whole pixels per cell; `cell(x, y)` inverts a click."""

    base: np.ndarray  # [rows*ch, cols*cw, 3] uint8
    cw: int
    ch: int

    @classmethod
    def draw(cls, values: np.ndarray, width: int = 640, cell_height: int = 28, cmap: str = "Viridis") -> HeatmapPicture:
        """`values[col, row]` (steps x tokens, as the analysis returns them) drawn with tokens as rows."""
        grid = np.asarray(values).T  # rows = tokens, cols = steps
        cw = max(2, width // max(1, grid.shape[1]))
        img = np.repeat(np.repeat(colorize(grid), cell_height, axis=0), cw, axis=1)
        return cls(img, cw, cell_height)

    def with_cursor(self, col: int) -> np.ndarray:
        img = self.base.copy()
        x0 = col * self.cw
        img[:, max(0, x0 - 1): x0 + 1] = CURSOR
        img[:, x0 + self.cw - 1: x0 + self.cw + 1] = CURSOR
        return img

    def cell(self, x: int, y: int) -> tuple[int, int]:
        """(col, row) of the cell under pixel (x, y), clipped to the grid."""
        cols, rows = self.base.shape[1] // self.cw, self.base.shape[0] // self.ch
        return int(np.clip(x // self.cw, 0, cols - 1)), int(np.clip(y // self.ch, 0, rows - 1))


@dataclass
class ScatterPicture:
    """Points drawn into a square picture; `nearest(x, y)` returns the index of the closest point."""

    base: np.ndarray
    px: np.ndarray  # [N, 2] pixel coordinates (x, y) of every point

    @classmethod
    def draw(cls, xy: np.ndarray, colour_values: np.ndarray, size: int = 480, radius: int = 2,
             cmap: str = "Viridis") -> ScatterPicture:
        xy = np.asarray(xy, dtype=np.float64)
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        margin = 12
        px = margin + (xy - lo) / np.where(hi > lo, hi - lo, 1.0) * (size - 2 * margin)
        px[:, 1] = size - px[:, 1]  # y up
        pic = Image.new("RGB", (size, size), (250, 250, 250))
        draw = ImageDraw.Draw(pic)
        colours = colorize(colour_values, cmap)
        for (x, y), c in zip(px, colours):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=tuple(int(v) for v in c))
        return cls(np.asarray(pic), px)

    def with_path(self, rows: np.ndarray, current: int | None = None) -> np.ndarray:
        """The picture with points `rows` joined as a path and point `current` (a row index) ringed."""
        pic = Image.fromarray(self.base.copy())
        draw = ImageDraw.Draw(pic)
        pts = [tuple(p) for p in self.px[rows]]
        if len(pts) > 1:
            draw.line(pts, fill=(20, 20, 20), width=2)
        for x, y in pts:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), outline=(20, 20, 20))
        if current is not None:
            x, y = self.px[current]
            draw.ellipse((x - 8, y - 8, x + 8, y + 8), outline=CURSOR, width=3)
        return np.asarray(pic)

    def nearest(self, x: float, y: float, among: np.ndarray | None = None) -> int:
        rows = np.arange(len(self.px)) if among is None else np.asarray(among)
        d = np.hypot(self.px[rows, 0] - x, self.px[rows, 1] - y)
        return int(rows[np.argmin(d)])
