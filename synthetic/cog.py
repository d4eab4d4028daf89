"""The synthetic scenes' Cloud-Optimized GeoTIFFs: mapgen's one COG writer (`mapgen.files.cog`) with the
scenes' settings (EPSG:4326, 512 blocks, ZSTD level 1, overviews); deterministic (no timestamps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine

from mapgen.files import cog

# The floating-point predictor shrinks reflectance by ~15 %; class maps gain nothing from one.
# Threads only pay off for the poorly compressible float rasters.
FLOAT_OPTIONS = {"ZSTD_LEVEL": 1, "PREDICTOR": 3}
FLOAT_CONFIG = {"GDAL_NUM_THREADS": "ALL_CPUS"}
CLASS_OPTIONS = {"ZSTD_LEVEL": 1}


def write_cog(path: Path, data: np.ndarray, transform: Affine, *, descriptions: list[str],
              nodata: float | None, resampling: str, colormap: dict | None = None) -> None:
    """Write (bands, H, W) or (H, W) `data` as an EPSG:4326 COG: 512 tiles, ZSTD, overviews.

    The file is written under a temporary name and renamed, so a reader never sees half a file.
    """
    floating = data.dtype.kind == "f"
    cog.write_cog(path, data, crs="EPSG:4326", transform=transform, nodata=nodata, compress="zstd",
                  overview_resampling=resampling, descriptions=descriptions, colormap=colormap,
                  creation_options=FLOAT_OPTIONS if floating else CLASS_OPTIONS,
                  config=FLOAT_CONFIG if floating else cog.SINGLE_THREADED)
