"""generate_ugs_scene: a synthetic ~1 m city scene for the UGS product, with ground truth, written as COGs
on the product's lattice + a GUB-like boundary (raster and GeoJSON) + synth.json + a static STAC catalog.

    out_dir/{date}/rgb.tif        uint8 RGB (red, green, blue), a clear Google-Earth-like mosaic
    out_dir/{date}/ugs.tif        uint8 ground truth: 255 urban green space, 0 non-UGS
    out_dir/{date}/ugs_type.tif   uint8 the Table 1 type: 0 none, 1 park, 2 green buffer, 3 square green
                                  space, 4 attached green space, 5 other green space
    out_dir/2018/gub.tif          uint8 urban boundary (GUB 2018-like): 1 inside, 0 outside
    out_dir/gub.geojson           the same boundary as polygons (the raster is their rasterisation)
    out_dir/synth.json            every sampled parameter
    out_dir/catalog.json          the catalog (items: the date, with rgb/ugs/ugs_type; 2018, with gub)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import shapely
from rasterio.enums import ColorInterp
from rasterio.features import rasterize

from ..cog import CLASS_OPTIONS
from ..streams import jsonable, stream_rng
from .blocks import BLOCK_USES
from .boundary import urban_boundary
from .canopy import grow
from .city import build_city, sample_cities
from .lattice import RESOLUTION_TEXT, UgsGrid, check_bounds, check_date, snap
from .materials import (
    GUB_COLORS,
    IS_ROOF,
    IS_WATER,
    MATERIALS,
    TREE_KINDS,
    TYPE_COLORS,
    UGS_COLORS,
    UGS_TYPES,
    VEGETATED,
    group_colours,
)
from .paint import paint
from .plan import Plan
from .rural import build_rural, sample_river
from .stac import GUB_EPOCH, write_ugs_catalog
from .style import STYLES, apply_style, sample_style, sun_vector

UGS_GENERATOR_VERSION = "ugs-1.0.0"
DEFAULT_MARGIN_PX = 256

# Independent random streams per concern (offset from the CBRA generator's), so that changing one part
# leaves the others' draws as they were.
(_S_CITIES, _S_RIVER, _S_RURAL, _S_BLOCKS, _S_COLOURS, _S_CANOPY, _S_STYLE, _S_RENDER,
 _S_GROWTH) = range(100, 109)


def _write(path: Path, data: np.ndarray, grid: UgsGrid, **kw) -> None:
    from mapgen.files import cog

    cog.write_cog(path, data, crs="EPSG:4326", transform=grid.transform, compress="zstd",
                  config=cog.SINGLE_THREADED, **kw)


def _shadow_hulls(geoms: np.ndarray, heights: np.ndarray, shift_per_m: np.ndarray) -> np.ndarray:
    """Each caster's footprint swept along the shadow direction by its height: convex hulls."""
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    moved = coords + heights[index, None] * shift_per_m[None, :]
    allc, alli = np.concatenate([coords, moved]), np.concatenate([index, index])
    order = np.argsort(alli, kind="stable")
    pts = shapely.multipoints(shapely.points(allc[order]), indices=alli[order])
    return shapely.convex_hull(pts)


