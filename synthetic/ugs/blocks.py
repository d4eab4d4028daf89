"""What fills a city block, drawn in the city's local frame (u, v in metres, axis-aligned with the street
grid): residential compounds, institutions, commercial and industrial blocks, old-town fabric, parks,
squares, vacant green lots and construction sites. Each filler adds its patches to the plan, in painter's
order, with the UGS type of Table 1 on the vegetation that belongs to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from .plan import Plan, boxes, frame, random_blob, wiggly_line

PARK, BUFFER, SQUARE, ATTACHED, OTHER = 1, 2, 3, 4, 5
TREE_CITY, TREE_FOREST, TREE_ORCHARD, TREE_VILLAGE = 1, 2, 3, 4

BLOCK_USES = ("residential", "institutional", "commercial", "industrial", "old_town", "park", "square",
              "vacant", "construction")


@dataclass
class Ctx:
    """A city's frame and the plan its blocks are added to."""

    rng: np.random.Generator
    plan: Plan
    cx: float
    cy: float
    angle: float
    sun: np.ndarray  # unit vector towards the sun, in the local frame
    core: float  # 0 at the centre, 1 at the city's edge (of the block being filled)

    def add(self, geoms, material: str, **kw) -> np.ndarray:
        return self.plan.add(frame(geoms, self.cx, self.cy, self.angle), material, **kw)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A uniform draw in [lo, hi]; where a small block leaves hi below lo, their middle (one draw all the same,
    so the stream stays aligned)."""
    t = float(rng.random())
    return float(lo + t * (hi - lo)) if hi >= lo else 0.5 * float(lo + hi)


def _pick(rng: np.random.Generator, options: list[str], p: list[float], n: int | None = None):
    p = np.asarray(p, float) / np.sum(p)
    out = rng.choice(len(options), size=n, p=p)
    return np.asarray(options)[out] if n is not None else options[int(out)]


def add_buildings(ctx: Ctx, u0, v0, u1, v1, height, roof, clip, *, pitched: bool = False,
                  shared_colour: bool = False, apron: float = 0.0, apron_mat: str = "paving",
                  rooftop: bool = True) -> int:
    """Rectangular buildings (local frame) that lie wholly inside `clip`; returns how many were kept.

    Flat roofs get a darker parapet rim and, on large roofs, small rooftop structures (stairwells, tanks)
    that cast their own short shadows; pitched roofs get a lit and a shaded half (by the sun)."""
    rng = ctx.rng
    u0, v0, u1, v1 = (np.atleast_1d(np.asarray(a, float)) for a in (u0, v0, u1, v1))
    n = len(u0)
    if n == 0:
        return 0
    height = np.broadcast_to(np.asarray(height, float), (n,))
    roof = np.broadcast_to(np.asarray(roof, dtype=object), (n,))
    jitter = rng.normal(1.0, 0.04, n)
    fp = boxes(u0, v0, u1, v1)
    shapely.prepare(clip)
    ok = shapely.contains(clip, fp) & (u1 - u0 > 2.0) & (v1 - v0 > 2.0)
    if not ok.any():
        return 0
    fp, u0, v0, u1, v1, height, roof, jitter = (a[ok] for a in (fp, u0, v0, u1, v1, height, roof, jitter))
    n = len(fp)
    if apron > 0:
        aprons = shapely.intersection(shapely.buffer(fp, apron, join_style="mitre"), clip)
        ctx.add(aprons, apron_mat)
    for material in sorted(set(roof.tolist())):
        sel = np.flatnonzero(roof == material)
        groups = (np.repeat(ctx.plan.groups(1, material), len(sel)) if shared_colour
                  else ctx.plan.groups(len(sel), material))
        h, j = height[sel], jitter[sel]
        a0, b0, a1, b1 = u0[sel], v0[sel], u1[sel], v1[sel]
        if pitched:
            along_u = (a1 - a0) >= (b1 - b0)
            mu, mv = 0.5 * (a0 + a1), 0.5 * (b0 + b1)
            # halves: (first, second) split across the short side, ridge along the long axis
            first = boxes(a0, b0, np.where(along_u, a1, mu), np.where(along_u, mv, b1))
            second = boxes(np.where(along_u, a0, mu), np.where(along_u, mv, b0), a1, b1)
            # outward normal of the first half: -v when the ridge runs along u, else -u
            n1 = np.where(along_u, -ctx.sun[1], -ctx.sun[0])
            lit = np.where(n1 > 0, 1.1, 0.8)
            ctx.add(first, material, height=h, group=groups, shade=j * lit)
            ctx.add(second, material, height=h, group=groups, shade=j * (1.9 - lit))
        else:
            outer = boxes(a0, b0, a1, b1)
            ctx.add(outer, material, height=h, group=groups, shade=j * 0.84)
            ctx.add(shapely.buffer(outer, -0.9, join_style="mitre"), material, height=h, group=groups, shade=j)
            area = (a1 - a0) * (b1 - b0)
            big = np.flatnonzero((area > 250.0) & rooftop)
            if len(big):
                k = rng.integers(1, 4, len(big))
                idx = np.repeat(big, k)
                su, sv = rng.uniform(2.5, 6.5, len(idx)), rng.uniform(2.5, 6.5, len(idx))
                pu = a0[idx] + 1.5 + rng.random(len(idx)) * np.maximum(a1[idx] - a0[idx] - 3.0 - su, 0.0)
                pv = b0[idx] + 1.5 + rng.random(len(idx)) * np.maximum(b1[idx] - b0[idx] - 3.0 - sv, 0.0)
                mats = _pick(rng, ["roof_light", "roof_concrete", "roof_dark", "roof_blue"], [4, 3, 2, 1], len(idx))
                hh = h[idx] + rng.uniform(2.0, 4.0, len(idx))
                for m in sorted(set(mats.tolist())):
                    s = mats == m
                    ctx.add(boxes(pu[s], pv[s], pu[s] + su[s], pv[s] + sv[s]), m, height=hh[s])
    return n


def _grid_rects(lo_u, lo_v, hi_u, hi_v, size_u, size_v, gap_u, gap_v):
    """Rectangles of size_u × size_v in a centred grid filling [lo, hi] with gaps between."""
    nu = int((hi_u - lo_u + gap_u) // (size_u + gap_u))
    nv = int((hi_v - lo_v + gap_v) // (size_v + gap_v))
    if nu < 1 or nv < 1:
        return (np.zeros(0),) * 4
    off_u = lo_u + 0.5 * ((hi_u - lo_u) - (nu * size_u + (nu - 1) * gap_u))
    off_v = lo_v + 0.5 * ((hi_v - lo_v) - (nv * size_v + (nv - 1) * gap_v))
    iu, iv = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    a0 = (off_u + iu * (size_u + gap_u)).ravel()
    b0 = (off_v + iv * (size_v + gap_v)).ravel()
    return a0, b0, a0 + size_u, b0 + size_v


def _cars_along(ctx: Ctx, u0: float, v0: float, u1: float, v1: float, along_u: bool, gap: float) -> None:
    """Cars parked in a row in the strip [u0, u1] × [v0, v1] (the row runs along u or v)."""
    rng = ctx.rng
    length = (u1 - u0) if along_u else (v1 - v0)
    if length < 6 or gap <= 0:
        return
    pos = np.cumsum(rng.exponential(gap, int(length / 2.5) + 2)) + rng.uniform(0, 3)
    pos = pos[pos < length - 5]
    cw, cl = 1.9, 4.6
    if along_u:
        mid = 0.5 * (v0 + v1)
        g = boxes(u0 + pos, mid - cw / 2, u0 + pos + cl, mid + cw / 2)
    else:
        mid = 0.5 * (u0 + u1)
        g = boxes(mid - cw / 2, v0 + pos, mid + cw / 2, v0 + pos + cl)
    ctx.add(g, "car", height=1.5)


def _hardscape(ctx: Ctx, inner, box: tuple[float, float, float, float], share: float) -> None:
    """Paved plazas, car parks, courts and playgrounds covering about `share` of a compound's box."""
    rng = ctx.rng
    lo_u, lo_v, hi_u, hi_v = box
    area = (hi_u - lo_u) * (hi_v - lo_v)
    if area <= 0:
        return
    su = rng.uniform(10.0, 35.0, 64)
    sv = rng.uniform(8.0, 28.0, 64)
    k = min(int(np.searchsorted(np.cumsum(su * sv), share * area)) + 1, len(su))
    su, sv = np.minimum(su[:k], hi_u - lo_u), np.minimum(sv[:k], hi_v - lo_v)
    pu = lo_u + rng.random(k) * (hi_u - lo_u - su)
    pv = lo_v + rng.random(k) * (hi_v - lo_v - sv)
    mats = _pick(rng, ["paving", "asphalt_light", "plaza", "court"], [5, 3, 2, 0.6], k)
    for m in sorted(set(mats.tolist())):
        s = mats == m
        ctx.add(shapely.intersection(boxes(pu[s], pv[s], pu[s] + su[s], pv[s] + sv[s]), inner), m)


