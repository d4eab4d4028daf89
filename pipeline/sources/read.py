"""Reading one box of the product lattice from any raster GDAL opens."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import rasterio
import rasterio.errors
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from mapgen.tiles import Box, Grid


def read_box(path: str, grid: Grid, box: Box, resampling: Resampling = Resampling.bilinear, *,
             indexes: Sequence[int] | None = None, nodata: float | None = None) -> np.ndarray:
    """(bands, height, width) float32 of `box` on `grid`; NaN where the raster has no data or no pixel.

    A raster already on the lattice is read by window, exactly; any other is warped to the box with
    GDAL (WarpedVRT), the way GDAL tools reproject. `indexes` picks bands (1-based, in that order);
    `nodata` overrides the file's own no-data value.
    """
    try:
        return _read_box(path, grid, box, resampling, indexes, nodata)
    except rasterio.errors.RasterioIOError as exc:
        # GDAL's own message sits in the cause; rasterio's error may not cross to the client intact
        cause = str(exc.__cause__ or exc).strip().splitlines()[0]
        raise OSError(f"{path}: cannot read {grid.bounds(box)}: {cause}") from None


def _read_box(path: str, grid: Grid, box: Box, resampling: Resampling, indexes: Sequence[int] | None,
              nodata: float | None) -> np.ndarray:
    with rasterio.open(path) as src:
        indexes = list(indexes) if indexes else list(range(1, src.count + 1))
        src_nodata = src.nodata if nodata is None else nodata
        aligned = grid.aligned_box(src.transform, src.width, src.height) if src.crs == grid.crs else None
        if aligned is not None:
            return _read_aligned(src, aligned, box, indexes, src_nodata)
        with WarpedVRT(src, crs=grid.crs, transform=grid.transform(box), width=box.width,
                       height=box.height, resampling=resampling, dtype="float32", nodata=np.nan,
                       src_nodata=src_nodata) as vrt:
            data = vrt.read(indexes, masked=True)
    return data.filled(np.nan).astype(np.float32, copy=False)


def _read_aligned(src: rasterio.DatasetReader, src_box: Box, box: Box, indexes: list[int],
                  nodata: float | None) -> np.ndarray:
    out = np.full((len(indexes), box.height, box.width), np.nan, dtype=np.float32)
    inner = box.intersection(src_box)
    if inner is None:
        return out
    rows, cols = inner.slices_in(src_box)
    window = Window.from_slices(rows, cols)
    if nodata == src.nodata:  # the file's own mask (nodata value, mask band or alpha)
        data = src.read(indexes, window=window, masked=True).astype(np.float32).filled(np.nan)
    else:
        data = src.read(indexes, window=window).astype(np.float32)
        if nodata is not None and not np.isnan(nodata):
            data[data == np.float32(nodata)] = np.nan
    out[(slice(None), *inner.slices_in(box))] = data
    return out
