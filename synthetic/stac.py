"""A static, self-contained STAC catalog over the generated years, read by the same STAC code as
real data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pystac
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension

from .grid import SceneGrid

S2_BANDS = [  # (name, common name, centre wavelength in micrometres, FWHM), Sentinel-2A MSI
    ("B2", "blue", 0.490, 0.098),
    ("B3", "green", 0.560, 0.045),
    ("B4", "red", 0.665, 0.038),
    ("B8", "nir", 0.842, 0.145),
]
ASSETS = {  # key: (file, title, high resolution?)
    "s2": ("s2.tif", "Synthetic Sentinel-2 L1C-like annual composite (B2, B3, B4, B8; TOA reflectance)",
           False),
    "built": ("built.tif", "Synthetic Dynamic-World-like built probability", False),
    "rooftops": ("rooftops.tif", "Ground-truth building rooftops (255 = rooftop)", True),
    "landcover": ("landcover.tif", "Ground-truth land cover", True),
}


def write_catalog(out_dir: Path, grid: SceneGrid, years: list[int], seed: int, version: str) -> Path:
    w, s, e, n = grid.bounds
    geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    catalog = pystac.Catalog(
        id="mapgen-synthetic",
        description=f"Synthetic multi-year scene (mapgen.synthetic {version}, seed {seed})",
        title="mapgen synthetic scene")
    for year in years:
        item = pystac.Item(
            id=f"synthetic-{year}", geometry=geometry, bbox=[w, s, e, n], datetime=None,
            start_datetime=dt.datetime(year, 1, 1, tzinfo=dt.UTC),
            end_datetime=dt.datetime(year, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
            properties={"mapgen:year": year, "mapgen:seed": seed, "mapgen:generator": version})
        for key, (fname, title, hr) in ASSETS.items():
            asset = pystac.Asset(href=str(out_dir / str(year) / fname), media_type=pystac.MediaType.COG,
                                 roles=["data"], title=title)
            item.add_asset(key, asset)
            proj = ProjectionExtension.ext(asset, add_if_missing=True)
            proj.apply(code="EPSG:4326",
                       shape=[grid.hr_height, grid.hr_width] if hr else [grid.height, grid.width],
                       transform=list(grid.hr_transform if hr else grid.transform)[:6])
            if key == "s2":
                EOExtension.ext(asset, add_if_missing=True).bands = [
                    Band.create(name=nm, common_name=cn, center_wavelength=cw, full_width_half_max=fw)
                    for nm, cn, cw, fw in S2_BANDS]
        catalog.add_item(item)
    catalog.normalize_hrefs(str(out_dir))
    # Relative asset hrefs keep the folder movable (and its bytes independent of where it was made).
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog.json"
