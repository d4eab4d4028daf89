"""A regular pixel lattice in EPSG:4326, anchored at (-180°, 90°).

Every raster mapgen reads or writes sits on such a lattice. Pixel indices are global integers, so a
block, a tile and a window are all integer boxes on the same lattice: their edges meet exactly and no
floating-point drift decides which pixel belongs where. Resolutions are kept as fractions of a degree
for the same reason (0.1° / 1113 px = 1/11130°).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from affine import Affine

ORIGIN_X = Fraction(-180)
ORIGIN_Y = Fraction(90)


def as_fraction(value: float | str | Fraction) -> Fraction:
    """Parse a resolution or size given as 0.1, "0.1", "1/11130" or a Fraction, exactly."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, str):
        return Fraction(value.strip())
    # Through str so that 0.1 means one tenth, not the nearest binary double.
    return Fraction(repr(float(value)))


@dataclass(frozen=True, order=True)
class Box:
    """An integer pixel box on a lattice: rows [row, row + height), cols [col, col + width)."""

    row: int
    col: int
    height: int
    width: int

    @property
    def row_stop(self) -> int:
        return self.row + self.height

    @property
    def col_stop(self) -> int:
        return self.col + self.width

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def scaled(self, factor: int) -> Box:
        return Box(self.row * factor, self.col * factor, self.height * factor, self.width * factor)

    def grown(self, pad: int) -> Box:
        return Box(self.row - pad, self.col - pad, self.height + 2 * pad, self.width + 2 * pad)

    def union(self, other: Box) -> Box:
        row, col = min(self.row, other.row), min(self.col, other.col)
        return Box(row, col, max(self.row_stop, other.row_stop) - row, max(self.col_stop, other.col_stop) - col)

    def intersection(self, other: Box) -> Box | None:
        """The pixels both boxes hold, or None when they do not overlap."""
        row0, row1 = max(self.row, other.row), min(self.row_stop, other.row_stop)
        col0, col1 = max(self.col, other.col), min(self.col_stop, other.col_stop)
        return Box(row0, col0, row1 - row0, col1 - col0) if row0 < row1 and col0 < col1 else None

    def contains(self, other: Box) -> bool:
        return (self.row <= other.row and self.col <= other.col
                and other.row_stop <= self.row_stop and other.col_stop <= self.col_stop)

    def slices_in(self, outer: Box) -> tuple[slice, slice]:
        """Slices that select this box out of an array covering `outer`."""
        if not outer.contains(self):
            raise ValueError(f"{self} is not inside {outer}")
        r, c = self.row - outer.row, self.col - outer.col
        return slice(r, r + self.height), slice(c, c + self.width)


@dataclass(frozen=True)
class Grid:
    """A lattice of square pixels of `res` degrees in EPSG:4326 with pixel (0, 0) at (-180°, 90°)."""

    res: Fraction
    crs: str = "EPSG:4326"

    def scaled(self, factor: int) -> Grid:
        """The lattice with `factor`× finer pixels (e.g. the 2.5 m output of a 10 m input)."""
        return Grid(self.res / factor, self.crs)

    def pixels(self, degrees: float | Fraction) -> int:
        """How many pixels span `degrees`; refuses sizes that are not a whole number of pixels."""
        n = as_fraction(degrees) / self.res
        if n.denominator != 1:
            raise ValueError(f"{float(degrees)}° is not a whole number of {float(self.res):.3g}° pixels")
        return int(n)

    def box(self, bounds: tuple[float, float, float, float]) -> Box:
        """The smallest box of whole pixels that covers (west, south, east, north)."""
        west, south, east, north = (as_fraction(v) for v in bounds)
        col0 = math.floor((west - ORIGIN_X) / self.res)
        col1 = math.ceil((east - ORIGIN_X) / self.res)
        row0 = math.floor((ORIGIN_Y - north) / self.res)
        row1 = math.ceil((ORIGIN_Y - south) / self.res)
        return Box(row0, col0, row1 - row0, col1 - col0)

    def bounds(self, box: Box) -> tuple[float, float, float, float]:
        """(west, south, east, north) of a box, in degrees."""
        return (
            float(ORIGIN_X + box.col * self.res),
            float(ORIGIN_Y - box.row_stop * self.res),
            float(ORIGIN_X + box.col_stop * self.res),
            float(ORIGIN_Y - box.row * self.res),
        )

    def transform(self, box: Box) -> Affine:
        """The affine geotransform of an array that covers `box`."""
        res = float(self.res)
        return Affine(res, 0.0, float(ORIGIN_X + box.col * self.res),
                      0.0, -res, float(ORIGIN_Y - box.row * self.res))

    def aligned_box(self, transform: Affine, width: int, height: int, tol: float = 1e-6) -> Box | None:
        """The box of a raster with this transform if it lies on this lattice (north-up, same pixel
        size, origin on a pixel corner), else None."""
        res = float(self.res)
        if abs(transform.b) > 0 or abs(transform.d) > 0:
            return None
        if abs(transform.a - res) > tol * res or abs(transform.e + res) > tol * res:
            return None
        col = (transform.c - float(ORIGIN_X)) / res
        row = (float(ORIGIN_Y) - transform.f) / res
        if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
            return None
        return Box(round(row), round(col), height, width)
