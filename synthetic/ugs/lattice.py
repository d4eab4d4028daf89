"""Where a UGS scene's rasters lie: the product's global lattice of 1/100800° pixels in EPSG:4326.

Pixel edges sit on integer multiples of 1/100800° (from lon 0 / lat 0, hence also from -180° / 90°), so
the engine reads the scene's blocks without resampling. The layout is drawn in a local metric frame
(x east, y south, metres from the raster's upper-left corner) and rasterised through `metric_transform`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from affine import Affine

from mapgen.tiles import Box, Grid

from ..grid import M_PER_DEG
from ..grid import check_bounds as grid_bounds

RESOLUTION = Fraction(1, 100800)  # the ugs product's input_resolution: 1/28″ ≈ 1.10 m N–S
RESOLUTION_TEXT = "1/100800"
# A float RGB image and its companions at this many pixels stay around 2 GB at most.
MAX_PIXELS = 64_000_000
_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


@dataclass(frozen=True)
class UgsGrid:
    box: Box  # the raster's pixels on the global lattice (rows from 90°, cols from -180°)
    inner: Box  # the requested bounds, snapped outward

    @property
    def grid(self) -> Grid:
        return Grid(RESOLUTION)

    @property
    def shape(self) -> tuple[int, int]:
        return self.box.shape

    @property
    def transform(self) -> Affine:
        return self.grid.transform(self.box)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.grid.bounds(self.box)

    @property
    def west(self) -> float:
        return self.bounds[0]

    @property
    def north(self) -> float:
        return self.bounds[3]

    @property
    def pixel_m(self) -> tuple[float, float]:
        """Ground size (dx, dy) in metres of a pixel at the scene's central latitude."""
        w, s, e, n = self.bounds
        coslat = max(math.cos(math.radians(0.5 * (s + n))), 0.05)
        res = float(RESOLUTION)
        return (res * M_PER_DEG * coslat, res * M_PER_DEG)

    @property
    def size_m(self) -> tuple[float, float]:
        dx, dy = self.pixel_m
        return (self.box.width * dx, self.box.height * dy)

    @property
    def inner_m(self) -> tuple[float, float, float, float]:
        """The requested region in the metric frame: (x0, y0, x1, y1)."""
        dx, dy = self.pixel_m
        c, r = self.inner.col - self.box.col, self.inner.row - self.box.row
        return (c * dx, r * dy, (c + self.inner.width) * dx, (r + self.inner.height) * dy)

    @property
    def metric_transform(self) -> Affine:
        """Pixel (col, row) → metric (x, y); what `rasterize` needs for geometries in the metric frame."""
        dx, dy = self.pixel_m
        return Affine(dx, 0.0, 0.0, 0.0, dy, 0.0)

    def to_lonlat(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) metric coordinates → (N, 2) lon, lat."""
        dx, dy = self.pixel_m
        res = float(RESOLUTION)
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([self.west + xy[:, 0] / dx * res, self.north - xy[:, 1] / dy * res], axis=-1)

    def describe(self) -> dict:
        return {"crs": "EPSG:4326", "resolution": RESOLUTION_TEXT, "bounds": list(self.bounds),
                "lattice_origin": [0.0, 0.0],
                # the raster's west and north edges as whole multiples of the resolution from lon 0 / lat 0
                "lattice_index": {"west": self.box.col - 180 * 100800, "north": 90 * 100800 - self.box.row},
                "width": self.box.width, "height": self.box.height, "transform": list(self.transform)[:6],
                "pixel_m": list(self.pixel_m)}


def check_date(date: str | int) -> str:
    """The imagery's one date as an ISO year, month or day ('2021', '2021-06', '2021-06-15')."""
    if isinstance(date, bool) or not isinstance(date, str | int):
        raise ValueError(f"date must be a year or an ISO date, got {date!r}")
    text = str(date).strip()
    match = _DATE.fullmatch(text)
    if match is None:
        raise ValueError(f"{date!r} is not a date: give one year (2021), month (2021-06) or day (2021-06-15)")
    import datetime

    year, month, day = (int(g) if g else None for g in match.groups())
    try:
        datetime.date(year, month or 1, day or 1)
    except ValueError:
        raise ValueError(f"{date!r} is not a date of the calendar") from None
    if year < 1:
        raise ValueError(f"{date!r}: the year must be at least 1")
    return text


def check_bounds(bounds: Sequence[float]) -> tuple[float, float, float, float]:
    w, s, e, n = grid_bounds(bounds)
    if abs(0.5 * (s + n)) > 80.0:
        raise ValueError(f"bounds at latitude {0.5 * (s + n):.1f}: the synthetic cities stop at ±80°")
    return (w, s, e, n)


def snap(bounds: tuple[float, float, float, float], margin_px: int) -> UgsGrid:
    """The smallest lattice box covering `bounds`, grown by `margin_px` on every side."""
    if int(margin_px) != margin_px or margin_px < 0:
        raise ValueError(f"margin_px must be a non-negative integer, got {margin_px}")
    inner = Grid(RESOLUTION).box(bounds)
    box = inner.grown(int(margin_px))
    if box.width * box.height > MAX_PIXELS:
        raise ValueError(f"region too large for the synthetic city generator: {box.width}x{box.height} pixels "
                         f"exceeds {MAX_PIXELS}; generate it in parts of at most ~0.07 degrees")
    return UgsGrid(box=box, inner=inner)