def _inner(clip, width: float):
    inner = clip.buffer(-width, join_style="mitre")
    return inner if not inner.is_empty else clip


def residential(ctx: Ctx, clip) -> None:
    rng = ctx.rng
    ctx.add(clip, "concrete")  # the sidewalk round the compound
    inner = _inner(clip, _u(rng, 2.0, 4.0))
    ctx.add(inner, "lawn", ugs=ATTACHED, cover=_u(rng, 0.12, 0.45), tree=TREE_CITY)
    bu0, bv0, bu1, bv1 = inner.bounds
    w, h = bu1 - bu0, bv1 - bv0
    kind = _pick(rng, ["slab", "tower", "villa"], [0.6, 0.25 + 0.2 * (ctx.core < 0.5), 0.2 * (ctx.core > 0.4)])
    margin, rw = _u(rng, 5.0, 10.0), _u(rng, 4.0, 6.0)
    if w > 2 * margin + 30 and h > 2 * margin + 30:
        ring = shapely.box(bu0 + margin, bv0 + margin, bu1 - margin, bv1 - margin).exterior
        road = ring.buffer(rw / 2, join_style="mitre").intersection(inner)
        ctx.add(road, "asphalt_light" if rng.random() < 0.5 else "paving")
        if rng.random() < 0.6:  # cars parked along the ring road's inside
            gap = _u(rng, 5.0, 25.0)
            lo_u, lo_v, hi_u, hi_v = bu0 + margin + rw / 2, bv0 + margin + rw / 2, bu1 - margin - rw / 2, \
                bv1 - margin - rw / 2
            _cars_along(ctx, lo_u + 3, lo_v, hi_u - 3, lo_v + 2.6, True, gap)
            _cars_along(ctx, lo_u + 3, hi_v - 2.6, hi_u - 3, hi_v, True, gap)
        lo_u, lo_v, hi_u, hi_v = bu0 + margin + rw + 3, bv0 + margin + rw + 3, bu1 - margin - rw - 3, \
            bv1 - margin - rw - 3
    else:
        lo_u, lo_v, hi_u, hi_v = bu0 + 3, bv0 + 3, bu1 - 3, bv1 - 3
    if hi_u - lo_u < 10 or hi_v - lo_v < 10:
        return
    if kind == "slab":
        height = _u(rng, 18.0, 45.0 if ctx.core > 0.5 else 75.0)
        depth, length = _u(rng, 11.0, 15.0), _u(rng, 28.0, 65.0)
        gap_v = float(np.clip(0.75 * height * _u(rng, 0.8, 1.2), 14.0, 48.0))
        gap_u = _u(rng, 8.0, 22.0)
        rects = _grid_rects(lo_u, lo_v, hi_u, hi_v, min(length, hi_u - lo_u), depth, gap_u, gap_v)
        roofs, pitched, hs = _pick(rng, ["roof_concrete", "roof_light", "roof_red", "roof_dark", "roof_white",
                                         "roof_tile", "roof_blue", "roof_green"], [5, 4, 2, 2, 2, 2, 1, 1]), False, \
            height * rng.uniform(0.85, 1.15, len(rects[0]))
    elif kind == "tower":
        height = _u(rng, 55.0, 120.0)
        size = _u(rng, 24.0, 36.0)
        gap = _u(rng, 14.0, 28.0)
        rects = _grid_rects(lo_u, lo_v, hi_u, hi_v, size, size * _u(rng, 0.6, 0.9), gap, gap * 1.6)
        roofs, pitched, hs = _pick(rng, ["roof_light", "roof_concrete", "roof_white", "roof_dark", "roof_red"],
                                   [4, 4, 3, 2, 2]), False, height * rng.uniform(0.9, 1.1, len(rects[0]))
    else:
        su, sv = _u(rng, 9.0, 15.0), _u(rng, 9.0, 13.0)
        rects = _grid_rects(lo_u, lo_v, hi_u, hi_v, su, sv, _u(rng, 6.0, 12.0), _u(rng, 7.0, 14.0))
        roofs, pitched, hs = _pick(rng, ["roof_red", "roof_tile", "roof_dark", "roof_blue"], [4, 4, 2, 1]), True, \
            rng.uniform(7.0, 12.0, len(rects[0]))
    if len(rects[0]) == 0:
        return
    if kind != "villa":  # lanes in front of each row of buildings, with cars parked along them
        fronts = np.unique(np.round(rects[3], 3))
        gap_rows = np.diff(np.unique(np.round(rects[1], 3)))
        room = float(gap_rows.min() - (rects[3][0] - rects[1][0])) if gap_rows.size else hi_v - fronts[-1]
        if room > 14:
            lane_w = _u(rng, 4.0, 6.0)
            off = min(_u(rng, 4.0, 8.0), room - lane_w - 4)
            lanes = boxes(np.full(fronts.size, lo_u - 3), fronts + off, np.full(fronts.size, hi_u + 3),
                          fronts + off + lane_w)
            ctx.add(shapely.intersection(lanes, inner), "asphalt_light" if rng.random() < 0.5 else "paving")
            if rng.random() < 0.7:
                gap = _u(rng, 4.0, 20.0)
                for f in fronts:
                    _cars_along(ctx, lo_u, f + off + lane_w, hi_u, f + off + lane_w + 2.4, True, gap)
    _hardscape(ctx, inner, (lo_u, lo_v, hi_u, hi_v), _u(rng, 0.2, 0.4))
    keep = rng.random(len(rects[0])) < 0.94
    rects = tuple(r[keep] for r in rects)
    add_buildings(ctx, *rects, hs[keep], roofs, inner, pitched=pitched, shared_colour=True,
                  apron=_u(rng, 2.0, 5.0), apron_mat="paving")


