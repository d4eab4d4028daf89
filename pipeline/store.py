"""The run store: a Zarr v3 group with one chunk per block and year.

`classes` holds each block-year after post-processing, `final` after the temporal step; both use the
kernels' encoding (0 background, 1 foreground, 255 no data), and an unwritten chunk reads as no data.
Progress is recorded as marker files written after the data, so a killed run never trusts a chunk whose
marker is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from mapgen.tiles import Box

from .kernels import NODATA

ARRAYS = ("classes", "final")


@dataclass(frozen=True)
class RunStore:
    path: str
    extent: Box  # output-grid box covered by the arrays
    years: tuple[int, ...]
    chunk: int  # output pixels per block side

    @classmethod
    def open(cls, path: str | Path, extent: Box, years: tuple[int, ...], chunk: int) -> RunStore:
        """Create the store, or open it if it was made for the same extent, years and chunking."""
        path = str(path)
        attrs = {"extent": [extent.row, extent.col, extent.height, extent.width], "years": list(years),
                 "chunk": chunk, "encoding": {"background": 0, "foreground": 1, "nodata": int(NODATA)}}
        group = zarr.open_group(path, mode="a", zarr_format=3)
        if "extent" in group.attrs:
            if dict(group.attrs) != attrs:
                raise ValueError(f"run store {path} was made for another extent, years or block size")
        else:
            for name in ARRAYS:
                group.create_array(name, shape=(len(years), extent.height, extent.width),
                                   chunks=(1, chunk, chunk), dtype="uint8", fill_value=int(NODATA))
            group.attrs.update(attrs)
        return cls(path, extent, tuple(years), chunk)

    def _slices(self, box: Box) -> tuple[slice, slice]:
        return box.slices_in(self.extent)

    def write(self, name: str, year: int, box: Box, data: np.ndarray) -> None:
        array = zarr.open_array(f"{self.path}/{name}", mode="r+")
        rows, cols = self._slices(box)
        array[self.years.index(year), rows, cols] = data

    def write_years(self, name: str, box: Box, data: np.ndarray) -> None:
        array = zarr.open_array(f"{self.path}/{name}", mode="r+")
        rows, cols = self._slices(box)
        array[:, rows, cols] = data

    def read(self, name: str, box: Box, year: int | None = None) -> np.ndarray:
        """(H, W) for one year, or (T, H, W) for all years."""
        array = zarr.open_array(f"{self.path}/{name}", mode="r")
        rows, cols = self._slices(box)
        if year is None:
            return array[:, rows, cols]
        return array[self.years.index(year), rows, cols]


def marker(run_dir: str | Path, stage: str, key: str) -> Path:
    return Path(run_dir) / "state" / stage / key


def is_done(run_dir: str | Path, stage: str, key: str) -> bool:
    return marker(run_dir, stage, key).exists()


def mark_done(run_dir: str | Path, stage: str, key: str, text: str = "") -> None:
    """Record a finished step atomically (write, then rename)."""
    path = marker(run_dir, stage, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
