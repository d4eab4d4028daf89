"""A box of the product lattice as a lazily chunked xarray.DataArray.

Each dask chunk is read on demand by `read_box` (a window read when the raster is on the lattice, a GDAL
warp otherwise), so a caller can open a block plus halo, or a whole tile, and compute only what it needs.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import rasterio
import rioxarray  # noqa: F401 - registers the .rio accessor
import xarray as xr

from mapgen.tiles import Box, Grid

from .read import read_box


def open_box(path: str, grid: Grid, box: Box, *, chunks: int = 512, bands: tuple[str, ...] | None = None,
             name: str | None = None) -> xr.DataArray:
    """(band, y, x) float32 DataArray over `box` on `grid`, NaN where there is no data; lazy, chunked."""
    with rasterio.open(path) as src:
        count = src.count
    read = dask.delayed(read_box, pure=True)
    rows = range(box.row, box.row_stop, chunks)
    cols = range(box.col, box.col_stop, chunks)
    blocks = [
        [da.from_delayed(read(path, grid, part := Box(r, c, min(chunks, box.row_stop - r),
                                                       min(chunks, box.col_stop - c))),
                         shape=(count, *part.shape), dtype=np.float32)
         for c in cols]
        for r in rows
    ]
    transform = grid.transform(box)
    res = float(grid.res)
    array = xr.DataArray(
        da.block(blocks) if blocks else da.zeros((count, 0, 0), dtype=np.float32),
        dims=("band", "y", "x"),
        coords={
            "band": list(bands) if bands else list(range(1, count + 1)),
            "y": transform.f - res * (np.arange(box.height) + 0.5),
            "x": transform.c + res * (np.arange(box.width) + 0.5),
        },
        name=name,
        attrs={"source": path, "lattice_row": box.row, "lattice_col": box.col},
    )
    return array.rio.write_crs(grid.crs).rio.write_transform(transform)