def institutional(ctx: Ctx, clip) -> None:
    rng = ctx.rng
    ctx.add(clip, "concrete")
    inner = _inner(clip, _u(rng, 2.0, 4.0))
    ctx.add(inner, "lawn", ugs=ATTACHED, cover=_u(rng, 0.2, 0.45), tree=TREE_CITY)
    bu0, bv0, bu1, bv1 = inner.bounds
    w, h = bu1 - bu0, bv1 - bv0
    free = (bu0 + 4, bv0 + 4, bu1 - 4, bv1 - 4)
    if w > 110 and h > 70 and rng.random() < 0.7:  # a school: a running track with a turf field
        radius = min(0.5 * h - 8, 36.0)
        straight = min(0.55 * w - 2 * radius, 85.0)
        if straight > 10:
            left = rng.random() < 0.5
            cu = bu0 + 6 + radius + straight / 2 if left else bu1 - 6 - radius - straight / 2
            cv = 0.5 * (bv0 + bv1)
            axis = shapely.LineString([(cu - straight / 2, cv), (cu + straight / 2, cv)])
            ctx.add(axis.buffer(radius + 3).intersection(inner), "paving")
            ctx.add(axis.buffer(radius).intersection(inner), "track")
            ctx.add(axis.buffer(radius - 7).intersection(inner), "turf", ugs=ATTACHED)
            span = straight + 2 * radius + 12
            free = (bu0 + span + 4, bv0 + 4, bu1 - 4, bv1 - 4) if left else (bu0 + 4, bv0 + 4, bu1 - span - 4, bv1 - 4)
            ncourt = int(rng.integers(0, 4))
            if ncourt and free[2] - free[0] > 40 and free[3] - free[1] > 60:
                cu0 = free[0] + 2
                courts = boxes(cu0 + np.arange(ncourt) * 17.0, free[3] - 30.0, cu0 + np.arange(ncourt) * 17.0 + 15.0,
                               free[3] - 2.0)
                ctx.add(courts, "court", group=np.repeat(ctx.plan.groups(1, "court"), ncourt))
                free = (free[0], free[1], free[2], free[3] - 34.0)
    fw, fh = free[2] - free[0], free[3] - free[1]
    if fw < 20 or fh < 20:
        return
    _hardscape(ctx, inner, free, _u(rng, 0.2, 0.35))
    plaza = boxes(free[0] + 0.3 * fw, free[3] - min(0.25 * fh, 30.0), free[0] + 0.7 * fw, free[3])
    ctx.add(plaza, "plaza")
    depth, length = _u(rng, 13.0, 19.0), min(_u(rng, 40.0, 90.0), fw - 4)
    rects = _grid_rects(free[0], free[1], free[2], free[3] - min(0.25 * fh, 30.0) - 4, length, depth,
                        _u(rng, 10.0, 20.0), _u(rng, 18.0, 30.0))
    roof = _pick(rng, ["roof_light", "roof_white", "roof_concrete", "roof_red", "roof_tile", "roof_blue"],
                 [4, 3, 3, 2, 2, 1])
    add_buildings(ctx, *rects, rng.uniform(12.0, 28.0, len(rects[0])), roof, inner, shared_colour=True,
                  apron=_u(rng, 2.0, 4.0))


