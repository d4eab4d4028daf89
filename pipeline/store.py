"""The run store: a Zarr v3 group with one chunk per block and year, and the markers that vouch for it.

Each output of the product has `classes` (each block and map after post-processing) and `final` (after the
temporal step), in the class codes of `classes.py` (255 = no data), and an unwritten chunk reads as no data.
Progress is recorded as marker files written after the data. A marker is JSON that carries the sha256 of
what it vouches for (a store chunk's decoded pixels, a tile file's bytes), so a resume can verify what it
skips: a marker that is missing, unreadable or does not match its data counts as not done.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from mapgen.files import atomic
from mapgen.tiles import Box

from .classes import BACKGROUND, FOREGROUND, NODATA
from .disk import reporting_full_disk
from .runfolder import marker_path

STAGES = ("classes", "final")  # after the post chain, after the temporal chain


def array_name(output: str, stage: str) -> str:
    """Where an output's stage lives in the group: 'classes' for a product's only output, 'landuse/final'."""
    return f"{output}/{stage}" if output else stage


@dataclass(frozen=True)
class RunStore:
    """Per output of the product, a (maps, H, W) uint8 array per stage; `labels[output]` names its maps
    (dates, or pairs '2018-08_2020-08'), in order."""

    path: str
    extent: Box  # output-grid box covered by the arrays
    labels: Mapping[str, tuple[str, ...]]
    chunk: int  # output pixels per block side

    @classmethod
    def open(cls, path: str | Path, extent: Box, labels: Mapping[str, Sequence[str]], chunk: int) -> RunStore:
        """Create the store, or open it if it was made for the same extent, maps and chunking."""
        path = str(path)
        labels = {name: tuple(str(v) for v in maps) for name, maps in labels.items()}
        attrs = {"extent": [extent.row, extent.col, extent.height, extent.width],
                 "labels": {name: list(maps) for name, maps in labels.items()}, "chunk": chunk,
                 "encoding": {"background": int(BACKGROUND), "foreground": int(FOREGROUND), "nodata": int(NODATA)}}
        group = zarr.open_group(path, mode="a", zarr_format=3)
        if "extent" in group.attrs:
            if dict(group.attrs) != attrs:
                raise ValueError(f"run store {path} was made for another extent, dates or block size")
        else:
            for name, maps in labels.items():
                for stage in STAGES:
                    group.create_array(array_name(name, stage), shape=(len(maps), extent.height, extent.width),
                                       chunks=(1, chunk, chunk), dtype="uint8", fill_value=int(NODATA))
            group.attrs.update(attrs)
        return cls(path, extent, labels, chunk)

    def _array(self, output: str, stage: str, mode: str):
        return zarr.open_array(f"{self.path}/{array_name(output, stage)}", mode=mode)

    def write(self, output: str, stage: str, label: str, box: Box, data: np.ndarray) -> None:
        rows, cols = box.slices_in(self.extent)
        with reporting_full_disk(self.path, data.nbytes, f"the run store ({array_name(output, stage)}, {label})"):
            self._array(output, stage, "r+")[self.labels[output].index(str(label)), rows, cols] = data

    def write_all(self, output: str, stage: str, box: Box, data: np.ndarray) -> None:
        """Every map of the output at once: (maps, H, W)."""
        rows, cols = box.slices_in(self.extent)
        with reporting_full_disk(self.path, data.nbytes, f"the run store ({array_name(output, stage)})"):
            self._array(output, stage, "r+")[:, rows, cols] = data

    def read(self, output: str, stage: str, box: Box, label: str | None = None) -> np.ndarray:
        """(H, W) for one map, or (maps, H, W) for all of the output's maps."""
        rows, cols = box.slices_in(self.extent)
        array = self._array(output, stage, "r")
        if label is None:
            return array[:, rows, cols]
        return array[self.labels[output].index(str(label)), rows, cols]

    def matches(self, output: str, stage: str, box: Box, label: str, sha256: str) -> bool:
        """Whether the stored pixels of `box` in map `label` are those a marker vouched for; a chunk that
        cannot be decoded (torn or overwritten bytes) does not match."""
        try:
            return digest(self.read(output, stage, box, label)) == sha256
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
    return marker_path(run_dir, stage, key)


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
    atomic.write_text(path, json.dumps(record, sort_keys=True))


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
