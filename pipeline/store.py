"""The run store: a Zarr v3 group with one chunk per block and year, and the markers that vouch for it.

`classes` holds each block-year after post-processing, `final` after the temporal step; both use the
kernels' encoding (0 background, 1 foreground, 255 no data), and an unwritten chunk reads as no data.
Progress is recorded as marker files written after the data. A marker is JSON that carries the sha256 of
what it vouches for (a store chunk's decoded pixels, a tile file's bytes), so a resume can verify what it
skips: a marker that is missing, unreadable or does not match its data counts as not done.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from mapgen.tiles import Box

from .disk import reporting_full_disk
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
        with reporting_full_disk(self.path, data.nbytes, f"the run store ({name}, {year})"):
            array[self.years.index(year), rows, cols] = data

    def write_years(self, name: str, box: Box, data: np.ndarray) -> None:
        array = zarr.open_array(f"{self.path}/{name}", mode="r+")
        rows, cols = self._slices(box)
        with reporting_full_disk(self.path, data.nbytes, f"the run store ({name})"):
            array[:, rows, cols] = data

    def read(self, name: str, box: Box, year: int | None = None) -> np.ndarray:
        """(H, W) for one year, or (T, H, W) for all years."""
        array = zarr.open_array(f"{self.path}/{name}", mode="r")
        rows, cols = self._slices(box)
        if year is None:
            return array[:, rows, cols]
        return array[self.years.index(year), rows, cols]

    def matches(self, name: str, box: Box, year: int, sha256: str) -> bool:
        """Whether the stored pixels of `box` in `year` are those a marker vouched for; a chunk that cannot
        be decoded (torn or overwritten bytes) does not match."""
        try:
            return digest(self.read(name, box, year)) == sha256
        except Exception:  # noqa: BLE001 - any failure to decode means the chunk cannot be trusted
            return False


def digest(data: np.ndarray) -> str:
    """sha256 of an array's pixels (C order); what a marker records of a store chunk."""
    return hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()


def file_digest(path: str | Path) -> tuple[int, str]:
    """(size in bytes, sha256) of a file, read in pieces."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while piece := f.read(1 << 22):
            h.update(piece)
            size += len(piece)
    return size, h.hexdigest()


def marker(run_dir: str | Path, stage: str, key: str) -> Path:
    return Path(run_dir) / "state" / stage / key


def read_marker(run_dir: str | Path, stage: str, key: str) -> dict | None:
    """What a finished step's marker records, or None when the step is not (known to be) done."""
    try:
        record = json.loads(marker(run_dir, stage, key).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "sha256" in record else None


def is_done(run_dir: str | Path, stage: str, key: str) -> bool:
    """The marker is there and readable (what it vouches for is checked by `RunStore.matches` or
    `tile_matches`)."""
    return read_marker(run_dir, stage, key) is not None


def mark_done(run_dir: str | Path, stage: str, key: str, record: dict) -> None:
    """Record a finished step atomically (write, then rename); `record` holds the sha256 of its data."""
    if "sha256" not in record:
        raise ValueError(f"marker {stage}/{key}: a marker must carry the sha256 of what it vouches for")
    path = marker(run_dir, stage, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, sort_keys=True))
    os.replace(tmp, path)


def unmark(run_dir: str | Path, stage: str, key: str) -> None:
    marker(run_dir, stage, key).unlink(missing_ok=True)


def tile_matches(path: str | Path, record: dict) -> bool:
    """Whether a tile file is the one its export marker vouched for: same size, then same sha256."""
    path = Path(path)
    try:
        if path.stat().st_size != record.get("size"):
            return False
        return file_digest(path)[1] == record["sha256"]
    except OSError:
        return False
