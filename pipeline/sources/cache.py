"""The input cache that `mapgen fetch` fills: a Zarr v3 store with every input of every block-year.

One array per input, (year, band, row, col) float32 on the product's input lattice, chunked by block
(NaN = no data, as every source reads). A chunk is written by exactly one fetch task, so parallel
fetches never touch the same chunk; a marker per block-year, written after the data, makes a fetch
resumable. `CachedSource` reads it back like any other source, so a GPU run reads local disk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import zarr
from shapely.geometry.base import BaseGeometry

from mapgen.tiles import Box, Grid, as_fraction
from mapgen.workflows.product import InputSpec

from ..runfolder import marker_path
from .base import Bounds, Source, SourceError, file_identity
from .sample import Coverage, SampleGrid, as_geometry, sample_grids, sampled_coverage, summarise

STORE = "inputs.zarr"
MAX_SAMPLE_CHUNKS = 16  # chunk rows (and columns) a check samples: at most 256 blocks decompressed


@dataclass(frozen=True)
class InputCache:
    path: str  # the cache folder: inputs.zarr + state/
    extent: Box  # input-lattice box the arrays cover
    years: tuple[int, ...]
    chunk: int  # input pixels per block side

    @property
    def store(self) -> str:
        return str(Path(self.path) / STORE)

    @classmethod
    def create(cls, path: str | Path, *, product: str, grid: Grid, extent: Box, years: Sequence[int], chunk: int,
               inputs: dict[str, tuple[str, ...]], sources: dict[str, str], region: Bounds, cells: int
               ) -> InputCache:
        """Create the cache, or open it when it was made for the same product, extent, years and sources."""
        attrs = {"product": product, "res": str(grid.res), "extent": [extent.row, extent.col, extent.height,
                                                                      extent.width],
                 "years": list(years), "chunk": chunk, "inputs": {k: list(v) for k, v in inputs.items()},
                 "sources": sources, "region": list(region), "cells": cells}
        group = zarr.open_group(cls(str(path), extent, tuple(years), chunk).store, mode="a", zarr_format=3)
        if "product" in group.attrs:
            old = dict(group.attrs)
            changed = [k for k in attrs if json.dumps(old.get(k)) != json.dumps(attrs[k])]
            if changed:
                raise SourceError(f"cache {path}: made for another fetch ({', '.join(changed)} differ); give "
                                  "another --cache or remove it")
        else:
            for name, bands in inputs.items():
                group.create_array(name, shape=(len(years), len(bands), extent.height, extent.width),
                                   chunks=(1, len(bands), chunk, chunk), dtype="float32", fill_value=np.nan,
                                   compressors=zarr.codecs.ZstdCodec(level=3))
            group.attrs.update(attrs)
        return cls(str(path), extent, tuple(years), chunk)

    @classmethod
    def open(cls, path: str | Path) -> tuple[InputCache, dict]:
        store = Path(path) / STORE
        if not (store / "zarr.json").exists():
            raise SourceError(f"cache {path}: no input cache here (make one with mapgen fetch --cache {path})")
        attrs = dict(zarr.open_group(str(store), mode="r").attrs)
        return cls(str(path), Box(*attrs["extent"]), tuple(attrs["years"]), attrs["chunk"]), attrs

    def marker(self, key: str) -> Path:
        return marker_path(self.path, "fetch", key)

    def done(self) -> int:
        folder = marker_path(self.path, "fetch", "")
        return sum(1 for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else 0

    def write(self, name: str, year: int, box: Box, data: np.ndarray) -> None:
        array = zarr.open_array(f"{self.store}/{name}", mode="r+")
        rows, cols = box.slices_in(self.extent)
        array[self.years.index(year), :, rows, cols] = data

    def sample(self, name: str, year: int, grid: Grid, points: SampleGrid, bands: int,
               max_chunks: int = MAX_SAMPLE_CHUNKS) -> tuple[np.ndarray, SampleGrid]:
        """The values at sample points (the pixel of `grid`, the cache's lattice, under each), read from at most
        `max_chunks`² chunks spread over the region (each chunk is a whole block to decompress); returns them
        and the sample points kept."""
        t = points.grid.transform(points.box)
        res = float(grid.res)
        lon = t.c + t.a * (np.arange(points.box.width) + 0.5)
        lat = t.f + t.e * (np.arange(points.box.height) + 0.5)
        cols = np.floor((lon + 180) / res).astype(np.int64) - self.extent.col
        rows = np.floor((90 - lat) / res).astype(np.int64) - self.extent.row
        use_rows = _spread((rows >= 0) & (rows < self.extent.height), rows // self.chunk, max_chunks)
        use_cols = _spread((cols >= 0) & (cols < self.extent.width), cols // self.chunk, max_chunks)
        out = np.full((bands, points.box.height, points.box.width), np.nan, dtype=np.float32)
        if use_rows.any() and use_cols.any():
            array = zarr.open_array(f"{self.store}/{name}", mode="r")
            r, c = np.unique(rows[use_rows]), np.unique(cols[use_cols])
            got = array.oindex[self.years.index(year), :, r, c]
            sub = got[:, np.searchsorted(r, rows[use_rows])][:, :, np.searchsorted(c, cols[use_cols])]
            out[:, np.flatnonzero(use_rows)[:, None], np.flatnonzero(use_cols)[None, :]] = sub
        # points outside the extent stay (no data); points in chunks left out are not sampled
        inside_extent_rows = (rows >= 0) & (rows < self.extent.height)
        inside_extent_cols = (cols >= 0) & (cols < self.extent.width)
        kept = (use_rows | ~inside_extent_rows)[:, None] & (use_cols | ~inside_extent_cols)[None, :]
        return out, replace(points, inside=points.inside & kept)

    def clear(self, name: str, year: int, box: Box, bands: int) -> None:
        """Set the chunks under `box` to no data, as whole chunks: zarr then writes them without reading
        what is there, which may be undecodable (a torn or overwritten chunk about to be fetched again)."""
        r0 = (box.row - self.extent.row) // self.chunk * self.chunk
        c0 = (box.col - self.extent.col) // self.chunk * self.chunk
        r1 = min(self.extent.height, -(-(box.row_stop - self.extent.row) // self.chunk) * self.chunk)
        c1 = min(self.extent.width, -(-(box.col_stop - self.extent.col) // self.chunk) * self.chunk)
        array = zarr.open_array(f"{self.store}/{name}", mode="r+")
        array[self.years.index(year), :, r0:r1, c0:c1] = np.full((bands, r1 - r0, c1 - c0), np.nan, np.float32)

    def read(self, name: str, year: int, box: Box, bands: int) -> np.ndarray:
        """(bands, H, W) of `box`; NaN where the box leaves the cache's extent."""
        out = np.full((bands, box.height, box.width), np.nan, dtype=np.float32)
        inner = box.intersection(self.extent)
        if inner is not None:
            array = zarr.open_array(f"{self.store}/{name}", mode="r")
            rows, cols = inner.slices_in(self.extent)
            local_rows, local_cols = inner.slices_in(box)
            out[:, local_rows, local_cols] = array[self.years.index(year), :, rows, cols]
        return out


def _spread(valid: np.ndarray, chunk: np.ndarray, most: int) -> np.ndarray:
    """`valid` restricted to at most `most` distinct chunks, spread evenly over those it meets."""
    found = np.unique(chunk[valid])
    if len(found) <= most:
        return valid
    keep = found[np.linspace(0, len(found) - 1, most).round().astype(int)]
    return valid & np.isin(chunk, keep)


@dataclass(frozen=True)
class CachedSource(Source):
    """One input read back from an input cache."""

    cache: InputCache
    origin: str  # the source the cache was fetched from
    region: Bounds
    res: str
    cells: int  # block-years the fetch planned

    @classmethod
    def open(cls, path: str | Path) -> dict[str, CachedSource]:
        """A source per input the cache holds."""
        cache, attrs = InputCache.open(path)
        return {name: cls(cache, attrs["sources"].get(name, "?"), tuple(attrs["region"]), attrs["res"],
                          attrs["cells"]) for name in attrs["inputs"]}

    @property
    def description(self) -> str:
        return f"cache {self.cache.path} (of {self.origin})"

    def identity(self, years: Sequence[int]) -> dict:
        attrs = Path(self.cache.store) / "zarr.json"
        return {"kind": "cache", "path": str(Path(self.cache.path).resolve()), "origin": self.origin,
                "store": file_identity(str(attrs)), "fetched": self.cache.done()}

    def check(self, spec: InputSpec, years: Sequence[int], region: Bounds | BaseGeometry) -> Coverage:
        where = f"cache {self.cache.path}"
        bounds = as_geometry(region).bounds
        missing = [y for y in years if y not in self.cache.years]
        if missing:
            raise SourceError(f"{where}: has no {', '.join(map(str, missing))} (fetched for "
                              f"{', '.join(map(str, self.cache.years))})")
        w, s, e, n = self.region
        eps = 1e-9
        if bounds[0] < w - eps or bounds[1] < s - eps or bounds[2] > e + eps or bounds[3] > n + eps:
            raise SourceError(f"{where}: the region {tuple(round(v, 4) for v in bounds)} reaches outside the "
                              f"fetched one {tuple(round(v, 4) for v in self.region)}")
        done = self.cache.done()
        if done < self.cells:
            raise SourceError(f"{where}: incomplete, {done} of {self.cells} fetches done; run the same mapgen "
                              "fetch again to finish it")
        grids = sample_grids(region)
        samples = {}
        for year in years:
            parts = [self.cache.sample(spec.name, year, Grid(as_fraction(self.res)), g, len(spec.bands))
                     for g in grids]
            samples[year] = summarise([v for v, _ in parts], [g for _, g in parts])
        return sampled_coverage(spec, samples, self.description)

    def read(self, spec: InputSpec, year: int, grid: Grid, box: Box) -> np.ndarray:
        if str(grid.res) != self.res:
            raise SourceError(f"cache {self.cache.path}: holds the {self.res}° lattice, not {grid.res}°")
        return self.cache.read(spec.name, year, box, len(spec.bands))