def _geojson(geoms: np.ndarray) -> list[dict]:
    """GeoJSON-like dicts of polygons and multipolygons, built in bulk (far faster than one
    `__geo_interface__` at a time, which is what rasterize would otherwise call)."""
    geoms = np.asarray(geoms, dtype=object)
    parts, part_of = shapely.get_parts(geoms, return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    coords, coord_of = shapely.get_coordinates(rings, return_index=True)
    starts = np.searchsorted(coord_of, np.arange(len(rings) + 1))
    ring_lists = [coords[a:b].tolist() for a, b in zip(starts[:-1], starts[1:], strict=True)]
    rstarts = np.searchsorted(ring_of, np.arange(len(parts) + 1))
    polys = [ring_lists[a:b] for a, b in zip(rstarts[:-1], rstarts[1:], strict=True)]
    pstarts = np.searchsorted(part_of, np.arange(len(geoms) + 1))
    out = []
    for a, b in zip(pstarts[:-1], pstarts[1:], strict=True):
        if b - a == 1:
            out.append({"type": "Polygon", "coordinates": polys[a]})
        else:
            out.append({"type": "MultiPolygon", "coordinates": polys[a:b]})
    return out


def boundary_geojson(polys, grid: UgsGrid) -> dict:
    """The boundary polygons (scene metres) as an EPSG:4326 FeatureCollection, coordinates to 1e-9°."""
    features = []
    for i, p in enumerate(polys, start=1):
        ring = np.round(grid.to_lonlat(np.asarray(p.exterior.coords)), 9)
        if shapely.LinearRing(ring).is_ccw is False:
            ring = ring[::-1]  # RFC 7946: exterior rings counter-clockwise
        features.append({"type": "Feature", "id": i,
                         "properties": {"id": i, "year": GUB_EPOCH, "name": f"urban-{i}",
                                        "source": "synthetic GUB-like urban boundary (30 m, generalised)"},
                         "geometry": {"type": "Polygon", "coordinates": [ring.tolist()]}})
    return {"type": "FeatureCollection", "name": "gub", "features": features}


def rasterize_boundary(collection: dict, shape: tuple[int, int], transform) -> np.ndarray:
    """The boundary raster: 1 inside the FeatureCollection's polygons, 0 outside (pixel centres)."""
    geoms = [f["geometry"] for f in collection["features"]]
    if not geoms:
        return np.zeros(shape, dtype=np.uint8)
    return rasterize(((g, 1) for g in geoms), out_shape=shape, transform=transform, fill=0, dtype="uint8")


def generate_ugs_scene(bounds: tuple[float, float, float, float], date: str | int, out_dir: str | Path, *,
                       seed: int = 0, style: str = "auto", margin_px: int = DEFAULT_MARGIN_PX,
                       progress: Callable[[str], None] | None = None) -> dict:
    """Generate a synthetic city scene over `bounds` (west, south, east, north, EPSG:4326) imaged on `date`
    (a year, month or day) and write it under `out_dir` (see the module's docstring). `style`: 'auto' (a
    plausible Google-Earth-like look drawn from the seed) or a named look ('far', 'gf2'). The same arguments
    give byte-identical files. Returns the synth.json content."""
    wsen = check_bounds(bounds)
    day = check_date(date)
    if isinstance(seed, bool) or int(seed) != seed:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}: give one of {', '.join(STYLES)}")
    grid = snap(wsen, margin_px)
    out = Path(out_dir).resolve()
    say = progress or (lambda msg: None)
    h, w = grid.shape
    size = grid.size_m
    dx, dy = grid.pixel_m

    look = sample_style(stream_rng(seed, _S_STYLE), style)
    sun = sun_vector(look)
    look_run = {**look, "_sun": sun.tolist(),
                "_tree_jitter": [float(v) for v in stream_rng(seed, _S_STYLE, 1).normal(1.0, 0.05, 3)]}

    # the plan: country, river, cities
    plan = Plan()
    names = [f"city-{i + 1}" for i in range(2)]
    cities = sample_cities(stream_rng(seed, _S_CITIES), grid.inner_m, names, size)
    river = sample_river(stream_rng(seed, _S_RIVER), size, cities)
    rural = build_rural(stream_rng(seed, _S_RURAL), plan, size, cities, river, sun)
    reach = float(np.hypot(*size))
    city_out = [build_city(stream_rng(seed, _S_BLOCKS, i), plan, c, river["corridor"] if river else None,
                           river["water"] if river else None, sun, reach) for i, c in enumerate(cities)]

    # the 2018 boundary: the footprint, less the fringe blocks built since
    growth = stream_rng(seed, _S_GROWTH)
    footprint, growth_p = [], []
    for co in city_out:
        p = float(growth.uniform(0.0, 0.3))
        growth_p.append(p)
        newer = (co["footprint_rnorm"] > 0.8) & (growth.random(len(co["footprint_rnorm"])) < p)
        footprint.extend(np.asarray(co["footprint"], dtype=object)[~newer].tolist())
    polys = urban_boundary(footprint, size, min_area_m2=min(20_000.0, 0.25 * min(c.outline.area for c in cities)))
    if not polys:  # a town too small for GAIA's 30 m: its outline, generalised, stands in
        polys = [shapely.Polygon(c.outline.simplify(10.0).exterior) for c in cities[:1]]
    gub_fc = boundary_geojson(polys, grid)
    say(f"plan: {len(cities)} cities, {len(plan)} patches, {len(polys)} boundary polygons")

    # the patch raster and its tables (row 0: the ground under everything, as the first patch)
    arr = plan.arrays()
    n = len(arr["geoms"])
    ids = rasterize(zip(_geojson(arr["geoms"]), range(1, n + 1), strict=True), out_shape=(h, w),
                    transform=grid.metric_transform, fill=1, dtype="int32")
    cols = {k: np.concatenate([arr[k][:1], arr[k]]) for k in ("mat", "ugs", "cover", "tree", "height", "group",
                                                            "shade")}
    group_rgb = group_colours(stream_rng(seed, _S_COLOURS), arr["group_mat"], look["vegetation"])
    cols["rgb"] = (group_rgb[cols["group"]] * cols["shade"][:, None]).astype(np.float32)
    reach_lut = np.where(IS_ROOF | IS_WATER, 2.0, np.where(VEGETATED, 0.0, 0.6)).astype(np.float32)
    allowed = reach_lut[cols["mat"]][ids]
    crng = stream_rng(seed, _S_CANOPY)
    crown_m = float(crng.uniform(5.5, 8.0))
    grove = float(crng.uniform(0.6, 0.85))
    tree_h = float(crng.uniform(6.0, 12.0))
    canopy = grow(crng, ids, cols["cover"], cols["tree"], cols["ugs"], allowed, crown_m / dx, grove)
    del allowed
    n_trees = canopy.n_alive

    # truth: the patch's type, or the type of the tree whose crown is over the pixel
    gub = rasterize_boundary(gub_fc, (h, w), grid.transform)
    kind = cols["ugs"][ids]
    crown = canopy.tree >= 0
    tree_type = canopy.ugs[np.where(crown, canopy.tree, 0)]
    kind = np.where(crown & (tree_type > 0), tree_type, kind).astype(np.uint8)
    del tree_type
    kind *= gub
    ugs = np.where(kind > 0, np.uint8(255), np.uint8(0))
    inside = int(gub.sum())
    share = float((ugs > 0).sum() / inside) if inside else 0.0
    type_share = {UGS_TYPES[t]: (float((kind == t).sum() / inside) if inside else 0.0) for t in UGS_TYPES}

    ddir, gdir = out / day, out / str(GUB_EPOCH)
    ddir.mkdir(parents=True, exist_ok=True)
    gdir.mkdir(parents=True, exist_ok=True)
    (out / "gub.geojson").write_text(json.dumps(gub_fc, indent=1) + "\n")
    with ThreadPoolExecutor(max_workers=1) as writer:  # GDAL compresses without the GIL: overlap with rendering
        jobs = [
            writer.submit(_write, ddir / "ugs.tif", ugs, grid, nodata=None, overview_resampling="nearest",
                          descriptions=["urban green space"], colormap=UGS_COLORS, creation_options=CLASS_OPTIONS),
            writer.submit(_write, ddir / "ugs_type.tif", kind, grid, nodata=None, overview_resampling="nearest",
                          descriptions=["ugs type"], colormap=TYPE_COLORS, creation_options=CLASS_OPTIONS),
            writer.submit(_write, gdir / "gub.tif", gub, grid, nodata=None, overview_resampling="nearest",
                          descriptions=["urban"], colormap=GUB_COLORS, creation_options=CLASS_OPTIONS),
        ]
        del ugs, gub
        # shadows of buildings and cars: footprints swept away from the sun, the tallest caster winning
        casters = np.flatnonzero(arr["height"] > 0)
        elev = math.radians(look["sun_elevation_deg"])
        shift = -sun / math.tan(elev)
        hulls = _shadow_hulls(arr["geoms"][casters], arr["height"][casters].astype(float), shift)
        cast_h = arr["height"][casters].astype(float)
        order = np.argsort(cast_h, kind="stable")
        shadow_h = rasterize(zip(_geojson(hulls[order]), cast_h[order].tolist(), strict=True), out_shape=(h, w),
                             transform=grid.metric_transform, fill=0.0, dtype="float32") if len(casters) else \
            np.zeros((h, w), np.float32)
        lines = rasterize(plan.paint, out_shape=(h, w), transform=grid.metric_transform, fill=0, dtype="uint8") \
            if plan.paint else np.zeros((h, w), np.uint8)
        tl = 0.6 * tree_h / math.tan(elev)
        tree_shift = (int(round(-sun[1] * tl / dy)), int(round(-sun[0] * tl / dx)))
        farm_angle = math.radians(rural["farm_angle_deg"])
        img = paint(stream_rng(seed, _S_RENDER), ids, cols, canopy, shadow_h, lines, look_run, farm_angle=farm_angle,
                    city_angle=cities[0].angle if cities else 0.0, tree_shift=tree_shift)
        del ids, shadow_h, lines, canopy
        rgb = apply_style(img, look, stream_rng(seed, _S_RENDER, 1))
        del img
        jobs.append(writer.submit(_write, ddir / "rgb.tif", rgb, grid, nodata=None, overview_resampling="average",
                                  descriptions=["red", "green", "blue"],
                                  colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue],
                                  creation_options=CLASS_OPTIONS))
        del rgb
        for job in jobs:
            job.result()
    say(f"rendered {w}x{h} px; UGS {share:.1%} of the urban area")

    city_params = []
    for c, co in zip(cities, city_out, strict=True):
        lon, lat = grid.to_lonlat(np.array([[c.cx, c.cy]]))[0]
        city_params.append({**co["params"], "lon": float(lon), "lat": float(lat)})
    for v in rural["villages"] + rural["forests"] + ([rural["lake"]] if rural["lake"] else []):
        lon, lat = grid.to_lonlat(np.array([[v["x_m"], v["y_m"]]]))[0]
        v["lon"], v["lat"] = float(lon), float(lat)
    meta = {
        "product": "ugs", "generator": UGS_GENERATOR_VERSION, "generator_module": "mapgen.synthetic.ugs",
        "seed": seed, "style": {**look, "requested": style}, "bounds": list(wsen), "resolution": RESOLUTION_TEXT,
        "dates": [day],
        "margin_px": int(margin_px), "grid": grid.describe(),
        "files": {"rgb": f"{day}/rgb.tif", "ugs": f"{day}/ugs.tif", "ugs_type": f"{day}/ugs_type.tif"},
        "bands": {"rgb": ["red", "green", "blue"]},
        "truth": {"ugs": {day: f"{day}/ugs.tif"}, "ugs_type": {day: f"{day}/ugs_type.tif"},
                  "values": {"ugs": {"0": "non-UGS", "255": "UGS"},
                             "ugs_type": {"0": "none", **{str(k): v for k, v in UGS_TYPES.items()}}}},
        "boundary": {"raster": f"{GUB_EPOCH}/gub.tif", "vector": "gub.geojson", "year": GUB_EPOCH,
                     "polygons": len(polys), "cell_m": 30.0, "growth_since_2018_probability": growth_p},
        "ugs_share": share, "ugs_type_share": type_share,
        "urban_share": inside / float(h * w),
        "layout": {
            "cities": city_params, "block_uses": list(BLOCK_USES),
            "river": ({"width_m": river["width_m"], "bank_m": river["bank_m"], "material": river["material"]}
                      if river else None),
            "rural": rural, "patches": n, "buildings": int(np.sum((arr["height"] > 2.0) & IS_ROOF[arr["mat"]])),
        },
        "trees": {"crown_spacing_m": crown_m, "grove": grove, "height_m": tree_h, "alive": n_trees,
                  "kinds": list(TREE_KINDS)},
        "materials": MATERIALS,
    }
    meta = jsonable(meta)
    (out / "synth.json").write_text(json.dumps(meta, sort_keys=True, indent=1) + "\n")
    write_ugs_catalog(out, grid, day, seed, UGS_GENERATOR_VERSION, look["name"])
    return meta
