"""The vector layout of a scene: towns, villages, roads, river, ponds and the rural zones' parameters.

Everything is in a local metric frame: x east and y south, in metres from the raster's upper-left
corner, so that sizes (street widths, lot sizes) are sampled in metres whatever the latitude.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
import shapely.affinity
import shapely.ops
from shapely.geometry import LineString, Point, Polygon

from .buildings import KIND_INDUSTRIAL, KIND_TOWN, KIND_VILLAGE, Lots


@dataclass
class Town:
    cx: float
    cy: float
    radius: float
    angle: float
    block: float
    street_w: float
    lot: float
    density: float
    core: float
    park_p: float
    industrial_p: float
    apartment_p: float
    harmonics: list[tuple[float, float]]  # (amplitude, phase) of the boundary's wobble, k = 2, 3, 4
    offset: tuple[float, float]
    dev_zones: list[tuple[float, float, float]] = field(default_factory=list)  # (x, y, radius)
    park_blocks: list[tuple[float, float]] = field(default_factory=list)  # block centres left green

    def radius_at(self, phi: np.ndarray) -> np.ndarray:
        r = np.ones_like(phi)
        for k, (a, p) in enumerate(self.harmonics, start=2):
            r = r + a * np.cos(k * phi + p)
        return self.radius * r

    def rnorm(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance from the centre in units of the (wobbly) town radius in that direction."""
        dx, dy = x - self.cx, y - self.cy
        return np.hypot(dx, dy) / self.radius_at(np.arctan2(dy, dx))

    def outline(self, level: float) -> Polygon:
        phi = np.linspace(0.0, 2 * np.pi, 181)[:-1]
        r = level * self.radius_at(phi)
        return Polygon(np.stack([self.cx + r * np.cos(phi), self.cy + r * np.sin(phi)], -1))

    def to_world(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return self.cx + u * c - v * s, self.cy + u * s + v * c


@dataclass
class Village:
    cx: float
    cy: float
    radius: float
    angle: float
    n_buildings: int
    road_w: float


@dataclass
class Layout:
    width_m: float
    height_m: float
    towns: list[Town]
    villages: list[Village]
    lots: Lots
    arterials: list[tuple[LineString, float]]  # (centre line, width)
    streets: list[Polygon]  # town streets (already buffered, clipped to the town)
    village_roads: list[Polygon]
    river: Polygon | None
    riparian: Polygon | None
    ponds: list[Polygon]
    params: dict


# Street lengths: towns leave this much room beyond their radius for the fringe.
TOWN_EXTENT = 1.15


def _wiggly_line(rng: np.random.Generator, p0: np.ndarray, p1: np.ndarray, amp_frac: float,
                 step: float = 25.0) -> LineString:
    """A line from p0 to p1 bent by a few smooth sine waves perpendicular to it."""
    length = float(np.hypot(*(p1 - p0)))
    n = max(int(length / step), 2)
    t = np.linspace(0.0, 1.0, n)
    off = np.zeros(n)
    for _ in range(3):
        lam = rng.uniform(0.15, 0.6)  # wavelength as a fraction of the length
        off += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / lam + rng.uniform(0, 2 * np.pi))
    off *= amp_frac * length / 3.0
    d = (p1 - p0) / length
    nrm = np.array([-d[1], d[0]])
    pts = p0[None, :] + t[:, None] * (p1 - p0)[None, :] + off[:, None] * nrm[None, :]
    return LineString(pts)


def _through(rng: np.random.Generator, x: float, y: float, angle: float, reach: float,
             amp_frac: float) -> LineString:
    d = np.array([np.cos(angle), np.sin(angle)])
    p = np.array([x, y])
    return _wiggly_line(rng, p - reach * d, p + reach * d, amp_frac)


