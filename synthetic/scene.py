"""generate_scene: the whole synthetic multi-year scene, written as COGs + synth.json + STAC."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .cog import write_cog
from .grid import check_request, snap_grid
from .history import sample_history
from .landscape import build_static, usable_lots
from .layout import sample_layout
from .materials import LANDCOVER_CLASSES, LANDCOVER_COLORS, ROOFTOP_COLORS, class_lut, rooftops
from .render import render_year, static_texture, update_codes
from .stac import write_catalog
from .streams import jsonable, stream_rng
from .style import sample_style

GENERATOR_VERSION = "1.0.0"

# Independent random streams per concern, so changing one part of the generator leaves the others'
# draws (and the scenes they make) as they were.
_STREAM_LAYOUT, _STREAM_STATIC, _STREAM_HISTORY, _STREAM_TEXTURE, _STREAM_STYLE, _STREAM_RENDER = range(6)


def generate_scene(bounds: tuple[float, float, float, float], years: Sequence[int], out_dir: str | Path, *,
                   seed: int = 0, res: float = 0.1 / 1113, scale: int = 4, margin_px: int = 128,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Generate a procedural, georeferenced multi-year scene over `bounds` (west, south, east, north,
    EPSG:4326) and write, per year, `out_dir/{year}/{s2,built,rooftops,landcover}.tif`, plus
    `out_dir/synth.json` (every sampled parameter) and a static STAC catalog `out_dir/catalog.json`.

    The same arguments give byte-identical files. Returns the synth.json content.
    """
    wsen, ys = check_request(bounds, years, res, scale, margin_px)
    if int(seed) != seed:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    grid = snap_grid(wsen, res, int(scale), int(margin_px))
    out = Path(out_dir).resolve()  # pystac reads relative hrefs against the item, not the cwd
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: None)

    # The requested region in the layout's metric frame, where towns are placed.
    dx, dy = grid.hr_pixel_m
    inner = ((wsen[0] - grid.west) / grid.hr_res * dx, (grid.north - wsen[3]) / grid.hr_res * dy,
             (wsen[2] - grid.west) / grid.hr_res * dx, (grid.north - wsen[1]) / grid.hr_res * dy)
    layout = sample_layout(stream_rng(seed, _STREAM_LAYOUT), grid.hr_width * dx, grid.hr_height * dy, inner)
    static, static_params = build_static(stream_rng(seed, _STREAM_STATIC), layout, grid)
    keep = usable_lots(layout.lots, static, grid)
    lots = layout.lots.subset(keep)
    history = sample_history(stream_rng(seed, _STREAM_HISTORY), lots, ys)
    texture = static_texture(stream_rng(seed, _STREAM_TEXTURE), (grid.height, grid.width))
    say(f"layout: {len(layout.towns)} towns, {len(layout.villages)} villages, {len(lots)} lots")

    cls_lut = class_lut()
    styles = {}
    codes = static  # evolves in place, year by year
    del static
    # GDAL releases the GIL while it compresses, so one writer thread overlaps the COG writing with
    # the next rendering on a second core. Waiting for a year's files before queueing the next year's
    # bounds the memory to about two years of rasters; file bytes do not depend on the timing.
    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=1) as writer:
        for t, year in enumerate(ys):
            style = sample_style(stream_rng(seed, _STREAM_STYLE, year))
            styles[str(year)] = style
            update_codes(codes, history, t, grid)
            ydir = out / str(year)
            ydir.mkdir(exist_ok=True)
            jobs = [
                (ydir / "landcover.tif", cls_lut[codes], grid.hr_transform,
                 {"descriptions": ["landcover"], "nodata": None, "resampling": "nearest",
                  "colormap": LANDCOVER_COLORS}),
                (ydir / "rooftops.tif", rooftops(codes), grid.hr_transform,
                 {"descriptions": ["rooftop"], "nodata": None, "resampling": "nearest",
                  "colormap": ROOFTOP_COLORS}),
            ]
            futures = [writer.submit(write_cog, p, a, tr, **kw) for p, a, tr, kw in jobs]
            del jobs
            s2, built = render_year(codes, style, texture, stream_rng(seed, _STREAM_RENDER, year), grid.scale)
            futures += [
                writer.submit(write_cog, ydir / "s2.tif", s2, grid.transform,
                              descriptions=["B2", "B3", "B4", "B8"], nodata=float("nan"),
                              resampling="average"),
                writer.submit(write_cog, ydir / "built.tif", built, grid.transform, descriptions=["built"],
                              nodata=float("nan"), resampling="average"),
            ]
            del s2, built
            for f in pending:
                f.result()
            pending = futures
            say(f"year {year} rendered ({t + 1}/{len(ys)})")
        for f in pending:
            f.result()

    towns = []
    for tw in layout.towns:
        lon, lat = grid.hr_to_lonlat(tw.cx / dx, tw.cy / dy)
        towns.append({"lon": lon, "lat": lat, "radius_m": tw.radius, "angle_deg": float(np.degrees(tw.angle)),
                      "block_m": tw.block, "street_width_m": tw.street_w, "lot_m": tw.lot,
                      "density": tw.density, "core_fraction": tw.core, "park_probability": tw.park_p,
                      "industrial_probability": tw.industrial_p,
                      "apartment_probability": tw.apartment_p, "n_parks": len(tw.park_blocks),
                      "development_zones": [
                          dict(zip(("lon", "lat"), grid.hr_to_lonlat(x / dx, y / dy), strict=True), radius_m=r)
                          for x, y, r in tw.dev_zones]})
    villages = []
    for v in layout.villages:
        lon, lat = grid.hr_to_lonlat(v.cx / dx, v.cy / dy)
        villages.append({"lon": lon, "lat": lat, "radius_m": v.radius, "n_planned": v.n_buildings})
    meta = {
        "generator": "mapgen.synthetic", "version": GENERATOR_VERSION, "seed": int(seed),
        "bounds": list(wsen), "years": ys, "res": grid.res, "scale": grid.scale, "margin_px": int(margin_px),
        "grid": grid.describe(),
        "files": {k: f"{{year}}/{k}.tif" for k in ("s2", "built", "rooftops", "landcover")},
        "bands": {"s2": ["B2", "B3", "B4", "B8"]},
        "landcover_classes": {str(k): v for k, v in LANDCOVER_CLASSES.items()},
        "layout": {**layout.params, "towns": towns, "villages": villages, **static_params},
        "history": history.stats, "styles": styles,
    }
    meta = jsonable(meta)
    (out / "synth.json").write_text(json.dumps(meta, sort_keys=True, indent=1) + "\n")
    write_catalog(out, grid, ys, int(seed), GENERATOR_VERSION)
    return meta
