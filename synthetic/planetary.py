"""Sentinel-2 L2A-like scenes as a static STAC catalog in Planetary Computer's layout: collection
`sentinel-2-l2a`, asset keys B02, B03, B04, B08 and SCL, hrefs in Azure Blob Storage
(`https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/...`, which need a SAS token to read), and
ESA's values as they are: no `raster:bands` scale or offset on the band assets, and from processing
baseline 04.00 on the DN hold reflectance × 10000 + 1000.

The scenes are `write_scene_catalog`'s (the same clouds, shadows, haze and partial footprint, so the
cloud-masked median is the composite again); only the layout and the DN offset differ. The files are
written under `blob_root/{account}/{container}/...`, where a stand-in for blob storage can serve them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pystac
import rasterio

from .cog import write_cog
from .scenes import BANDS, write_scene_catalog

ACCOUNT, CONTAINER = "sentinel2l2a01", "sentinel2-l2"
BASELINE = "05.10"
BOA_ADD_OFFSET = 1000  # DN added from baseline 04.00 on
_EO = {"B02": ("blue", 0.49), "B03": ("green", 0.56), "B04": ("red", 0.665), "B08": ("nir", 0.842)}


def blob_href(account: str, container: str, path: str) -> str:
    """The https URL of a blob, as Azure Blob Storage names it."""
    return f"https://{account}.blob.core.windows.net/{container}/{path}"


def write_planetary_catalog(scene_dir: str | Path, out_dir: str | Path, blob_root: str | Path, years: list[int], *,
                            per_year: int = 3, seed: int = 0, baseline: str = BASELINE,
                            account: str = ACCOUNT, container: str = CONTAINER) -> Path:
    """Write the scenes of `scene_dir/{year}/s2.tif` as blobs under `blob_root` and their catalog under
    `out_dir`; returns the catalog's path."""
    out_dir, blob_root = Path(out_dir).resolve(), Path(blob_root).resolve()
    staging = out_dir / ".earth-search"
    source = pystac.Catalog.from_file(str(write_scene_catalog(scene_dir, staging, years, per_year=per_year,
                                                              seed=seed)))
    offset = BOA_ADD_OFFSET if baseline >= "04.00" else 0
    catalog = pystac.Catalog(id="mapgen-synthetic-planetary", title="Synthetic Sentinel-2 L2A (Planetary Computer)",
                             description="Cloudy scenes in Planetary Computer's layout, assets in blob storage")
    collection = next(source.get_children()).clone()
    collection.clear_items()
    catalog.add_child(collection)
    for item in source.get_items(recursive=True):
        new = pystac.Item(id=item.id, geometry=item.geometry, bbox=item.bbox, datetime=item.datetime,
                          properties={**item.properties, "s2:processing_baseline": baseline,
                                      "s2:mgrs_tile": "50SMK", "platform": "Sentinel-2A"},
                          collection=collection.id)
        folder = f"{item.datetime:%Y/%m/%d}/{item.id}.SAFE/IMG_DATA"
        for key, name in (*BANDS, ("scl", "SCL")):
            with rasterio.open(item.assets[key].get_absolute_href()) as src:
                data, transform = src.read(1), src.transform
            if name != "SCL":
                data = np.where(data > 0, data.astype(np.uint32) + offset, 0).astype(np.uint16)
            blob = f"{folder}/{name}.tif"
            (blob_root / account / container / blob).parent.mkdir(parents=True, exist_ok=True)
            write_cog(blob_root / account / container / blob, data, transform, descriptions=[name], nodata=0,
                      resampling="nearest")
            extra = {"gsd": 10.0 if name != "SCL" else 20.0,
                     "proj:shape": list(data.shape), "proj:transform": list(transform)[:6]}
            if name in _EO:
                common, centre = _EO[name]
                extra["eo:bands"] = [{"name": name, "common_name": common, "center_wavelength": centre}]
            new.add_asset(name, pystac.Asset(href=blob_href(account, container, blob), title=name,
                                             media_type=pystac.MediaType.COG, roles=["data"], extra_fields=extra))
        collection.add_item(new)
    shutil.rmtree(staging)
    catalog.normalize_hrefs(str(out_dir))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog.json"