def sample_towns(rng: np.random.Generator, inner: tuple[float, float, float, float],
                 area_km2: float) -> list[Town]:
    x0, y0, x1, y1 = inner
    span = min(x1 - x0, y1 - y0)
    n = 1 + int(rng.poisson(area_km2 / 100.0))
    towns: list[Town] = []
    for i in range(n):
        radius = float(rng.uniform(600.0, 2500.0))
        # Small regions still get a proper town: it is what the pipeline is tested on.
        radius = min(radius, max(0.42 * span, 300.0))
        for _ in range(50):
            if i == 0:  # the first town sits near the middle of the requested region
                cx = float(rng.uniform(x0 + 0.4 * (x1 - x0), x0 + 0.6 * (x1 - x0)))
                cy = float(rng.uniform(y0 + 0.4 * (y1 - y0), y0 + 0.6 * (y1 - y0)))
            else:
                cx, cy = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
            if all(np.hypot(cx - t.cx, cy - t.cy) > 1.5 * (radius + t.radius) for t in towns):
                break
        else:
            continue  # no room left for another town
        towns.append(Town(
            cx=cx, cy=cy, radius=radius, angle=float(rng.uniform(0.0, np.pi / 2)),
            block=float(rng.uniform(70.0, 140.0)), street_w=float(rng.uniform(6.0, 10.0)),
            lot=float(rng.uniform(15.0, 30.0)), density=float(rng.uniform(0.8, 0.97)),
            core=float(rng.uniform(0.25, 0.5)), park_p=float(rng.uniform(0.02, 0.08)),
            industrial_p=float(rng.uniform(0.04, 0.15)), apartment_p=float(rng.uniform(0.05, 0.35)),
            harmonics=[(float(rng.uniform(0.0, 0.15)), float(rng.uniform(0, 2 * np.pi))) for _ in range(3)],
            offset=(float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.0, 1.0)))))
        t = towns[-1]
        for _ in range(int(rng.integers(1, 4))):  # development zones on the fringe: bare now, built later
            phi = rng.uniform(0, 2 * np.pi)
            rr = float(rng.uniform(0.65, 1.0)) * float(t.radius_at(np.array(phi)))
            t.dev_zones.append((t.cx + rr * np.cos(phi), t.cy + rr * np.sin(phi),
                                float(rng.uniform(120.0, 350.0))))
    return towns


