"""The country round the cities: farmland of regular fields with varied crops, fish ponds, forest and
woodlots, lakes, a river, villages and country roads. Its vegetation is no urban green space, yet much of
it looks like some (forest like park trees, village gardens like compound green), so only the urban
boundary tells them apart."""

from __future__ import annotations

import numpy as np
import shapely
import shapely.ops

from .blocks import TREE_FOREST, TREE_ORCHARD, TREE_VILLAGE, Ctx, add_buildings
from .plan import Plan, random_blob, wiggly_line

# crop: (material, weight, tree cover, tree kind, dyke inset m)
CROPS = [
    ("crop_rice", 0.28, 0.0, 0, 0.7),
    ("crop_young", 0.14, 0.0, 0, 0.7),
    ("crop_veg", 0.15, 0.0, 0, 0.6),
    ("crop_yellow", 0.06, 0.0, 0, 0.7),
    ("crop_banana", 0.05, 0.45, TREE_ORCHARD, 0.8),
    ("soil_tilled", 0.08, 0.0, 0, 0.6),
    ("fallow", 0.09, 0.02, TREE_VILLAGE, 0.6),
    ("greenhouse", 0.02, 0.0, 0, 1.5),
    ("orchard_ground", 0.07, 0.65, TREE_ORCHARD, 0.8),
    ("fishpond", 0.03, 0.0, 0, 3.0),
]


