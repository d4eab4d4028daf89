"""A city: its wobbly extent, a street grid of arterials (lanes, medians, roadside green buffers) and local
streets, and the blocks between them with their uses, drawn in the city's local frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from .blocks import BLOCK_USES, BUFFER, FILLERS, TREE_CITY, Ctx, park, use_weights
from .plan import PAINT_WHITE, PAINT_YELLOW, Plan, boxes, frame, unframe, wobbly

LANE_M = 3.5


@dataclass
class City:
    name: str
    cx: float
    cy: float
    radius: float
    angle: float
    harmonics: list[tuple[int, float, float]]
    arterial_spacing: float
    arterial_width: float
    median: float
    buffer_width: float
    street_width: float
    block_size: float
    whole_superblock_p: float
    traffic_gap: float
    lane_paint: bool
    outline: shapely.Polygon = field(repr=False, default=None)
    params: dict = field(default_factory=dict)

    def rnorm(self, u: float, v: float) -> float:
        """Distance from the centre in units of the outline's radius in that direction (local frame)."""
        phi = np.arctan2(v, u)
        r = 1.0 + sum(a * np.cos(k * phi + p) for k, a, p in self.harmonics)
        return float(np.hypot(u, v) / (self.radius * max(r, 0.2)))


def sample_cities(rng: np.random.Generator, inner: tuple[float, float, float, float], names: list[str],
                  size: tuple[float, float]) -> list[City]:
    """The main city in the middle of the requested region and, where there is room, a smaller town.

    A region smaller than a town still gets one (of 160 m radius at least), reaching into the margin."""
    x0, y0, x1, y1 = inner
    span = min(x1 - x0, y1 - y0)
    room = 0.42 * min(size)
    cities: list[City] = []
    n = 1 + int(rng.random() < min(0.7, (x1 - x0) * (y1 - y0) / 2.0e7))
    for i in range(n):
        if i == 0:
            radius = min(max(float(rng.uniform(0.3, 0.4)) * span, 160.0), max(room, 1.0))
            cx = float(rng.uniform(x0 + 0.42 * (x1 - x0), x0 + 0.58 * (x1 - x0)))
            cy = float(rng.uniform(y0 + 0.42 * (y1 - y0), y0 + 0.58 * (y1 - y0)))
        else:
            radius = float(rng.uniform(0.3, 0.5)) * cities[0].radius
            for _ in range(40):
                cx, cy = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
                if all(np.hypot(cx - c.cx, cy - c.cy) > 1.35 * (radius + c.radius) for c in cities):
                    break
            else:
                break
        angle = float(np.radians(rng.uniform(-20.0, 20.0)))
        harmonics = [(k, float(rng.uniform(0.0, 0.13)), float(rng.uniform(0, 2 * np.pi))) for k in (2, 3, 4)]
        spacing = float(min(rng.uniform(320.0, 560.0), max(0.75 * radius, 140.0)))
        width = float(min(rng.uniform(22.0, 42.0), 0.12 * spacing + 12.0))
        city = City(
            name=names[i], cx=cx, cy=cy, radius=radius, angle=angle, harmonics=harmonics,
            arterial_spacing=spacing, arterial_width=width,
            median=float(rng.uniform(2.0, 5.0)) if width >= 30 and rng.random() < 0.7 else 0.0,
            buffer_width=float(rng.uniform(2.5, 7.0)) if rng.random() < 0.7 else 0.0,
            street_width=float(rng.uniform(8.0, 13.0)), block_size=float(min(rng.uniform(130.0, 230.0), 0.6 * spacing)),
            whole_superblock_p=float(rng.uniform(0.1, 0.3)), traffic_gap=float(rng.uniform(30.0, 110.0)),
            lane_paint=bool(rng.random() < 0.9))
        local = wobbly(0.0, 0.0, radius, harmonics, 120)
        city.outline = frame([local], cx, cy, angle)[0]
        cities.append(city)
    return cities


