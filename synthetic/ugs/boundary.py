"""A GUB-like urban boundary: the cities' built-up footprint seen at GAIA's 30 m, closed, hole-free and
generalised into smooth polygons that do not follow every block."""

from __future__ import annotations

import numpy as np
import shapely
import shapely.geometry
from affine import Affine
from rasterio.features import rasterize, shapes

CELL_M = 30.0  # GAIA's pixel


def _dilate(mask: np.ndarray, k: int) -> np.ndarray:
    """Binary dilation with a (2k+1)² square (box sums through cumulative sums)."""
    if k <= 0:
        return mask.copy()
    a = np.pad(mask.astype(np.int32), k)
    c = a.cumsum(0).cumsum(1)
    c = np.pad(c, ((1, 0), (1, 0)))
    n = 2 * k + 1
    s = c[n:, n:] - c[:-n, n:] - c[n:, :-n] + c[:-n, :-n]
    return s > 0


def urban_boundary(footprint, size: tuple[float, float], *, close_m: float = 90.0, smooth_m: float = 45.0,
                   min_area_m2: float = 20_000.0) -> list[shapely.Polygon]:
    """Polygons (scene metres) around the built-up `footprint` polygons: rasterised at 30 m, closed by
    `close_m`, holes filled, traced, rounded by ± `smooth_m` and simplified; specks below `min_area_m2` go."""
    w, h = size
    geoms = [g for g in footprint if g is not None and not g.is_empty]
    if not geoms:
        return []
    nx, ny = int(np.ceil(w / CELL_M)), int(np.ceil(h / CELL_M))
    tr = Affine(CELL_M, 0, 0, 0, CELL_M, 0)
    coarse = rasterize(((g, 1) for g in geoms), out_shape=(ny, nx), transform=tr, dtype="uint8") > 0
    k = max(int(round(close_m / CELL_M)), 0)
    closed = ~_dilate(~_dilate(coarse, k), k)  # closing: dilation then erosion (the dual of a dilation)
    closed = _dilate(~_dilate(~closed, 1), 1)  # opening by one cell: no spurs one road wide
    polys = [shapely.Polygon(shapely.geometry.shape(g).exterior)
             for g, v in shapes(closed.astype(np.uint8), mask=closed, transform=tr) if v == 1]
    if not polys:
        return []
    merged = shapely.union_all(polys)
    smooth = merged.buffer(smooth_m, quad_segs=4).buffer(-smooth_m, quad_segs=4).simplify(CELL_M / 3)
    smooth = smooth.intersection(shapely.box(0, 0, w, h))
    out = []
    for p in getattr(smooth, "geoms", [smooth]):
        if p.geom_type == "Polygon" and p.area >= min_area_m2:
            out.append(shapely.Polygon(p.exterior))
    out.sort(key=lambda p: (-p.area, p.bounds))
    return out
