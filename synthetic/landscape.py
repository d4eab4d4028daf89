"""The static 2.5 m material map: rural zones from noise fields, farm parcels, then the burned-in
vector layout (towns, villages, water, roads). Buildings are added per year on top of it."""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize

from .buildings import Lots, cell_polygons
from .fields import resize_rows, resize_x, value_noise
from .grid import SceneGrid
from .layout import TOWN_EXTENT, Layout, park_polygons
from .materials import CODE, FARM_GROUPS, N_FARM_GROUPS

STRIP_ROWS = 512  # high-resolution rows per strip: bounds the float temporaries to a few tens of MB


def metric_transform(grid: SceneGrid) -> Affine:
    """Maps the layout's metric frame (x east, y south) to high-resolution pixel indices."""
    dx, dy = grid.hr_pixel_m
    return Affine(dx, 0.0, 0.0, 0.0, dy, 0.0)


def _layer(geoms: list, code: int) -> list:
    return [(g, code) for g in geoms if g is not None and not g.is_empty]


def _hash_group(pu: np.ndarray, pv: np.ndarray, salt: int) -> np.ndarray:
    """A well-mixed 4-bit hash of integer parcel indices (murmur-like finaliser on uint32)."""
    h = (pu.astype(np.int32).view(np.uint32) * np.uint32(73856093)) ^ \
        (pv.astype(np.int32).view(np.uint32) * np.uint32(19349663)) ^ np.uint32(salt)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return ((h >> np.uint32(7)) & np.uint32(15)).astype(np.intp)


