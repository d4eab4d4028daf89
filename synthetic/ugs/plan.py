"""The vector plan of a synthetic city scene: patches in painter's order, each of one material, with its UGS
type, tree cover, height (buildings and cars cast shadows) and colour group, plus lane paint lines.

Everything is in the scene's metric frame (x east, y south, metres from the raster's upper-left corner).
"""

from __future__ import annotations

import numpy as np
import shapely

from .materials import VEGETATED, M

PAINT_WHITE, PAINT_YELLOW = 1, 2


class Plan:
    """Patches in painter's order: what is added later lies on top."""

    def __init__(self) -> None:
        self._geoms: list[np.ndarray] = []
        self._cols: dict[str, list[np.ndarray]] = {k: [] for k in ("mat", "ugs", "cover", "tree", "height", "group",
                                                                   "shade")}
        self.group_mat: list[int] = []
        self.paint: list[tuple[object, int]] = []

    def groups(self, n: int, material: str) -> np.ndarray:
        """`n` new colour groups of `material` (patches of a group share one colour)."""
        start = len(self.group_mat)
        self.group_mat.extend([M[material]] * n)
        return np.arange(start, start + n, dtype=np.int32)

    def add(self, geoms, material: str, *, ugs: int = 0, cover=0.0, tree: int = 0, height=0.0,
            group=None, shade=1.0) -> np.ndarray:
        """Add polygons of one material; returns the mask of those kept (the non-empty ones).

        ugs: the Table 1 type (0 unless the material is vegetation); cover: the share of the patch under
        tree crowns of kind `tree`; height: metres above ground (> 0 casts a shadow); group: colour group(s)
        (default: a new group per polygon); shade: a brightness factor on the group's colour.
        """
        g = np.atleast_1d(np.asarray(geoms, dtype=object))
        if g.ndim != 1:
            g = g.ravel()
        n = len(g)
        if n == 0:
            return np.zeros(0, dtype=bool)
        mixed = np.flatnonzero(shapely.get_type_id(g) == 7)  # collections (from intersections): their polygons
        if len(mixed):
            g = g.copy()
            g[mixed] = [_polygonal(x) for x in g[mixed]]
        keep = shapely.area(g) > 0.05  # None and empty geometries have no area (nan or 0)
        if not VEGETATED[M[material]]:
            ugs = 0
        if group is None:
            group = self.groups(n, material)
        cols = {"mat": np.full(n, M[material], np.uint8), "ugs": np.broadcast_to(np.uint8(ugs), (n,)),
                "cover": np.broadcast_to(np.asarray(cover, np.float32), (n,)),
                "tree": np.broadcast_to(np.uint8(tree), (n,)),
                "height": np.broadcast_to(np.asarray(height, np.float32), (n,)),
                "group": np.broadcast_to(np.asarray(group, np.int32), (n,)),
                "shade": np.broadcast_to(np.asarray(shade, np.float32), (n,))}
        if not keep.any():
            return keep
        self._geoms.append(g[keep])
        for k, v in cols.items():
            self._cols[k].append(np.ascontiguousarray(v[keep]))
        return keep

    def add_paint(self, lines, value: int) -> None:
        for line in np.atleast_1d(np.asarray(lines, dtype=object)):
            if line is not None and not line.is_empty:
                self.paint.append((line, value))

    def __len__(self) -> int:
        return sum(len(g) for g in self._geoms)

    def arrays(self) -> dict[str, np.ndarray]:
        """Concatenated columns; patch i + 1 is the raster id of the i-th patch (0 is the empty ground)."""
        out = {k: np.concatenate(v) if v else np.zeros(0) for k, v in self._cols.items()}
        out["geoms"] = np.concatenate(self._geoms) if self._geoms else np.zeros(0, dtype=object)
        out["group_mat"] = np.asarray(self.group_mat, dtype=np.uint8)
        return out


def _polygonal(geom):
    polys = [p for p in shapely.get_parts(geom) if shapely.get_type_id(p) in (3, 6)]
    parts = [q for p in polys for q in shapely.get_parts(p)]
    return shapely.MultiPolygon(parts) if len(parts) > 1 else (parts[0] if parts else shapely.Polygon())


def boxes(u0, v0, u1, v1) -> np.ndarray:
    """Axis-aligned rectangles (vectorised)."""
    return shapely.box(np.asarray(u0, float), np.asarray(v0, float), np.asarray(u1, float), np.asarray(v1, float))


def frame(geoms, cx: float, cy: float, angle: float) -> np.ndarray:
    """Geometries of a local frame (u, v) rotated by `angle` and centred on (cx, cy) → scene metres."""
    c, s = np.cos(angle), np.sin(angle)

    def move(xy: np.ndarray) -> np.ndarray:
        u, v = xy[:, 0], xy[:, 1]
        return np.stack([cx + u * c - v * s, cy + u * s + v * c], axis=-1)

    return shapely.transform(np.asarray(geoms, dtype=object), move)


def unframe(geoms, cx: float, cy: float, angle: float) -> np.ndarray:
    """The inverse of `frame`: scene metres → the local frame."""
    c, s = np.cos(angle), np.sin(angle)

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0] - cx, xy[:, 1] - cy
        return np.stack([x * c + y * s, -x * s + y * c], axis=-1)

    return shapely.transform(np.asarray(geoms, dtype=object), move)


def wobbly(cx: float, cy: float, radius: float, harmonics, n: int = 96) -> shapely.Polygon:
    """A closed blob: a circle whose radius wobbles with harmonics [(k, amplitude, phase)]."""
    phi = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(phi)
    for k, a, p in harmonics:
        r += a * np.cos(k * phi + p)
    r = radius * np.maximum(r, 0.2)
    return shapely.Polygon(np.stack([cx + r * np.cos(phi), cy + r * np.sin(phi)], axis=-1))


def random_blob(rng: np.random.Generator, cx: float, cy: float, radius: float, rough: float = 0.18,
                n: int = 64) -> shapely.Polygon:
    harmonics = [(k, float(rng.uniform(0, rough)) / (1 + 0.4 * (k - 2)), float(rng.uniform(0, 2 * np.pi)))
                 for k in range(2, 7)]
    return wobbly(cx, cy, radius, harmonics, n)


def wiggly_line(rng: np.random.Generator, p0, p1, amp_frac: float, step: float = 20.0) -> shapely.LineString:
    """A line from p0 to p1 bent by a few smooth sine waves perpendicular to it."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    length = float(np.hypot(*(p1 - p0)))
    n = max(int(length / step), 3)
    t = np.linspace(0.0, 1.0, n)
    off = np.zeros(n)
    for _ in range(3):
        lam = rng.uniform(0.2, 0.7)
        off += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / lam + rng.uniform(0, 2 * np.pi))
    off *= amp_frac * length / 3.0
    d = (p1 - p0) / max(length, 1e-9)
    nrm = np.array([-d[1], d[0]])
    return shapely.LineString(p0 + t[:, None] * (p1 - p0) + off[:, None] * nrm)
