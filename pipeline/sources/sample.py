"""A cheap look at a region's inputs before any work: which share of the region has data, and whether the
values look like what the checkpoint was trained on.

The region is sampled on a coarse lattice (at most a few hundred points a side, only the points inside the
region's polygon count); a source reads those points the way the run reads its pixels (band mapping,
scale, offset, no data), and the per-band medians of the points with data are compared with the product's
normalisation (the checkpoint's training mean and standard deviation).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from mapgen.tiles import Box, Grid, as_fraction
from mapgen.workflows.product import InputSpec

from .base import Bounds, year_span

MAX_SIDE = 256  # sample points per side of the region's bounding box
FAR = 3.0  # a band's median this many training σ from the training mean is "far"

Area = Bounds | BaseGeometry


def as_geometry(area: Area) -> BaseGeometry:
    return shapely.box(*area) if isinstance(area, tuple) else area


def bounds_parts(area: Area) -> list[Bounds]:
    """The bounding boxes to search or sample: one, or for a region split at the antimeridian (it reaches
    both -180° and 180°) one per side, since its own bounding box would be the whole band of latitudes."""
    geometry = as_geometry(area)
    west, south, east, north = geometry.bounds
    if west > -180 or east < 180 or isinstance(area, tuple):
        return [geometry.bounds]
    parts = [shapely.clip_by_rect(geometry, -180, -90, 0, 90), shapely.clip_by_rect(geometry, 0, -90, 180, 90)]
    return [p.bounds for p in parts if not p.is_empty] or [geometry.bounds]


@dataclass(frozen=True)
class SampleGrid:
    """Sample points of one part of the region: the pixel centres of `box` on a coarse `grid`."""

    grid: Grid
    box: Box
    inside: np.ndarray  # (H, W) bool: points inside the region


def sample_grids(area: Area, max_side: int = MAX_SIDE) -> list[SampleGrid]:
    geometry = as_geometry(area)
    grids = []
    for bounds in bounds_parts(area):
        west, south, east, north = bounds
        side = max(east - west, north - south, 1e-9)
        grid = Grid(as_fraction(f"{side / max_side:.2g}"))  # a round fraction: the lattice stays exact
        box = grid.box(bounds)
        t = grid.transform(box)
        xs = t.c + t.a * (np.arange(box.width) + 0.5)
        ys = t.f + t.e * (np.arange(box.height) + 0.5)
        inside = shapely.contains_xy(geometry, *np.meshgrid(xs, ys))
        if not inside.any():  # a region thinner than the spacing: sample its bounding box
            inside[:] = True
        grids.append(SampleGrid(grid, box, inside))
    return grids


@dataclass(frozen=True)
class Sample:
    """What the sample points of one input and year showed, in product units (after scale and offset)."""

    points: int  # sample points inside the region
    with_data: int  # of them, those with a value in every band
    medians: tuple[float, ...]  # per band (spec order), over the points with data; NaN when none
    scale: float | None = None  # the scale the values went through (None: not known, e.g. a cache)
    order: tuple[str, ...] | None = None  # the file's bands as read (names, file order)
    indexes: tuple[int, ...] | None = None  # the file bands read for the spec's bands (1-based)

    @property
    def share(self) -> float:
        return self.with_data / self.points if self.points else 0.0


def summarise(values: Sequence[np.ndarray], grids: Sequence[SampleGrid], **hints) -> Sample:
    """The `Sample` of (bands, H, W) arrays read on each of `grids` (NaN = no data)."""
    points = np.concatenate([v[:, g.inside] for v, g in zip(values, grids, strict=True)], axis=1)
    ok = np.isfinite(points).all(axis=0)
    medians = tuple(float(np.median(points[b, ok])) if ok.any() else math.nan for b in range(points.shape[0]))
    return Sample(int(points.shape[1]), int(ok.sum()), medians, **hints)


class Coverage(dict):
    """Per year, the share of the region with data (a plain dict year → share, as `Source.check` returns);
    `measured` says how ('pixels': sampled points with data, 'footprints': the bounding box of scenes);
    `notes` are warnings about the values (far from the training distribution)."""

    def __init__(self, shares: dict[int, float], *, measured: str = "pixels", notes: Sequence[str] = ()) -> None:
        super().__init__(shares)
        self.measured = measured
        self.notes = list(notes)


def sampled_coverage(spec: InputSpec, samples: dict[int, Sample], label: str) -> Coverage:
    """Coverage per year from the samples, with the warnings the values call for."""
    return Coverage({y: s.share for y, s in sorted(samples.items())}, measured="pixels",
                    notes=distribution_warnings(spec, samples, label))


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def distribution_warnings(spec: InputSpec, samples: dict[int, Sample], label: str) -> list[str]:
    """A line per band whose median lies beyond ±3 σ of the checkpoint's training mean, with the likely
    cause (judged from every band: one factor off everywhere is a scale, a better fit in another order is
    the band order)."""
    if spec.mean is None or spec.std is None:
        return []
    mean, std = np.asarray(spec.mean, float), np.asarray(spec.std, float)
    years = {y: np.asarray(s.medians, float) for y, s in samples.items() if s.with_data}
    if not years:
        return []
    far = {b: [y for y, m in sorted(years.items()) if abs(m[b] - mean[b]) > FAR * std[b]]
           for b in range(len(spec.bands))}
    if not any(far.values()):
        return []
    seen = np.median(np.stack(list(years.values())), axis=0)
    cause = _likely_cause(spec, seen, mean, std, next(s for s in samples.values() if s.with_data))
    bands = "; ".join(f"band {spec.bands[b]} median {_fmt(float(np.median([years[y][b] for y in ys])))} in "
                      f"{year_span(ys)} (training mean {_fmt(mean[b])} ± {_fmt(std[b])})"
                      for b, ys in far.items() if ys)
    return [f"{spec.name} ({label}): values beyond ±{FAR:g} σ of the checkpoint's training distribution: {bands}; "
            f"likely cause: {cause}"]


def _likely_cause(spec: InputSpec, seen: np.ndarray, mean: np.ndarray, std: np.ndarray, sample: Sample) -> str:
    positive = seen > 0
    ratio = float(np.exp(np.mean(np.log(seen[positive] / mean[positive])))) if positive.any() else math.nan
    scale = sample.scale
    if scale is not None and math.isfinite(ratio):
        better = f"--scale {scale / ratio:.2g} would bring the median to the mean"
    else:
        better = f"values should shrink by {1 / ratio:.2g}× to meet the mean" if math.isfinite(ratio) else ""
    if 100 <= float(np.median(seen)) <= 10000 or ratio > 500:
        return (f"values ~{_fmt(float(np.median(seen)))} look like digital numbers, not reflectance: give "
                f"--scale 0.0001 for Sentinel-2 DN (reflectance × 10000), or the scale of your data ({better})")
    if ratio < 0.3 or ratio > 3:
        how = "small (values ≪ the mean" if ratio < 0.3 else "large (values ≫ the mean"
        hint = ""
        if scale is not None and 0.5 <= scale / ratio <= 2:
            hint = "; the file may hold reflectance already: leave --scale out"
        elif scale is not None and 1e-3 <= scale / ratio <= 1e-2:
            hint = "; 8-bit imagery is a stretch: its scale is about k/255, k the reflectance its 255 stands for"
        return f"a scale too {how}, scale now {_fmt(scale) if scale is not None else 'unknown'}): {better}{hint}"
    order = _better_order(seen, mean, std)
    if order is not None:
        bands = sample.order or spec.bands
        indexes = sample.indexes or tuple(range(1, len(spec.bands) + 1))
        names = [_plain(b) for b in bands]
        for k, j in enumerate(order):  # the file band read as spec band k fits spec band j
            names[indexes[k] - 1] = _plain(spec.bands[j])
        return (f"bands in a surprising order: the medians fit {', '.join(spec.bands[j] for j in order)} much "
                f"better; if so give --bands {','.join(names)}")
    return ("imagery unlike the training data (another sensor or processing level, haze, snow, an offset); "
            "check --scale, --offset and --bands")


def _better_order(seen: np.ndarray, mean: np.ndarray, std: np.ndarray) -> tuple[int, ...] | None:
    """An order of the bands that fits the training distribution much better (Σ z² 3× smaller) with every
    band within ±3 σ, moving as few bands as possible (the bands of the visible are alike: of the orders
    that fit, the least surprising one)."""
    n = len(seen)
    if n < 2 or n > 8:
        return None

    def cost(perm: tuple[int, ...]) -> np.ndarray:
        return (seen - mean[list(perm)]) / std[list(perm)]

    identity = float(np.sum(cost(tuple(range(n))) ** 2))
    fits = [(sum(p != k for k, p in enumerate(perm)), float(np.sum(cost(perm) ** 2)), perm)
            for perm in itertools.permutations(range(n))
            if perm != tuple(range(n)) and bool(np.all(np.abs(cost(perm)) <= FAR))]
    fits = [f for f in fits if f[1] * 3 <= identity]
    return min(fits)[2] if fits else None


_PLAIN = {"B2": "blue", "B3": "green", "B4": "red", "B8": "nir"}


def _plain(band: str) -> str:
    return _PLAIN.get(band, band)