def town_streets_and_lots(rng: np.random.Generator, t: Town, index: int) -> tuple[list[Polygon], Lots]:
    """A rotated street grid clipped to the town, and lots filling the blocks between the streets."""
    s, w = t.block, t.street_w
    k = int(np.ceil(TOWN_EXTENT * t.radius * 1.5 / s)) + 1
    ou, ov = t.offset[0] * s, t.offset[1] * s
    region = t.outline(TOWN_EXTENT)
    # Streets: lines of constant u and of constant v.
    lines = []
    for i in range(-k, k + 1):
        a = np.array([i * s + ou, i * s + ou]), np.array([-k * s + ov, k * s + ov])
        b = np.array([-k * s + ou, k * s + ou]), np.array([i * s + ov, i * s + ov])
        for u, v in (a, b):
            x, y = t.to_world(u, v)
            lines.append(LineString(np.stack([x, y], -1)))
    polys = shapely.buffer(np.array(lines, dtype=object), w / 2, cap_style="flat")
    polys = shapely.intersection(polys, region)
    streets = [p for p in polys if not p.is_empty]

    # Blocks and their lots.
    bi, bj = np.meshgrid(np.arange(-k, k), np.arange(-k, k), indexing="ij")
    bi, bj = bi.ravel(), bj.ravel()
    bu, bv = (bi + 0.5) * s + ou, (bj + 0.5) * s + ov
    bx, by = t.to_world(bu, bv)
    brn = t.rnorm(bx, by)
    keep = brn < TOWN_EXTENT
    bi, bj, bu, bv, bx, by, brn = (a[keep] for a in (bi, bj, bu, bv, bx, by, brn))
    nb = len(bi)
    in_dev = np.zeros(nb, dtype=bool)
    for zx, zy, zr in t.dev_zones:
        in_dev |= np.hypot(bx - zx, by - zy) < zr
    btype = np.where(rng.random(nb) < t.park_p, 1, 0)  # 1 = park
    btype = np.where((btype == 0) & (brn > 0.5) & (rng.random(nb) < t.industrial_p), 2, btype)
    btype = np.where((btype == 0) & (brn < 0.7) & (rng.random(nb) < t.apartment_p), 4, btype)
    btype = np.where(in_dev, 3, btype)  # 3 = development zone, wins over the rest
    inner = s - w
    parts = []
    # Lot sizes (along u, along v) per block type: houses, industrial halls, development zones, and
    # apartment slabs (long along u, narrow along v).
    lot_sizes = {0: (t.lot, t.lot), 2: (float(rng.uniform(40.0, 65.0)),) * 2, 3: (t.lot, t.lot),
                 4: (float(rng.uniform(40.0, 60.0)), float(rng.uniform(25.0, 35.0)))}
    for kind_code, (lot_u, lot_v) in lot_sizes.items():
        sel = np.flatnonzero(btype == kind_code)
        if len(sel) == 0:
            continue
        n_u, n_v = max(1, int(inner // lot_u)), max(1, int(inner // lot_v))
        c_u, c_v = inner / n_u, inner / n_v
        a, b = np.meshgrid(np.arange(n_u), np.arange(n_v), indexing="ij")
        lu = (bu[sel, None] - s / 2 + w / 2 + (a.ravel()[None, :] + 0.5) * c_u).ravel()
        lv = (bv[sel, None] - s / 2 + w / 2 + (b.ravel()[None, :] + 0.5) * c_v).ravel()
        lx, ly = t.to_world(lu, lv)
        rn = t.rnorm(lx, ly)
        m = len(lx)
        # Occupancy falls off smoothly around 0.85 radii: dense centre, ragged fringe.
        p = t.density / (1.0 + np.exp((rn - 0.9) / 0.08))
        exists0 = (rng.random(m) < p) & (kind_code != 3)
        # Later construction favours the fringe and, strongly, the development zones.
        weight = np.exp(-(((rn - 0.9) / 0.25) ** 2)) + (5.0 if kind_code == 3 else 0.0)
        kind = KIND_INDUSTRIAL if kind_code == 2 else KIND_TOWN
        parts.append(Lots(cx=lx, cy=ly, cu=np.full(m, c_u), cv=np.full(m, c_v),
                          angle=np.full(m, t.angle), kind=np.full(m, kind), settlement=np.full(m, index),
                          exists0=exists0, weight=weight))
    lots = Lots.concat(parts)
    lots = lots.subset(t.rnorm(lots.cx, lots.cy) < TOWN_EXTENT)
    t.park_blocks = [(float(x), float(y)) for x, y in zip(bx[btype == 1], by[btype == 1], strict=True)]
    return streets, lots


def park_polygons(t: Town) -> list[Polygon]:
    half = (t.block - t.street_w) / 2
    out = []
    for x, y in t.park_blocks:
        sq = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        c, s = np.cos(t.angle), np.sin(t.angle)
        out.append(Polygon(np.stack([x + sq[:, 0] * c - sq[:, 1] * s, y + sq[:, 0] * s + sq[:, 1] * c], -1)))
    return out


def sample_villages(rng: np.random.Generator, extent: tuple[float, float], towns: list[Town],
                    area_km2: float) -> list[Village]:
    n = int(rng.poisson(area_km2 / 12.0))
    out: list[Village] = []
    for _ in range(n):
        cx, cy = float(rng.uniform(0, extent[0])), float(rng.uniform(0, extent[1]))
        if any(t.rnorm(np.array(cx), np.array(cy)) < 1.4 for t in towns):
            continue
        if any(np.hypot(cx - v.cx, cy - v.cy) < 2.5 * (v.radius + 250.0) for v in out):
            continue
        out.append(Village(cx=cx, cy=cy, radius=float(rng.uniform(80.0, 250.0)),
                           angle=float(rng.uniform(0, np.pi)), n_buildings=int(rng.integers(6, 50)),
                           road_w=float(rng.uniform(5.0, 7.0))))
    return out


def village_lots(rng: np.random.Generator, v: Village, index: int) -> Lots:
    """Houses strung along the village road, plus a loose scatter around the centre."""
    n = v.n_buildings
    along = rng.random(n) < 0.7
    cu, cv = rng.uniform(11.0, 24.0, n), rng.uniform(11.0, 22.0, n)
    t = rng.uniform(-1.2 * v.radius, 1.2 * v.radius, n)
    side = rng.choice([-1.0, 1.0], n)
    off = side * (v.road_w / 2 + rng.uniform(3.0, 16.0, n) + cv / 2)
    c, s = np.cos(v.angle), np.sin(v.angle)
    ax, ay = v.cx + t * c - off * s, v.cy + t * s + off * c
    sx, sy = v.cx + rng.normal(0, v.radius / 2, n), v.cy + rng.normal(0, v.radius / 2, n)
    cx, cy = np.where(along, ax, sx), np.where(along, ay, sy)
    angle = np.where(along, v.angle + np.radians(rng.normal(0, 4, n)), rng.uniform(0, np.pi, n))
    # Drop houses that would overlap an earlier one (cheap circle test keeps villages tidy).
    r = 0.5 * np.hypot(cu, cv)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if keep[:i].any():
            d = np.hypot(cx[:i] - cx[i], cy[:i] - cy[i])
            keep[i] = not np.any(keep[:i] & (d < 0.8 * (r[:i] + r[i])))
    m = int(keep.sum())
    return Lots(cx=cx[keep], cy=cy[keep], cu=cu[keep], cv=cv[keep], angle=angle[keep],
                kind=np.full(m, KIND_VILLAGE), settlement=np.full(m, index), exists0=rng.random(m) < 0.85,
                weight=np.full(m, 0.4))


def sample_layout(rng: np.random.Generator, width_m: float, height_m: float,
                  inner: tuple[float, float, float, float]) -> Layout:
    """Sample every vector element of the scene. `inner` is the requested region (without margin)."""
    area_km2 = (inner[2] - inner[0]) * (inner[3] - inner[1]) / 1e6
    full_km2 = width_m * height_m / 1e6
    reach = float(np.hypot(width_m, height_m))
    towns = sample_towns(rng, inner, area_km2)

    # Arterials: one or two through each town, and links between neighbouring towns.
    arterials: list[tuple[LineString, float]] = []
    for t in towns:
        base = rng.uniform(0, np.pi)
        for j in range(int(rng.integers(1, 3))):
            ang = base + j * np.pi / 2 + rng.normal(0, 0.2)
            arterials.append((_through(rng, t.cx, t.cy, ang, reach, 0.01), float(rng.uniform(12.0, 20.0))))
    order = sorted(range(len(towns)), key=lambda i: towns[i].cx)
    for a, b in zip(order, order[1:], strict=False):
        p0, p1 = np.array([towns[a].cx, towns[a].cy]), np.array([towns[b].cx, towns[b].cy])
        arterials.append((_wiggly_line(rng, p0, p1, 0.04), float(rng.uniform(12.0, 18.0))))

    streets: list[Polygon] = []
    lot_parts: list[Lots] = []
    for i, t in enumerate(towns):
        st, lots = town_streets_and_lots(rng, t, i)
        streets += st
        lot_parts.append(lots)

    villages = sample_villages(rng, (width_m, height_m), towns, full_km2)
    art_union = shapely.union_all([a for a, _ in arterials]) if arterials else None
    village_roads: list[Polygon] = []
    for j, v in enumerate(villages):
        lot_parts.append(village_lots(rng, v, len(towns) + j))
        d = np.array([np.cos(v.angle), np.sin(v.angle)]) * 1.4 * v.radius
        main = LineString([(v.cx - d[0], v.cy - d[1]), (v.cx + d[0], v.cy + d[1])])
        village_roads.append(main.buffer(v.road_w / 2, cap_style="flat"))
        if art_union is not None:  # a lane to the nearest arterial if it is not too far
            _, q = shapely.ops.nearest_points(Point(v.cx, v.cy), art_union)
            if q.distance(Point(v.cx, v.cy)) < 3000.0:
                lane = _wiggly_line(rng, np.array([v.cx, v.cy]), np.array([q.x, q.y]), 0.03)
                village_roads.append(lane.buffer(v.road_w / 2, cap_style="flat"))

    river = riparian = None
    params_river: dict = {"present": False}
    if rng.random() < 0.75:
        ang = rng.uniform(0, np.pi)
        px = rng.uniform(inner[0], inner[2])
        py = rng.uniform(inner[1], inner[3])
        line = _through(rng, px, py, ang, reach, 0.06)
        width = float(rng.uniform(20.0, 90.0))
        bank = float(rng.uniform(10.0, 40.0))
        river = line.buffer(width / 2)
        riparian = line.buffer(width / 2 + bank)
        params_river = {"present": True, "width_m": width, "riparian_m": bank,
                        "angle_deg": float(np.degrees(ang))}

    ponds: list[Polygon] = []
    for _ in range(int(rng.poisson(full_km2 / 15.0))):
        cx, cy = float(rng.uniform(0, width_m)), float(rng.uniform(0, height_m))
        if any(t.rnorm(np.array(cx), np.array(cy)) < 1.0 for t in towns) and rng.random() < 0.8:
            continue
        a, b = rng.uniform(20.0, 130.0), rng.uniform(20.0, 130.0)
        pond = shapely.affinity.scale(Point(cx, cy).buffer(1.0, quad_segs=8), a, b)
        ponds.append(shapely.affinity.rotate(pond, float(rng.uniform(0, 180))))

    params = {
        "n_towns": len(towns), "n_villages": len(villages), "n_arterials": len(arterials),
        "arterial_widths_m": [w for _, w in arterials], "river": params_river, "n_ponds": len(ponds),
    }
    return Layout(width_m=width_m, height_m=height_m, towns=towns, villages=villages,
                  lots=Lots.concat(lot_parts), arterials=arterials, streets=streets,
                  village_roads=village_roads, river=river, riparian=riparian, ponds=ponds, params=params)