def smooth_field(rng: np.random.Generator, wavelengths: tuple[float, float], n: int = 6):
    """A smooth random function of (x, y) in metres, about zero mean and unit variance."""
    lam = rng.uniform(*wavelengths, n)
    theta = rng.uniform(0, np.pi, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    kx, ky = 2 * np.pi * np.cos(theta) / lam, 2 * np.pi * np.sin(theta) / lam

    def f(x, y):
        x, y = np.asarray(x, float)[..., None], np.asarray(y, float)[..., None]
        return np.sqrt(2.0 / n) * np.cos(x * kx + y * ky + phase).sum(axis=-1)

    return f


def _far_from(cities, x: float, y: float, r: float, factor: float = 1.2) -> bool:
    return all(np.hypot(x - c.cx, y - c.cy) > factor * c.radius * 1.15 + r for c in cities)


def sample_river(rng: np.random.Generator, size: tuple[float, float], cities) -> dict | None:
    """A river across the scene past the main city (most scenes have one)."""
    if rng.random() > 0.8 or not cities:
        return None
    w, h = size
    c = cities[0]
    phi = rng.uniform(0, 2 * np.pi)
    off = rng.uniform(0.0, 0.7) * c.radius
    ax, ay = c.cx + off * np.cos(phi), c.cy + off * np.sin(phi)
    ang = rng.uniform(0, np.pi)
    reach = 1.5 * np.hypot(w, h)
    d = np.array([np.cos(ang), np.sin(ang)])
    line = wiggly_line(rng, np.array([ax, ay]) - reach * d, np.array([ax, ay]) + reach * d, 0.05, step=30.0)
    width = float(np.clip(rng.uniform(35.0, 110.0), 12.0, 0.07 * min(w, h)))
    bank = float(np.clip(rng.uniform(10.0, 28.0), 6.0, 0.04 * min(w, h)))
    water = line.buffer(width / 2, cap_style="flat")
    return {"line": line, "width_m": width, "bank_m": bank, "water": water,
            "corridor": line.buffer(width / 2 + bank, cap_style="flat"),
            "material": "water_turbid" if rng.random() < 0.5 else "water"}


def build_rural(rng: np.random.Generator, plan: Plan, size: tuple[float, float], cities, river: dict | None,
                sun_world: np.ndarray) -> dict:
    """Add the country to the plan, from the ground up; returns its parameters."""
    w, h = size
    scene = shapely.box(0, 0, w, h)
    area_km2 = w * h / 1e6
    towns = shapely.union_all([c.outline for c in cities]) if cities else shapely.Polygon()
    towns_near = towns.buffer(25.0)
    shapely.prepare(towns_near)
    plan.add(scene, "rural_grass", cover=0.04, tree=TREE_VILLAGE)

    # farmland: strips of fields in a rotated grid
    ang = float(rng.uniform(0, np.pi / 2))
    strip_w = float(rng.uniform(18.0, 40.0))
    len_lo, len_hi = sorted(rng.uniform(35.0, 150.0, 2))
    len_hi = max(len_hi, len_lo + 20.0)
    half = 0.5 * np.hypot(w, h) + 50.0
    qs = np.arange(-half, half, strip_w)
    n_along = int(2 * half / len_lo) + 2
    lengths = rng.uniform(len_lo, len_hi, (len(qs), n_along))
    p1 = np.cumsum(lengths, axis=1) - half - rng.uniform(0, len_hi, (len(qs), 1))
    p0 = p1 - lengths
    q0 = np.broadcast_to(qs[:, None], p0.shape)
    p0, p1, q0 = p0.ravel(), p1.ravel(), q0.ravel()
    keep = (p1 > -half) & (p0 < half)
    p0, p1, q0 = p0[keep], p1[keep], q0[keep]
    c, s = np.cos(ang), np.sin(ang)
    mx, my = 0.5 * (p0 + p1), q0 + 0.5 * strip_w
    cx, cy = w / 2 + mx * c - my * s, h / 2 + mx * s + my * c
    farm = smooth_field(rng, (500.0, 1600.0))(cx, cy)
    inside = (cx > -60) & (cx < w + 60) & (cy > -60) & (cy < h + 60) & (farm > -0.9)
    ponds_here = rng.random() < 0.6
    pond_zone = smooth_field(rng, (400.0, 1200.0))(cx, cy) > (1.0 if ponds_here else 9.0)
    crop_fields = [smooth_field(rng, (120.0, 400.0), 4)(cx, cy) for _ in CROPS]
    weights = np.array([cw for _, cw, *_ in CROPS])
    score = np.stack(crop_fields, -1) + np.log(weights)[None, :] * 1.2 + rng.gumbel(0, 0.6, (len(cx), len(CROPS)))
    crop = np.argmax(score, axis=-1)
    crop = np.where(pond_zone, len(CROPS) - 1, crop)
    fields_kept = 0
    counts = {}
    for i, (material, _, cover, tree, inset) in enumerate(CROPS):
        sel = np.flatnonzero(inside & (crop == i))
        if not len(sel):
            continue
        a0, a1 = p0[sel] + inset, p1[sel] - inset
        b0, b1 = q0[sel] + inset, q0[sel] + strip_w - inset
        ok = (a1 - a0 > 3) & (b1 - b0 > 3)
        a0, a1, b0, b1 = a0[ok], a1[ok], b0[ok], b1[ok]
        corners = np.stack([np.stack([a0, b0], -1), np.stack([a1, b0], -1), np.stack([a1, b1], -1),
                            np.stack([a0, b1], -1), np.stack([a0, b0], -1)], axis=1)
        x = w / 2 + corners[..., 0] * c - corners[..., 1] * s
        y = h / 2 + corners[..., 0] * s + corners[..., 1] * c
        polys = shapely.polygons(np.stack([x, y], -1))
        polys = polys[~shapely.intersects(towns_near, polys)]
        plan.add(polys, material, cover=cover, tree=tree)
        fields_kept += len(polys)
        counts[material] = len(polys)

    # forest and woodlots
    forests = []
    n_forest = 1 + int(rng.random() < 0.5)
    for _ in range(n_forest):
        r = float(np.clip(rng.uniform(180.0, 600.0), 40.0, 0.3 * min(w, h)))
        for _ in range(60):
            x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            if _far_from(cities, x, y, 0.6 * r, 1.05):
                break
        else:
            # no room away from town: a forest in the farthest corner
            corners = [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h)]
            x, y = max(corners, key=lambda p: min(np.hypot(p[0] - t.cx, p[1] - t.cy) for t in cities))
        blob = random_blob(rng, x, y, r, 0.3, 96).difference(towns_near)
        cov = float(rng.uniform(0.85, 0.97))
        plan.add(blob, "forest_floor", cover=cov, tree=TREE_FOREST)
        forests.append({"x_m": x, "y_m": y, "radius_m": r, "cover": cov})
    n_wood = int(rng.poisson(2.5 * area_km2))
    woods = []
    for _ in range(n_wood):
        x, y, r = float(rng.uniform(0, w)), float(rng.uniform(0, h)), float(rng.uniform(18.0, 65.0))
        if _far_from(cities, x, y, r, 1.0):
            woods.append(random_blob(rng, x, y, r, 0.35).difference(towns_near))
    plan.add(np.asarray(woods, dtype=object), "forest_floor", cover=0.85, tree=TREE_FOREST)

    lake = None
    if rng.random() < 0.5:
        r = float(np.clip(rng.uniform(60.0, 220.0), 20.0, 0.15 * min(w, h)))
        for _ in range(40):
            x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            if _far_from(cities, x, y, r):
                blob = random_blob(rng, x, y, r, 0.3).difference(towns_near)
                plan.add(blob.buffer(6.0), "rural_grass", cover=0.3, tree=TREE_VILLAGE)
                plan.add(blob, "water" if rng.random() < 0.6 else "water_turbid")
                lake = {"x_m": x, "y_m": y, "radius_m": r}
                break

    if river is not None:
        banks = river["corridor"].buffer(6.0).intersection(scene)
        plan.add(banks, "rural_grass", cover=float(rng.uniform(0.2, 0.55)), tree=TREE_VILLAGE)
        plan.add(river["water"].intersection(scene), river["material"])

    # villages
    villages = []
    n_vil = 1 + int(rng.poisson(0.35 * area_km2))
    wet = river["corridor"].buffer(10.0) if river is not None else shapely.Polygon()
    for _ in range(n_vil):
        r = float(np.clip(rng.uniform(50.0, 140.0), 25.0, 0.12 * min(w, h)))
        for _ in range(40):
            x, y = float(rng.uniform(0.05 * w, 0.95 * w)), float(rng.uniform(0.05 * h, 0.95 * h))
            if _far_from(cities, x, y, r, 1.1) and not wet.intersects(shapely.Point(x, y).buffer(r)) and \
                    all(np.hypot(x - v["x_m"], y - v["y_m"]) > r + v["radius_m"] + 60 for v in villages):
                break
        else:
            continue
        vang = float(rng.uniform(0, np.pi / 2))
        ctx = Ctx(rng=rng, plan=plan, cx=x, cy=y, angle=vang, sun=_local_sun(sun_world, vang), core=1.0)
        ground = random_blob(rng, 0.0, 0.0, r, 0.35)
        ctx.add(ground, "village_ground", cover=float(rng.uniform(0.15, 0.35)), tree=TREE_VILLAGE)
        if rng.random() < 0.5:
            pr = float(rng.uniform(12.0, 30.0))
            ctx.add(random_blob(rng, float(rng.uniform(-0.6, 0.6)) * r, float(rng.uniform(-0.6, 0.6)) * r, pr, 0.3),
                    "fishpond")
        cell = float(rng.uniform(11.0, 17.0))
        gap = float(rng.uniform(2.0, 5.0))
        k = int(r // cell) + 1
        iu, iv = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1), indexing="ij")
        a0 = (iu.ravel() * cell + rng.uniform(-1, 1, iu.size)).astype(float)
        b0 = (iv.ravel() * cell + rng.uniform(-1, 1, iu.size)).astype(float)
        su = cell - gap - rng.uniform(0, 3, a0.size)
        sv = cell - gap - rng.uniform(0, 3, a0.size)
        dist = np.hypot(a0, b0) / r
        keep = rng.random(a0.size) < np.clip(1.1 - dist ** 2, 0.0, 0.95)
        n = int(keep.sum())
        roofs = np.asarray(["roof_red", "roof_tile", "roof_concrete", "roof_dark", "roof_blue", "roof_light"])[
            rng.choice(6, size=n, p=[0.2, 0.16, 0.36, 0.1, 0.04, 0.14])]
        pitched = np.isin(roofs, ["roof_red", "roof_tile"])
        hs = rng.uniform(6.0, 15.0, n)
        sel = np.flatnonzero(keep)
        for flag in (True, False):
            m = pitched == flag
            add_buildings(ctx, a0[sel][m], b0[sel][m], a0[sel][m] + su[sel][m], b0[sel][m] + sv[sel][m], hs[m],
                          roofs[m], ground, pitched=flag, rooftop=False)
        villages.append({"x_m": x, "y_m": y, "radius_m": r, "angle_deg": float(np.degrees(vang)), "houses": n})

    # country roads: lanes across the scene and a lane from each village to the nearest road
    lanes = []
    for _ in range(int(rng.integers(1, 4))):
        a = rng.uniform(0, np.pi)
        d = np.array([np.cos(a), np.sin(a)])
        p = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        reach = np.hypot(w, h)
        lanes.append(wiggly_line(rng, p - reach * d, p + reach * d, 0.03, step=25.0))
    lane_w = float(rng.uniform(4.0, 7.0))
    for v in villages:
        net = shapely.union_all(lanes)
        q = shapely.ops.nearest_points(shapely.Point(v["x_m"], v["y_m"]), net)[1] if lanes else None
        if q is not None:
            lanes.append(shapely.LineString([(v["x_m"], v["y_m"]), (q.x, q.y)]))
    roads = [ln.buffer(lane_w / 2, cap_style="flat").intersection(scene).difference(towns) for ln in lanes]
    plan.add(np.asarray(roads, dtype=object), "asphalt_light" if rng.random() < 0.6 else "dirt")

    return {"farm_angle_deg": float(np.degrees(ang)), "field_strip_m": strip_w, "field_length_m": [len_lo, len_hi],
            "fields": fields_kept, "crops": dict(sorted(counts.items())), "fish_pond_district": bool(ponds_here),
            "forests": forests, "woodlots": len(woods), "lake": lake, "villages": villages,
            "country_lanes": len(lanes), "lane_width_m": lane_w}


def _local_sun(sun_world: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([sun_world[0] * c + sun_world[1] * s, -sun_world[0] * s + sun_world[1] * c])