def build_static(rng: np.random.Generator, layout: Layout, grid: SceneGrid) -> tuple[np.ndarray, dict]:
    """Render the scene without buildings into a uint8 material map at res/scale."""
    h, w = grid.hr_height, grid.hr_width
    dx, dy = grid.hr_pixel_m
    pix_m = 0.5 * (dx + dy)

    # Rural zones: forest, bare land, shrub and farmland come from smooth random fields thresholded at
    # quantiles, so the sampled fractions hold whatever the scene size. Fields live on a coarse grid
    # (8 low-res pixels, ~80 m) and are interpolated to a zone map at half the high resolution
    # (5 m): fine enough that zone edges cut through 10 m pixels, four times cheaper than 2.5 m.
    zf = 2 if grid.scale % 2 == 0 else 1
    zh, zw = -(-h // zf), -(-w // zf)
    step = 8 * grid.scale
    cshape = (int(np.ceil(h / step)) + 1, int(np.ceil(w / step)) + 1)
    cell = step * pix_m
    fracs = {"forest": float(rng.uniform(0.08, 0.25)), "bare": float(rng.uniform(0.02, 0.05)),
             "shrub": float(rng.uniform(0.04, 0.10)), "farm": float(rng.uniform(0.35, 0.65))}
    sizes_m = {"forest": [2500.0, 900.0, 300.0], "bare": [700.0, 250.0], "shrub": [900.0, 300.0],
               "farm": [4000.0, 1500.0]}
    # Zone labels in increasing priority; farm_mark means "farmland unless a field margin" until the
    # parcels are drawn.
    farm_mark = 255
    zone_code = {"shrub": CODE["shrub"], "farm": farm_mark, "bare": CODE["bare_soil"],
                 "forest": CODE["trees"]}
    fields_x, thresholds = {}, {}
    for name in ("shrub", "farm", "bare", "forest"):
        cells = [s / cell for s in sizes_m[name]]
        f = value_noise(rng, cshape, cells, [1.0, 0.5, 0.25][: len(cells)])
        thresholds[name] = float(np.quantile(f, 1.0 - fracs[name]))
        fields_x[name] = resize_x(f, zw, step / zf).astype(np.float32)
    zones = np.full((zh, zw), CODE["meadow"], dtype=np.uint8)
    for r0 in range(0, zh, STRIP_ROWS):
        r1 = min(r0 + STRIP_ROWS, zh)
        for name, f in fields_x.items():
            zones[r0:r1][resize_rows(f, r0, r1, step / zf) > thresholds[name]] = zone_code[name]
    del fields_x
    if zf > 1:  # nearest upsampling by broadcasting: one pass, no intermediate copies
        codes = np.empty((h, w), dtype=np.uint8)
        codes.reshape(zh, zf, zw, zf)[:] = zones[:, None, :, None]
    else:
        codes = zones
    del zones

    # Farm parcels: the landscape is cut into square districts, each with its own parcel orientation
    # and size; inside a district the parcel of a pixel is found from its rotated coordinates, so no
    # polygons are needed, and a hash of the parcel index picks its crop group.
    dist_m = float(rng.uniform(1500.0, 3000.0))
    ndx, ndy = int(w * dx / dist_m) + 1, int(h * dy / dist_m) + 1
    farm_codes = np.asarray(FARM_GROUPS, dtype=np.uint8)
    assert len(farm_codes) == N_FARM_GROUPS == 16, "the parcel hash yields 4 bits"
    for j in range(ndy):
        ra, rb = int(j * dist_m / dy), min(int((j + 1) * dist_m / dy), h)
        for i in range(ndx):
            ca, cb = int(i * dist_m / dx), min(int((i + 1) * dist_m / dx), w)
            ang, a, b = rng.uniform(0, np.pi), rng.uniform(60.0, 250.0), rng.uniform(25.0, 100.0)
            gap, salt = rng.uniform(2.0, 5.0), int(rng.integers(0, 2**32))
            if ra >= rb or ca >= cb:
                continue
            sub = codes[ra:rb, ca:cb]
            mask = sub == farm_mark
            if not mask.any():
                continue
            xm = ((np.arange(ca, cb) + 0.5) * dx).astype(np.float32)[None, :]
            ym = ((np.arange(ra, rb) + 0.5) * dy).astype(np.float32)[:, None]
            c, s = np.float32(np.cos(ang)), np.float32(np.sin(ang))
            u = (xm * c + ym * s) / np.float32(a)
            v = (ym * c - xm * s) / np.float32(b)
            pu, pv = np.floor(u), np.floor(v)
            margin = ((u - pu) * np.float32(a) < gap) | ((v - pv) * np.float32(b) < gap)
            group = farm_codes[_hash_group(pu, pv, salt)]
            sub[mask] = np.where(margin, np.uint8(CODE["meadow"]), group)[mask]
    codes[codes == farm_mark] = CODE["meadow"]  # cannot happen (districts tile the scene); be safe

    # The vector layers, burned in one pass; GDAL burns shapes in order, so later layers win.
    towns = layout.towns
    shapes = (
        _layer([t.outline(TOWN_EXTENT) for t in towns], CODE["garden"])
        + _layer([t.outline(t.core) for t in towns], CODE["paved"])
        + _layer([p for t in towns for p in park_polygons(t)], CODE["park"])
        + _layer([shapely.Point(x, y).buffer(r) for t in towns for x, y, r in t.dev_zones], CODE["bare_site"])
        + _layer([shapely.Point(v.cx, v.cy).buffer(1.3 * v.radius) for v in layout.villages], CODE["garden"])
        + _layer([layout.riparian], CODE["trees"])
        + _layer([layout.river], CODE["river"])
        + _layer(layout.ponds, CODE["pond"])
        + _layer(layout.village_roads, CODE["road_dirt"])
        + _layer(layout.streets, CODE["road_concrete"])
        + _layer([ln.buffer(wd / 2, cap_style="flat") for ln, wd in layout.arterials], CODE["road_asphalt"])
    )
    if shapes:
        rasterize(shapes, out=codes, transform=metric_transform(grid))

    params = {"zone_fractions": fracs, "farm_district_m": dist_m, "n_farm_districts": ndx * ndy}
    return codes, params


def usable_lots(lots: Lots, codes: np.ndarray, grid: SceneGrid) -> np.ndarray:
    """Lots whose cell (shrunk to 70 %) has no road or water at its centre and corners; a building
    there would be cut by a street or stand in a river. Paved ground (town cores) is fine to build on."""
    if len(lots) == 0:
        return np.zeros(0, dtype=bool)
    dx, dy = grid.hr_pixel_m
    blocked = np.zeros(256, dtype=bool)
    blocked[[CODE[k] for k in ("road_asphalt", "road_concrete", "road_dirt", "river", "pond")]] = True
    cells = cell_polygons(lots, np.arange(len(lots)), shrink=0.7)
    xy = shapely.get_coordinates(cells).reshape(len(lots), 5, 2)[:, :4]
    pts = np.concatenate([xy, np.stack([lots.cx, lots.cy], -1)[:, None, :]], axis=1)
    col = np.clip((pts[..., 0] / dx).astype(np.int64), 0, codes.shape[1] - 1)
    row = np.clip((pts[..., 1] / dy).astype(np.int64), 0, codes.shape[0] - 1)
    inside = (pts[..., 0] >= 0) & (pts[..., 0] < codes.shape[1] * dx) & \
             (pts[..., 1] >= 0) & (pts[..., 1] < codes.shape[0] * dy)
    bad = blocked[codes[row, col]] & inside
    return ~bad.any(axis=1) & inside.any(axis=1)
