"""ESA WorldCover-like class maps as a static STAC catalog in the layout of Planetary Computer's
`esa-worldcover` collection: one item per 3° × 3° tile and version (2020 v100, 2021 v200), named by the
tile's lower-left corner (`ESA_WorldCover_10m_2021_v200_N39E114`), asset `map` a uint8 COG of classes
10, 20, …, 100 (50 = built-up, 0 = no data) on WorldCover's lattice of 1/12000° from (-180°, 90°).

A real tile is 36000² px; the synthetic tiles keep the item's 3° footprint but hold only the part of the
tile within the extent asked for. The classes are a function of the pixel's place on the lattice and the
version (`classes_at`), so a test knows the class under any point whatever the tile.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pystac
from affine import Affine

from .cog import write_cog
from .planetary import blob_href

VERSIONS = {2020: "v100", 2021: "v200"}
PRODUCT_VERSION = {"v100": "1.0.0", "v200": "2.0.0"}
CLASSES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
BUILT_UP, NO_DATA = 50, 0
PIXELS_PER_DEGREE = 12000
CELL = 6  # px: classes come in CELL × CELL squares
ACCOUNT, CONTAINER = "ai4edataeuwest", "esa-worldcover"


def classes_at_pixels(rows: np.ndarray, cols: np.ndarray, year: int) -> np.ndarray:
    """uint8 classes of the lattice pixels (row from 90°N, column from 180°W) in `year`'s version: squares
    of CELL px, about 1 in 4 built-up, 1 in 40 no data; the versions differ."""
    a, b = np.asarray(rows, np.int64) // CELL, np.asarray(cols, np.int64) // CELL
    h = (a * 73856093) ^ (b * 19349663) ^ (int(year) * 83492791)
    h = (h ^ (h >> 13)) * 1274126177 & 0x7FFFFFFF
    k = h % 13  # 11 classes and 2 more chances of built-up: about 3 in 13 built-up
    pick = np.where(k < len(CLASSES), np.asarray(CLASSES, np.uint8)[k % len(CLASSES)], BUILT_UP)
    return np.where(h % 40 == 7, NO_DATA, pick).astype(np.uint8)


def classes_at(lons: np.ndarray, lats: np.ndarray, year: int) -> np.ndarray:
    """The class of the pixel under each point (EPSG:4326 degrees)."""
    cols = np.floor((np.asarray(lons, float) + 180) * PIXELS_PER_DEGREE)
    rows = np.floor((90 - np.asarray(lats, float)) * PIXELS_PER_DEGREE)
    return classes_at_pixels(rows, cols, year)


def tile_name(lat0: int, lon0: int) -> str:
    return f"{'N' if lat0 >= 0 else 'S'}{abs(lat0):02d}{'E' if lon0 >= 0 else 'W'}{abs(lon0):03d}"


def write_worldcover_catalog(out_dir: str | Path, bounds: tuple[float, float, float, float], *,
                             versions: dict[int, str] = VERSIONS, blob_root: str | Path | None = None,
                             account: str = ACCOUNT, container: str = CONTAINER) -> Path:
    """Write the tiles meeting `bounds` (west, south, east, north) for each version, and their catalog under
    `out_dir`; the maps go under `out_dir` (relative hrefs), or with `blob_root` under
    `blob_root/{account}/{container}/` with blob storage hrefs. Returns the catalog's path."""
    out_dir = Path(out_dir).resolve()
    west, south, east, north = bounds
    catalog = pystac.Catalog(id="mapgen-synthetic-worldcover", title="Synthetic ESA WorldCover",
                             description="WorldCover-like class maps in Planetary Computer's esa-worldcover layout")
    collection = pystac.Collection(
        id="esa-worldcover", description="Synthetic ESA WorldCover 10 m", license="CC-BY-4.0",
        extent=pystac.Extent(pystac.SpatialExtent([[-180, -60, 180, 82.75]]), pystac.TemporalExtent(
            [[dt.datetime(min(versions), 1, 1, tzinfo=dt.UTC), dt.datetime(max(versions), 12, 31, tzinfo=dt.UTC)]])))
    catalog.add_child(collection)
    # the tile's part within bounds, on the lattice, with a margin of 2 px
    c0, c1 = math.floor((west + 180) * PIXELS_PER_DEGREE) - 2, math.ceil((east + 180) * PIXELS_PER_DEGREE) + 2
    r0, r1 = math.floor((90 - north) * PIXELS_PER_DEGREE) - 2, math.ceil((90 - south) * PIXELS_PER_DEGREE) + 2
    for year, version in sorted(versions.items()):
        for lat0 in range(math.floor(south / 3) * 3, math.ceil(north / 3) * 3, 3):
            for lon0 in range(math.floor(west / 3) * 3, math.ceil(east / 3) * 3, 3):
                tc0, tr0 = (lon0 + 180) * PIXELS_PER_DEGREE, (90 - lat0 - 3) * PIXELS_PER_DEGREE
                cols = np.arange(max(c0, tc0), min(c1, tc0 + 3 * PIXELS_PER_DEGREE))
                rows = np.arange(max(r0, tr0), min(r1, tr0 + 3 * PIXELS_PER_DEGREE))
                if not len(cols) or not len(rows):
                    continue
                data = classes_at_pixels(rows[:, None], cols[None, :], year)
                transform = Affine(1 / PIXELS_PER_DEGREE, 0, cols[0] / PIXELS_PER_DEGREE - 180,
                                   0, -1 / PIXELS_PER_DEGREE, 90 - rows[0] / PIXELS_PER_DEGREE)
                tile = tile_name(lat0, lon0)
                item_id = f"ESA_WorldCover_10m_{year}_{version}_{tile}"
                blob = f"{version}/{year}/map/{item_id}_Map.tif"
                path = (Path(blob_root).resolve() / account / container / blob if blob_root is not None
                        else out_dir / "maps" / blob)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_cog(path, data, transform, descriptions=["Classification values"], nodata=NO_DATA,
                          resampling="nearest")
                item = pystac.Item(
                    id=item_id, bbox=[lon0, lat0, lon0 + 3, lat0 + 3], datetime=None,
                    geometry={"type": "Polygon", "coordinates": [[[lon0, lat0], [lon0 + 3, lat0], [lon0 + 3, lat0 + 3],
                                                                  [lon0, lat0 + 3], [lon0, lat0]]]},
                    start_datetime=dt.datetime(year, 1, 1, tzinfo=dt.UTC),
                    end_datetime=dt.datetime(year, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
                    properties={"esa_worldcover:product_tile": tile,
                                "esa_worldcover:product_version": PRODUCT_VERSION.get(version, version),
                                "grid:code": f"ESAWORLDCOVER-{tile}", "proj:epsg": 4326},
                    collection=collection.id)
                item.add_asset("map", pystac.Asset(
                    href=blob_href(account, container, blob) if blob_root is not None else str(path),
                    media_type=pystac.MediaType.COG, roles=["data"], title="Land Cover Classes",
                    extra_fields={
                        "proj:shape": list(data.shape), "proj:transform": list(transform)[:6],
                        "raster:bands": [{"data_type": "uint8", "nodata": NO_DATA, "sampling": "area",
                                          "spatial_resolution": 10, "description": "Classification values"}],
                        "classification:classes": [{"value": v, "description": n} for v, n in zip(CLASSES, (
                            "Tree cover", "Shrubland", "Grassland", "Cropland", "Built-up", "Bare / sparse vegetation",
                            "Snow and ice", "Permanent water bodies", "Herbaceous wetland", "Mangroves",
                            "Moss and lichen"), strict=True)]}))
                collection.add_item(item)
    catalog.normalize_hrefs(str(out_dir))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog.json"
