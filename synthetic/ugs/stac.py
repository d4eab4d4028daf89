"""The static, self-contained STAC catalog of a UGS scene: an item for the imagery's date (assets rgb, ugs,
ugs_type) and one for the urban boundary's fixed epoch 2018 (asset gub); items carry `mapgen:year`, the
asset keys are the product's input names, so the scene reads as `--source DIR/catalog.json`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pystac
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension

from .lattice import UgsGrid

GUB_EPOCH = 2018
RGB_BANDS = [("red", "red", 0.65), ("green", "green", 0.55), ("blue", "blue", 0.47)]


def _span(date: str) -> tuple[dt.datetime, dt.datetime]:
    parts = [int(p) for p in date.split("-")]
    year = parts[0]
    if len(parts) == 1:
        return dt.datetime(year, 1, 1, tzinfo=dt.UTC), dt.datetime(year, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    month = parts[1]
    if len(parts) == 2:
        nxt = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)
        return dt.datetime(year, month, 1, tzinfo=dt.UTC), nxt - dt.timedelta(seconds=1)
    day = dt.datetime(year, month, parts[2], tzinfo=dt.UTC)
    return day, day + dt.timedelta(hours=23, minutes=59, seconds=59)


def write_ugs_catalog(out_dir: Path, grid: UgsGrid, date: str, seed: int, version: str, style: str) -> Path:
    w, s, e, n = grid.bounds
    geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    catalog = pystac.Catalog(
        id="mapgen-synthetic-ugs",
        description=f"Synthetic ~1 m city scene for UGS (mapgen.synthetic {version}, seed {seed}, style {style})",
        title="mapgen synthetic UGS scene")
    items = [
        (f"ugs-{date}", date, {
            "rgb": (f"{date}/rgb.tif", "Synthetic Google-Earth-like RGB mosaic (~1.1 m, 8-bit)", ["data"]),
            "ugs": (f"{date}/ugs.tif", "Ground truth: urban green space (255) / non-UGS (0)", ["labels"]),
            "ugs_type": (f"{date}/ugs_type.tif", "Ground truth: UGS type of Table 1 (0 none, 1-5)", ["labels"]),
        }),
        (f"gub-{GUB_EPOCH}", str(GUB_EPOCH), {
            "gub": (f"{GUB_EPOCH}/gub.tif", "GUB-like urban boundary 2018 (1 inside, 0 outside)", ["data"]),
        }),
    ]
    for item_id, when, assets in items:
        start, end = _span(when)
        props = {"mapgen:year": int(when[:4]), "mapgen:seed": seed, "mapgen:generator": version}
        if len(when) > 4:
            props["mapgen:date"] = when
        item = pystac.Item(id=item_id, geometry=geometry, bbox=[w, s, e, n], datetime=None, start_datetime=start,
                           end_datetime=end, properties=props)
        for key, (rel, title, roles) in assets.items():
            asset = pystac.Asset(href=str(out_dir / rel), media_type=pystac.MediaType.COG, roles=roles, title=title)
            item.add_asset(key, asset)
            ProjectionExtension.ext(asset, add_if_missing=True).apply(
                code="EPSG:4326", shape=[grid.box.height, grid.box.width], transform=list(grid.transform)[:6])
            if key == "rgb":
                EOExtension.ext(asset, add_if_missing=True).bands = [
                    Band.create(name=nm, common_name=cn, center_wavelength=cw) for nm, cn, cw in RGB_BANDS]
        catalog.add_item(item)
    catalog.normalize_hrefs(str(out_dir))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog.json"
