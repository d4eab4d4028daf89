"""Writing Cloud-Optimized GeoTIFFs deterministically (GDAL's COG driver, no timestamps)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine


def write_cog(path: Path, data: np.ndarray, transform: Affine, *, descriptions: list[str],
              nodata: float | None, resampling: str, colormap: dict | None = None) -> None:
    """Write (bands, H, W) or (H, W) `data` as an EPSG:4326 COG: 512 tiles, ZSTD, overviews.

    The file is written under a temporary name and renamed, so a reader never sees half a file.
    """
    if data.ndim == 2:
        data = data[None]
    count, h, w = data.shape
    tmp = path.with_name(path.name + ".part")
    profile = {
        "driver": "COG", "width": w, "height": h, "count": count, "dtype": data.dtype.name,
        "crs": "EPSG:4326", "transform": transform, "nodata": nodata,
        "blocksize": 512, "compress": "ZSTD", "level": 1, "overview_resampling": resampling,
        "bigtiff": "IF_SAFER",
    }
    if data.dtype.kind == "f":
        # The floating-point predictor shrinks reflectance by ~15 %; class maps gain nothing from one.
        # Threads only pay off for the poorly compressible float rasters.
        profile.update(predictor="YES", num_threads="ALL_CPUS")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
            if colormap is not None:
                dst.write_colormap(1, colormap)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