def commercial(ctx: Ctx, clip) -> None:
    rng = ctx.rng
    ctx.add(clip, "concrete")
    inner = _inner(clip, _u(rng, 3.0, 6.0))
    ctx.add(inner, "plaza" if rng.random() < 0.5 else "paving")
    bu0, bv0, bu1, bv1 = inner.bounds
    h = bv1 - bv0
    # trees in a lawn strip along the sidewalk
    strip = shapely.difference(inner, inner.buffer(-_u(rng, 2.5, 4.0), join_style="mitre"))
    if rng.random() < 0.6:
        ctx.add(strip, "lawn", ugs=ATTACHED, cover=_u(rng, 0.5, 0.9), tree=TREE_CITY)
    lo_u, lo_v, hi_u, hi_v = bu0 + 6, bv0 + 6, bu1 - 6, bv1 - 6
    if rng.random() < 0.35 and h > 60:  # a front square with lawn beds
        depth = min(_u(rng, 0.25, 0.4) * h, 60.0)
        _square_beds(ctx, shapely.box(lo_u, hi_v - depth, hi_u, hi_v).intersection(inner), SQUARE)
        hi_v -= depth + 6
    elif rng.random() < 0.5 and h > 50:  # a surface car park
        depth = min(_u(rng, 0.25, 0.4) * h, 50.0)
        lot = shapely.box(lo_u, hi_v - depth, hi_u, hi_v).intersection(inner)
        ctx.add(lot, "asphalt_light")
        for row in np.arange(hi_v - depth + 3, hi_v - 5, 7.5):
            pos = np.arange(lo_u + 2, hi_u - 4, 2.6)
            pos = pos[rng.random(len(pos)) < _u(rng, 0.3, 0.9)]
            ctx.add(boxes(pos, row, pos + 1.9, row + 4.6), "car", height=1.5)
        hi_v -= depth + 6
    if hi_u - lo_u < 20 or hi_v - lo_v < 20:
        return
    n_u = int(np.clip((hi_u - lo_u) // 70, 1, 3))
    pw = (hi_u - lo_u - 10 * (n_u - 1)) / n_u
    a0 = lo_u + np.arange(n_u) * (pw + 10)
    b1 = hi_v - rng.uniform(0, 0.2, n_u) * (hi_v - lo_v)
    podium_h = rng.uniform(10.0, 28.0, n_u)
    roof = _pick(rng, ["roof_concrete", "roof_light", "roof_dark", "roof_white", "roof_blue"], [4, 4, 2, 2, 1])
    add_buildings(ctx, a0, np.full(n_u, lo_v), a0 + pw, b1, podium_h, roof, inner)
    # towers on the podiums
    for i in range(n_u):
        if rng.random() < 0.75 and pw > 22 and b1[i] - lo_v > 22:
            size = min(_u(rng, 18.0, 36.0), pw - 4, b1[i] - lo_v - 4)
            tu = a0[i] + 2 + rng.random() * (pw - 4 - size)
            tv = lo_v + 2 + rng.random() * (b1[i] - lo_v - 4 - size)
            add_buildings(ctx, [tu], [tv], [tu + size], [tv + size * _u(rng, 0.7, 1.0)],
                          [podium_h[i] + _u(rng, 40.0, 160.0)],
                          _pick(rng, ["roof_light", "roof_white", "roof_dark", "roof_concrete"], [3, 3, 2, 2]), inner)


def industrial(ctx: Ctx, clip) -> None:
    rng = ctx.rng
    ctx.add(clip, "concrete")
    inner = _inner(clip, _u(rng, 2.0, 4.0))
    ctx.add(inner, "concrete" if rng.random() < 0.6 else "asphalt_light")
    if rng.random() < 0.6:
        strip = shapely.difference(inner, inner.buffer(-_u(rng, 3.0, 8.0), join_style="mitre"))
        ctx.add(strip, "lawn", ugs=ATTACHED, cover=_u(rng, 0.3, 0.7), tree=TREE_CITY)
    bu0, bv0, bu1, bv1 = inner.bounds
    lo_u, lo_v, hi_u, hi_v = bu0 + 10, bv0 + 10, bu1 - 10, bv1 - 10
    su = min(_u(rng, 35.0, 110.0), hi_u - lo_u)
    sv = min(_u(rng, 20.0, 60.0), hi_v - lo_v)
    if su < 10 or sv < 10:
        return
    rects = _grid_rects(lo_u, lo_v, hi_u, hi_v, su, sv, _u(rng, 10.0, 22.0), _u(rng, 12.0, 25.0))
    n = len(rects[0])
    if n == 0:
        return
    keep = rng.random(n) < 0.85
    roof = _pick(rng, ["roof_metal", "roof_blue", "roof_white", "roof_rust", "roof_light", "roof_concrete"],
                 [4, 3, 2, 2, 2, 1], n)
    add_buildings(ctx, *(r[keep] for r in rects), rng.uniform(7.0, 16.0, n)[keep], roof[keep], inner, rooftop=False)
    # trucks and containers in the yard
    k = int(rng.integers(0, 12))
    if k:
        pu = lo_u + rng.random(k) * max(hi_u - 12 - lo_u, 0.0)
        pv = lo_v + rng.random(k) * max(hi_v - 3 - lo_v, 0.0)
        ctx.add(boxes(pu, pv, pu + 12.0, pv + 2.5), _pick(rng, ["roof_blue", "roof_rust", "roof_light"], [1, 1, 1]),
                height=3.0)


def old_town(ctx: Ctx, clip) -> None:
    rng = ctx.rng
    ctx.add(clip, "paving" if rng.random() < 0.6 else "concrete", cover=0.03, tree=TREE_VILLAGE)
    bu0, bv0, bu1, bv1 = clip.bounds
    cell, gap = _u(rng, 9.0, 15.0), _u(rng, 1.2, 3.0)
    a0, b0, a1, b1 = _grid_rects(bu0 + 1, bv0 + 1, bu1 - 1, bv1 - 1, cell, cell * _u(rng, 0.8, 1.3), gap, gap)
    n = len(a0)
    if n == 0:
        return
    # merged neighbours and missing houses break the regular grid
    a1 = a1 + np.where(rng.random(n) < 0.2, cell + gap, 0.0) - rng.uniform(0, 0.25 * cell, n)
    b1 = b1 - rng.uniform(0, 0.2 * cell, n)
    keep = rng.random(n) < 0.9
    roof = _pick(rng, ["roof_concrete", "roof_dark", "roof_rust", "roof_light", "roof_blue", "roof_red", "roof_tile"],
                 [7, 3, 1.0, 4, 0.25, 0.3, 0.5], n)
    add_buildings(ctx, a0[keep], b0[keep], a1[keep], b1[keep], rng.uniform(8.0, 24.0, n)[keep], roof[keep], clip,
                  rooftop=rng.random() < 0.5)


def park(ctx: Ctx, clip, *, lake: bool = False) -> None:
    rng = ctx.rng
    ctx.add(clip, "lawn", ugs=PARK, cover=_u(rng, 0.35, 0.7), tree=TREE_CITY)
    bu0, bv0, bu1, bv1 = clip.bounds
    w, h = bu1 - bu0, bv1 - bv0
    shapely.prepare(clip)
    # a path round the inside of the fence
    ring = clip.buffer(-_u(rng, 3.0, 6.0), join_style="mitre")
    if not ring.is_empty:
        ctx.add(ring.boundary.buffer(_u(rng, 1.2, 2.0)).intersection(clip), "plaza")
    size = min(w, h)
    for _ in range(int(rng.integers(2, 5))):  # winding paths between points on the edge
        t0, t1 = rng.random(2)
        p0 = clip.exterior.interpolate(t0, normalized=True) if clip.geom_type == "Polygon" else None
        p1 = clip.exterior.interpolate(t1, normalized=True) if clip.geom_type == "Polygon" else None
        if p0 is None or p0.distance(p1) < 0.3 * size:
            continue
        line = wiggly_line(rng, (p0.x, p0.y), (p1.x, p1.y), 0.12, step=8.0)
        ctx.add(line.buffer(_u(rng, 1.0, 2.2)).intersection(clip), "plaza")
    pond = shapely.Polygon()
    if (lake or rng.random() < 0.6) and size > 90:
        r = _u(rng, 0.18, 0.34 if lake else 0.25) * size
        cu, cv = _u(rng, bu0 + r + 8, bu1 - r - 8), _u(rng, bv0 + r + 8, bv1 - r - 8)
        pond = random_blob(rng, cu, cv, r, 0.3).intersection(clip.buffer(-8))
        ctx.add(pond.buffer(3.0).intersection(clip), "plaza")  # the shore promenade
        ctx.add(pond.buffer(1.0).intersection(clip), "lawn", ugs=PARK)
        ctx.add(pond, "water" if rng.random() < 0.6 else "water_turbid")
    if size > 60:
        r = _u(rng, 7.0, 16.0)
        cu, cv = _u(rng, bu0 + r + 5, bu1 - r - 5), _u(rng, bv0 + r + 5, bv1 - r - 5)
        ctx.add(shapely.Point(cu, cv).buffer(r).intersection(clip).difference(pond.buffer(3.0)), "plaza")
        s = _u(rng, 4.0, 7.0)
        add_buildings(ctx, [cu - s / 2], [cv - s / 2], [cu + s / 2], [cv + s / 2], [_u(rng, 4.0, 7.0)],
                      _pick(rng, ["roof_red", "roof_tile", "roof_dark"], [2, 2, 1]), clip, pitched=True)


def _square_beds(ctx: Ctx, area, ugs: int) -> None:
    """Lawn beds in a regular pattern on a paved square, with rows of trees on the edges."""
    rng = ctx.rng
    if area.is_empty:
        return
    ctx.add(area, "plaza")
    bu0, bv0, bu1, bv1 = area.bounds
    m = _u(rng, 3.0, 8.0)
    edge = shapely.difference(area, area.buffer(-m, join_style="mitre"))
    if rng.random() < 0.7:
        ctx.add(shapely.intersection(edge, area.buffer(-0.8, join_style="mitre")), "lawn", ugs=ugs,
                cover=_u(rng, 0.6, 0.95), tree=TREE_CITY)
    lo_u, lo_v, hi_u, hi_v = bu0 + m + 3, bv0 + m + 3, bu1 - m - 3, bv1 - m - 3
    if hi_u - lo_u < 8 or hi_v - lo_v < 8:
        return
    nu, nv = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    gap = _u(rng, 4.0, 9.0)
    su, sv = (hi_u - lo_u - (nu - 1) * gap) / nu, (hi_v - lo_v - (nv - 1) * gap) / nv
    if su < 3 or sv < 3:
        return
    beds = _grid_rects(lo_u, lo_v, hi_u, hi_v, su, sv, gap, gap)
    g = boxes(*beds)
    if rng.random() < 0.4:
        g = shapely.buffer(shapely.buffer(g, -min(su, sv) * 0.2), min(su, sv) * 0.15)  # rounded beds
    ctx.add(shapely.intersection(g, area), "lawn", ugs=ugs, cover=_u(rng, 0.0, 0.3), tree=TREE_CITY,
            group=np.repeat(ctx.plan.groups(1, "lawn"), len(g)))
    cu, cv = 0.5 * (bu0 + bu1), 0.5 * (bv0 + bv1)
    if rng.random() < 0.5 and nu * nv > 1:
        r = _u(rng, 3.0, 7.0)
        ctx.add(shapely.Point(cu, cv).buffer(r + 2.0), "plaza")
        ctx.add(shapely.Point(cu, cv).buffer(r), "water")


def square(ctx: Ctx, clip) -> None:
    _square_beds(ctx, clip, SQUARE)


def vacant(ctx: Ctx, clip) -> None:
    rng = ctx.rng
    ctx.add(clip, "wild", ugs=OTHER, cover=_u(rng, 0.04, 0.25), tree=TREE_VILLAGE)
    bu0, bv0, bu1, bv1 = clip.bounds
    for _ in range(int(rng.integers(0, 3))):
        r = _u(rng, 8.0, 0.3 * min(bu1 - bu0, bv1 - bv0) + 9.0)
        blob = random_blob(rng, _u(rng, bu0, bu1), _u(rng, bv0, bv1), r, 0.35).intersection(clip)
        ctx.add(blob, "bare")
    for _ in range(int(rng.integers(0, 3))):
        p0 = (_u(rng, bu0, bu1), bv0 - 5)
        p1 = (_u(rng, bu0, bu1), bv1 + 5)
        line = wiggly_line(rng, p0, p1, 0.1, step=8.0)
        ctx.add(line.buffer(_u(rng, 1.0, 2.0)).intersection(clip), "dirt")


def construction(ctx: Ctx, clip) -> None:
    rng = ctx.rng
    ctx.add(clip, "construction" if rng.random() < 0.6 else "bare")
    bu0, bv0, bu1, bv1 = clip.bounds
    w, h = bu1 - bu0, bv1 - bv0
    for _ in range(int(rng.integers(0, 4))):  # earth under green dust-control netting
        su, sv = _u(rng, 0.15, 0.45) * w, _u(rng, 0.15, 0.45) * h
        pu, pv = _u(rng, bu0, bu1 - su), _u(rng, bv0, bv1 - sv)
        ctx.add(shapely.box(pu, pv, pu + su, pv + sv).intersection(clip), "net")
    if rng.random() < 0.6:  # foundations
        su, sv = _u(rng, 0.2, 0.5) * w, _u(rng, 0.2, 0.5) * h
        pu, pv = _u(rng, bu0, bu1 - su), _u(rng, bv0, bv1 - sv)
        ctx.add(shapely.box(pu, pv, pu + su, pv + sv).intersection(clip), "concrete")
    if rng.random() < 0.7 and w > 30:  # blue-roofed site huts
        k = int(rng.integers(2, 8))
        pu, pv = _u(rng, bu0 + 3, bu1 - 3 - 16 * k / 2), _u(rng, bv0 + 3, bv1 - 20)
        a0 = pu + (np.arange(k) % max(k // 2, 1)) * 16.0
        b0 = pv + (np.arange(k) // max(k // 2, 1)) * 9.0
        add_buildings(ctx, a0, b0, a0 + 14.0, b0 + 6.0, 3.0, "roof_blue", clip, shared_colour=True, rooftop=False)


FILLERS = {"residential": residential, "institutional": institutional, "commercial": commercial,
           "industrial": industrial, "old_town": old_town, "park": park, "square": square, "vacant": vacant,
           "construction": construction}


def use_weights(rnorm: float) -> np.ndarray:
    """How likely each block use is at a distance `rnorm` (0 centre, 1 edge) from the city centre."""
    core = {"residential": 0.34, "institutional": 0.10, "commercial": 0.24, "industrial": 0.0, "old_town": 0.14,
            "park": 0.05, "square": 0.07, "vacant": 0.02, "construction": 0.03}
    mid = {"residential": 0.48, "institutional": 0.12, "commercial": 0.07, "industrial": 0.05, "old_town": 0.09,
           "park": 0.06, "square": 0.02, "vacant": 0.05, "construction": 0.05}
    edge = {"residential": 0.28, "institutional": 0.06, "commercial": 0.04, "industrial": 0.25, "old_town": 0.12,
            "park": 0.04, "square": 0.0, "vacant": 0.09, "construction": 0.12}
    if rnorm < 0.5:
        a, b, t = core, mid, rnorm / 0.5
    else:
        a, b, t = mid, edge, min((rnorm - 0.5) / 0.5, 1.0)
    return np.array([(1 - t) * a[k] + t * b[k] for k in BLOCK_USES])
