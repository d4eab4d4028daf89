"""A box of the product lattice as a lazily chunked xarray.DataArray, from any source.

Each dask chunk is read on demand by the source's `read`, so a caller can open a block plus halo, or a
whole tile, and compute only what it needs.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor
import xarray as xr

from mapgen.tiles import Box, Grid
from mapgen.workflows.product import InputSpec

from .base import Source


def open_box(source: Source, spec: InputSpec, year: int, grid: Grid, box: Box, *, chunks: int = 512
             ) -> xr.DataArray:
    """(band, y, x) float32 DataArray of `spec`'s bands over `box` on `grid`, NaN where there is no data;
    lazy, chunked."""
    read = dask.delayed(source.read, pure=True)
    count = len(spec.bands)
    rows = range(box.row, box.row_stop, chunks)
    cols = range(box.col, box.col_stop, chunks)
    blocks = [
        [da.from_delayed(read(spec, year, grid, part := Box(r, c, min(chunks, box.row_stop - r),
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
            "band": list(spec.bands),
            "y": transform.f - res * (np.arange(box.height) + 0.5),
            "x": transform.c + res * (np.arange(box.width) + 0.5),
        },
        name=spec.name,
        attrs={"source": source.description, "year": year, "lattice_row": box.row, "lattice_col": box.col},
    )
    return array.rio.write_crs(grid.crs).rio.write_transform(transform)