def _lines(lo: float, hi: float, spacing: float, rng: np.random.Generator) -> np.ndarray:
    """Grid line positions covering [lo, hi], one near 0, jittered by up to 8 % of the spacing."""
    k0, k1 = int(np.floor(lo / spacing)) - 1, int(np.ceil(hi / spacing)) + 1
    off = rng.uniform(-0.15, 0.15) * spacing
    pos = off + np.arange(k0, k1 + 1) * spacing + rng.uniform(-0.08, 0.08, k1 - k0 + 1) * spacing
    return pos


def _split(lo: float, hi: float, n: int, gap: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """[lo, hi] cut into n parts separated by gaps, the parts' sizes jittered."""
    sizes = rng.uniform(0.8, 1.2, n)
    sizes = sizes / sizes.sum() * (hi - lo - (n - 1) * gap)
    out, a = [], lo
    for s in sizes:
        out.append((a, a + s))
        a += s + gap
    return out


def _segments(axis_pos: float, along_u: bool, lo: float, hi: float, dash: float, period: float,
              cut: np.ndarray, half: float) -> shapely.MultiLineString | None:
    """Paint segments at `axis_pos` from lo to hi, `dash` long every `period`, none within `half` of a cut."""
    start = np.arange(lo, hi - dash, period)
    if cut.size:
        near = np.min(np.abs(start[:, None] + 0.5 * dash - cut[None, :]), axis=1)
        start = start[near > half + 0.5 * dash]
    if start.size == 0:
        return None
    a = np.stack([start, start + dash], axis=1)
    c = np.full_like(a, axis_pos)
    pts = np.stack([a, c], axis=-1) if along_u else np.stack([c, a], axis=-1)
    return shapely.multilinestrings(shapely.linestrings(pts))


def build_city(rng: np.random.Generator, plan: Plan, city: City, corridor, river, sun_world: np.ndarray,
               reach: float) -> dict:
    """Add the city's blocks, green buffers, roads, paint and traffic to the plan (in that order).

    corridor / river: the river with its banks and the water alone (scene frame, or None); reach: how far
    the main arterials run out of town. Returns the city's parameters and its built-up footprint."""
    c, s = np.cos(city.angle), np.sin(city.angle)
    sun = np.array([sun_world[0] * c + sun_world[1] * s, -sun_world[0] * s + sun_world[1] * c])
    outline = unframe([city.outline], city.cx, city.cy, city.angle)[0]
    shapely.prepare(outline)
    corr = unframe([corridor], city.cx, city.cy, city.angle)[0] if corridor is not None else None
    wet = unframe([river], city.cx, city.cy, city.angle)[0] if river is not None else None
    ext = 1.3 * city.radius
    us = _lines(-ext, ext, city.arterial_spacing, rng)
    vs = _lines(-ext, ext, city.arterial_spacing, rng)
    wa, bw, ws = city.arterial_width, city.buffer_width, city.street_width
    main_u = us[np.argmin(np.abs(us))]
    main_v = vs[np.argmin(np.abs(vs))]

    # superblocks → blocks, and their uses
    centres = [(0.5 * (a + b), 0.5 * (c_ + d)) for a, b in zip(us[:-1], us[1:], strict=True)
               for c_, d in zip(vs[:-1], vs[1:], strict=True)]
    rn = np.array([city.rnorm(u, v) for u, v in centres])
    candidates = np.flatnonzero((rn > 0.12) & (rn < 0.65))
    central_park = int(candidates[np.argmin(np.abs(rn[candidates] - 0.35))]) if candidates.size and \
        city.radius > 350 else -1
    streets, blocks = [], []  # blocks: (local polygon, use, rnorm)
    k = 0
    for a, b in zip(us[:-1], us[1:], strict=True):
        for c_, d in zip(vs[:-1], vs[1:], strict=True):
            sb = (a + wa / 2 + bw, c_ + wa / 2 + bw, b - wa / 2 - bw, d - wa / 2 - bw)
            whole = k == central_park or rng.random() < city.whole_superblock_p
            nu = 1 if whole else int(np.clip(round((sb[2] - sb[0]) / city.block_size), 1, 4))
            nv = 1 if whole else int(np.clip(round((sb[3] - sb[1]) / city.block_size), 1, 4))
            parts_u = _split(sb[0], sb[2], nu, ws, rng)
            parts_v = _split(sb[1], sb[3], nv, ws, rng)
            for (_, e0), (f0, _) in zip(parts_u[:-1], parts_u[1:], strict=True):
                streets.append((0.5 * (e0 + f0), sb[1] - bw, sb[3] + bw, False))
            for (_, e0), (f0, _) in zip(parts_v[:-1], parts_v[1:], strict=True):
                streets.append((0.5 * (e0 + f0), sb[0] - bw, sb[2] + bw, True))
            for pu in parts_u:
                for pv in parts_v:
                    rect = shapely.box(pu[0], pv[0], pu[1], pv[1])
                    cu, cv = 0.5 * (pu[0] + pu[1]), 0.5 * (pv[0] + pv[1])
                    r = city.rnorm(cu, cv)
                    if r > 1.25:
                        continue
                    use = "park" if k == central_park else str(rng.choice(BLOCK_USES, p=_norm(use_weights(r))))
                    if use == "square" and rect.area > 20000.0:  # a square is small; a big one is a park
                        use = "park"
                    blocks.append((rect, use, r, k == central_park))
            k += 1
    footprint = []
    uses: dict[str, int] = {}
    for rect, use, r, central in blocks:
        clip = rect.intersection(outline)
        if corr is not None:
            clip = clip.difference(corr)
        if clip.is_empty or clip.area < 0.3 * rect.area or clip.area < 300.0:
            continue
        for part in getattr(clip, "geoms", [clip]):
            if part.geom_type != "Polygon" or part.area < 300.0:
                continue
            part = shapely.set_precision(part, 0.01)
            if part.is_empty or part.geom_type != "Polygon":
                continue
            ctx = Ctx(rng=rng, plan=plan, cx=city.cx, cy=city.cy, angle=city.angle, sun=sun, core=r)
            if central:
                park(ctx, part, lake=True)
            else:
                FILLERS[use](ctx, part)
            uses[use] = uses.get(use, 0) + 1
            footprint.append((part, r))

    def add(geoms, material, **kw):
        plan.add(frame(geoms, city.cx, city.cy, city.angle), material, **kw)

    # green buffers: along the river inside the city, along the arterials
    big = 4.0 * reach
    if corr is not None:
        banks = shapely.difference(corr, wet).intersection(outline)
        add([banks], "lawn", ugs=BUFFER, cover=float(rng.uniform(0.35, 0.7)), tree=TREE_CITY)
        prom = shapely.difference(wet.buffer(float(rng.uniform(4.0, 9.0))), wet.buffer(float(rng.uniform(1.5, 3.5))))
        add([prom.intersection(outline)], "plaza")
    art_u = boxes(us - wa / 2, -big, us + wa / 2, big)  # along v
    art_v = boxes(-big, vs - wa / 2, big, vs + wa / 2)  # along u
    if bw > 0:
        strips = np.concatenate([
            boxes(us - wa / 2 - bw, -big, us - wa / 2, big), boxes(us + wa / 2, -big, us + wa / 2 + bw, big),
            boxes(-big, vs - wa / 2 - bw, big, vs - wa / 2), boxes(-big, vs + wa / 2, big, vs + wa / 2 + bw)])
        strips = shapely.intersection(strips, outline)
        if corr is not None:
            strips = shapely.difference(strips, corr)
        add(strips, "lawn", ugs=BUFFER, cover=float(rng.uniform(0.3, 0.75)), tree=TREE_CITY)

    # roads: local streets, then arterials (the central two run on out of town), then medians
    local = []
    for pos, lo, hi, along_u in streets:
        local.append(shapely.box(lo, pos - ws / 2, hi, pos + ws / 2) if along_u else
                     shapely.box(pos - ws / 2, lo, pos + ws / 2, hi))
    local = shapely.intersection(np.asarray(local, dtype=object), outline) if local else np.zeros(0, dtype=object)
    if corr is not None and len(local):
        local = shapely.difference(local, corr)
    add(local, "asphalt" if rng.random() < 0.7 else "asphalt_light")
    runs_out = np.concatenate([np.isclose(us, main_u), np.isclose(vs, main_v)])
    arts = np.concatenate([art_u, art_v])
    arts = np.where(runs_out, shapely.intersection(arts, shapely.box(-reach, -reach, reach, reach)),
                    shapely.intersection(arts, outline))
    add(arts, "asphalt")
    footprint.extend((g, 0.0) for g in shapely.intersection(arts, outline).tolist())
    if city.median > 0:
        m = city.median / 2
        cross_v = shapely.union_all(boxes(-big, vs - wa / 2 - 3, big, vs + wa / 2 + 3))
        cross_u = shapely.union_all(boxes(us - wa / 2 - 3, -big, us + wa / 2 + 3, big))
        med = np.concatenate([shapely.difference(boxes(us - m, -big, us + m, big), cross_v),
                              shapely.difference(boxes(-big, vs - m, big, vs + m), cross_u)])
        add(shapely.intersection(med, outline), "lawn", ugs=BUFFER, cover=float(rng.uniform(0.3, 0.8)),
            tree=TREE_CITY)

    # lane paint and traffic on the arterials
    half = wa / 2
    n_lanes = max(1, int((half - city.median / 2 - 0.5) // LANE_M))
    cars = []
    for axis, others, along_u, main in ((us, vs, False, main_u), (vs, us, True, main_v)):
        for pos in axis:
            runs = bool(np.isclose(pos, main))
            lo, hi = (-reach, reach) if runs else (-ext, ext)
            where = shapely.box(-reach, -reach, reach, reach) if runs else outline
            paint = []
            if city.lane_paint:
                for i in range(1, n_lanes):
                    for sgn in (-1, 1):
                        paint.append((_segments(pos + sgn * (city.median / 2 + i * LANE_M), along_u, lo, hi, 6.0,
                                                15.0, others, half + 3), PAINT_WHITE))
                for sgn in (-1, 1):
                    paint.append((_segments(pos + sgn * (half - 0.8), along_u, lo, hi, 3.0, 3.0, others, half + 3),
                                  PAINT_WHITE))
                if city.median == 0:
                    paint.append((_segments(pos, along_u, lo, hi, 3.0, 3.0, others, half + 3), PAINT_YELLOW))
            for seg, value in paint:
                if seg is not None:
                    plan.add_paint(frame([seg.intersection(where)], city.cx, city.cy, city.angle), value)
            for i in range(n_lanes):
                for sgn in (-1, 1):
                    off = pos + sgn * (city.median / 2 + (i + 0.5) * LANE_M)
                    t = np.cumsum(rng.exponential(city.traffic_gap, int((hi - lo) / 5) + 2)) + lo
                    t = t[t < hi - 5]
                    if others.size and t.size:
                        t = t[np.min(np.abs(t[:, None] + 2.3 - others[None, :]), axis=1) > half + 6]
                    if t.size == 0:
                        continue
                    g = (boxes(t, off - 0.95, t + 4.6, off + 0.95) if along_u else
                         boxes(off - 0.95, t, off + 0.95, t + 4.6))
                    cars.append(g[shapely.contains(where, g)])
    if cars:
        add(np.concatenate(cars), "car", height=1.5)

    city.params = {
        "name": city.name, "radius_m": city.radius, "angle_deg": float(np.degrees(city.angle)),
        "harmonics": [list(h) for h in city.harmonics], "arterial_spacing_m": city.arterial_spacing,
        "arterial_width_m": city.arterial_width, "median_m": city.median, "green_buffer_m": city.buffer_width,
        "street_width_m": city.street_width, "block_m": city.block_size,
        "whole_superblock_probability": city.whole_superblock_p, "traffic_gap_m": city.traffic_gap,
        "lane_paint": city.lane_paint, "blocks": dict(sorted(uses.items())), "central_park": central_park >= 0,
    }
    geoms = [g for g, _ in footprint]
    world = frame(geoms, city.cx, city.cy, city.angle) if geoms else np.zeros(0, dtype=object)
    return {"params": city.params, "footprint": world, "footprint_rnorm": np.array([r for _, r in footprint])}


def _norm(w: np.ndarray) -> np.ndarray:
    return w / w.sum()
