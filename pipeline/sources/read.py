"""Reading one box of the product lattice from any raster GDAL opens."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from mapgen.tiles import Box, Grid


def read_box(path: str, grid: Grid, box: Box, resampling: Resampling = Resampling.bilinear) -> np.ndarray:
    """(bands, height, width) float32 of `box` on `grid`; NaN where the raster has no data or no pixel.

    A raster already on the lattice is read by window, exactly; any other is warped to the box with
    GDAL (WarpedVRT), the way GDAL tools reproject.
    """
    with rasterio.open(path) as src:
        aligned = grid.aligned_box(src.transform, src.width, src.height) if src.crs == grid.crs else None
        if aligned is not None:
            return _read_aligned(src, aligned, box)
        with WarpedVRT(src, crs=grid.crs, transform=grid.transform(box), width=box.width,
                       height=box.height, resampling=resampling, dtype="float32", nodata=np.nan,
                       src_nodata=src.nodata) as vrt:
            data = vrt.read(masked=True)
    return data.filled(np.nan).astype(np.float32, copy=False)


def _read_aligned(src: rasterio.DatasetReader, src_box: Box, box: Box) -> np.ndarray:
    out = np.full((src.count, box.height, box.width), np.nan, dtype=np.float32)
    row0, row1 = max(box.row, src_box.row), min(box.row_stop, src_box.row_stop)
    col0, col1 = max(box.col, src_box.col), min(box.col_stop, src_box.col_stop)
    if row0 >= row1 or col0 >= col1:
        return out
    window = Window(col0 - src_box.col, row0 - src_box.row, col1 - col0, row1 - row0)
    data = src.read(window=window, masked=True).astype(np.float32)
    out[:, row0 - box.row:row1 - box.row, col0 - box.col:col1 - box.col] = data.filled(np.nan)
    return out
