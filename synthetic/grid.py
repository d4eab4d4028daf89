"""The raster lattice of a synthetic scene: input checks, outward snapping, LR/HR transforms."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from affine import Affine

# Mean Earth radius (IUGG); metres per degree only sizes procedural objects, so a sphere is plenty.
EARTH_RADIUS_M = 6_371_008.8
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0

# One uint8 map at 2.5 m is this many bytes; a few live at once, so this keeps a run well under 2 GB.
MAX_HR_PIXELS = 400_000_000


@dataclass(frozen=True)
class SceneGrid:
    """Where the rasters lie: low resolution (res) and high resolution (res/scale), same extent."""

    res: float
    scale: int
    col0: int  # lattice index of the left edge: x = -180 + col0 * res
    row0: int  # lattice index of the top edge: y = 90 - row0 * res
    width: int  # low-resolution pixels
    height: int

    @property
    def hr_res(self) -> float:
        return self.res / self.scale

    @property
    def hr_width(self) -> int:
        return self.width * self.scale

    @property
    def hr_height(self) -> int:
        return self.height * self.scale

    @property
    def west(self) -> float:
        return -180.0 + self.col0 * self.res

    @property
    def north(self) -> float:
        return 90.0 - self.row0 * self.res

    @property
    def east(self) -> float:
        return -180.0 + (self.col0 + self.width) * self.res

    @property
    def south(self) -> float:
        return 90.0 - (self.row0 + self.height) * self.res

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0.0, self.west, 0.0, -self.res, self.north)

    @property
    def hr_transform(self) -> Affine:
        return Affine(self.hr_res, 0.0, self.west, 0.0, -self.hr_res, self.north)

    @property
    def hr_pixel_m(self) -> tuple[float, float]:
        """Ground size (dx, dy) in metres of one high-resolution pixel at the scene's central latitude."""
        lat = 0.5 * (self.south + self.north)
        # Clamp so that scenes near the poles stay finite; they are odd but not refused.
        coslat = max(math.cos(math.radians(lat)), 0.05)
        return (self.hr_res * M_PER_DEG * coslat, self.hr_res * M_PER_DEG)

    def hr_to_lonlat(self, col: float, row: float) -> tuple[float, float]:
        return (self.west + col * self.hr_res, self.north - row * self.hr_res)

    def describe(self) -> dict:
        return {
            "crs": "EPSG:4326",
            "bounds": list(self.bounds),
            "lattice_origin": [-180.0, 90.0],
            "lattice_index": {"col0": self.col0, "row0": self.row0},
            "lr": {"res": self.res, "width": self.width, "height": self.height,
                   "transform": list(self.transform)[:6]},
            "hr": {"res": self.hr_res, "width": self.hr_width, "height": self.hr_height,
                   "transform": list(self.hr_transform)[:6]},
        }


def check_bounds(bounds: Sequence[float]) -> tuple[float, float, float, float]:
    """(west, south, east, north) as floats, or a one-line ValueError naming what is wrong with them."""
    try:
        w, s, e, n = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be four numbers (west, south, east, north), got {bounds!r}") from None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise ValueError(f"bounds must be finite numbers, got {(w, s, e, n)}")
    if not (-180.0 <= w <= 180.0 and -180.0 <= e <= 180.0):
        raise ValueError(f"bounds longitude outside [-180, 180]: west={w}, east={e}; is the region in EPSG:4326?")
    if not (-90.0 <= s <= 90.0 and -90.0 <= n <= 90.0):
        raise ValueError(f"bounds latitude outside [-90, 90]: south={s}, north={n}; is the region in EPSG:4326?")
    if not (w < e and s < n):
        raise ValueError(f"bounds are empty or inverted (need west < east and south < north): {(w, s, e, n)}")
    return w, s, e, n


def check_request(bounds: Sequence[float], years: Sequence[int], res: float, scale: int,
                  margin_px: int) -> tuple[tuple[float, float, float, float], list[int]]:
    """Validate the user's request; raise a one-line ValueError naming the first problem found."""
    w, s, e, n = check_bounds(bounds)
    if isinstance(years, str | bytes):
        raise ValueError(f"years must be a sequence of integers, got {years!r}")
    ys = list(years)
    if not ys:
        raise ValueError("no years given")
    try:
        if any(int(y) != y for y in ys):
            raise ValueError
        ys = [int(y) for y in ys]
    except (TypeError, ValueError):
        raise ValueError(f"years must be integers, got {list(years)!r}") from None
    if any(b <= a for a, b in zip(ys, ys[1:], strict=False)):
        raise ValueError(f"years must be strictly increasing, got {ys}")
    if any(y < 1 or y > 9999 for y in ys):
        raise ValueError(f"years must lie in 1..9999, got {ys}")
    if not (math.isfinite(res) and 0.0 < res <= 1.0):
        raise ValueError(f"res must be a pixel size in degrees in (0, 1], got {res}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if int(margin_px) != margin_px or margin_px < 0:
        raise ValueError(f"margin_px must be a non-negative integer, got {margin_px}")
    return (w, s, e, n), ys


def snap_grid(bounds: tuple[float, float, float, float], res: float, scale: int, margin_px: int) -> SceneGrid:
    """Snap bounds outward to the lattice anchored at (-180, 90), then add the margin.

    Pixel edges are integers on the lattice, so scenes of neighbouring regions share pixel edges and
    the pipeline's blocks can be cut anywhere without resampling. The margin is clipped at the edges
    of the globe rather than refused, since such bounds are valid input.
    """
    w, s, e, n = bounds
    # The 1e-9 tolerances absorb float error when a bound already sits on a pixel edge.
    c0 = math.floor((w + 180.0) / res + 1e-9)
    c1 = math.ceil((e + 180.0) / res - 1e-9)
    r0 = math.floor((90.0 - n) / res + 1e-9)
    r1 = math.ceil((90.0 - s) / res - 1e-9)
    c1, r1 = max(c1, c0 + 1), max(r1, r0 + 1)
    ncols, nrows = round(360.0 / res), round(180.0 / res)
    c0, r0 = max(c0 - margin_px, 0), max(r0 - margin_px, 0)
    c1, r1 = min(c1 + margin_px, max(ncols, c1)), min(r1 + margin_px, max(nrows, r1))
    grid = SceneGrid(res=float(res), scale=int(scale), col0=c0, row0=r0, width=c1 - c0, height=r1 - r0)
    if grid.hr_width * grid.hr_height > MAX_HR_PIXELS:
        raise ValueError(
            f"region too large for the synthetic generator: {grid.hr_width}x{grid.hr_height} pixels at "
            f"res/scale exceeds {MAX_HR_PIXELS}; generate it in parts of at most ~0.4 degrees")
    return grid
