"""Reading one box of the product lattice from any raster GDAL opens."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from mapgen.tiles import Box, Grid

# How a source off the lattice may be warped onto it (`[[inputs]] resampling`; GDAL's names).
RESAMPLINGS = ("nearest", "bilinear", "cubic", "average", "mode")


def resampling(spec) -> Resampling:
    """The warp resampling an input asks for: bilinear unless the product says otherwise (classes: nearest)."""
    return Resampling[spec.resampling or "bilinear"]


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


def read_sample(path: str, grid: Grid, box: Box, *, indexes: Sequence[int], nodata: float | None = None
                ) -> np.ndarray:
    """(bands, H, W) float32 of a coarse `box` on `grid` (a sample lattice of a few hundred points a side),
    NaN where there is no data, as cheaply as GDAL allows: a decimated read of the part of the file under the
    box (GDAL serves it from overviews when the file has them), put onto the samples by nearest neighbour.
    Then the last internal block at full resolution is read, which fails on a truncated file even when its
    overviews, written first, are whole. Raises RasterioIOError where GDAL cannot read."""
    out = np.full((len(indexes), box.height, box.width), np.nan, dtype=np.float32)
    with rasterio.open(path) as src:
        indexes = list(indexes)
        _read_last_block(src, indexes)
        near = from_bounds(*transform_bounds(grid.crs, src.crs, *grid.bounds(box), densify_pts=21),
                           transform=src.transform)
        col0, row0 = max(0, math.floor(near.col_off)), max(0, math.floor(near.row_off))
        col1 = min(src.width, math.ceil(near.col_off + near.width))
        row1 = min(src.height, math.ceil(near.row_off + near.height))
        if col1 <= col0 or row1 <= row0:  # the file lies outside the box
            return out
        window = Window(col0, row0, col1 - col0, row1 - row0)
        shape = (len(indexes), max(1, min(int(window.height), 2 * box.height)),
                 max(1, min(int(window.width), 2 * box.width)))
        if nodata is None:  # the file's own mask (nodata value, mask band or alpha)
            data = src.read(indexes, window=window, out_shape=shape, masked=True).astype(np.float32).filled(np.nan)
        else:
            data = src.read(indexes, window=window, out_shape=shape).astype(np.float32)
            if not np.isnan(nodata):
                data[data == np.float32(nodata)] = np.nan
        step = Affine.scale(window.width / shape[2], window.height / shape[1])  # decimated pixels
        src_transform = src.transform @ Affine.translation(col0, row0) @ step
        reproject(data, out, src_transform=src_transform, src_crs=src.crs, dst_transform=grid.transform(box),
                  dst_crs=grid.crs, resampling=Resampling.nearest, src_nodata=np.nan, dst_nodata=np.nan)
    return out


def _read_last_block(src: rasterio.DatasetReader, indexes: list[int]) -> None:
    height, width = src.block_shapes[indexes[-1] - 1]
    row, col = (src.height - 1) // height * height, (src.width - 1) // width * width
    src.read(indexes, window=Window(col, row, src.width - col, src.height - row))
