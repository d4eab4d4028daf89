"""Sources made of yearly rasters on disk: any file GDAL opens, any CRS and resolution.

Found by a pattern (`data/{year}/{layer}.tif`, or `rgbn_{year}.tif` for the image alone) or by a static
STAC catalog whose items are years and whose assets are layers (as `mapgen synth` writes). How a file's
bands become the product's is declared with a `BandMap`.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import transform_bounds

from mapgen.tiles import Box, Grid
from mapgen.workflows.product import InputSpec

from .base import Bounds, Source, SourceError, covered_fraction, year_span
from .read import read_box

# Names a user may give for the Sentinel-2 10 m bands, besides the product's own (B2 …).
BAND_ALIASES = {"blue": "B2", "green": "B3", "red": "B4", "nir": "B8",
                "B02": "B2", "B03": "B3", "B04": "B4", "B08": "B8"}


@dataclass(frozen=True)
class BandMap:
    """How a file's bands become the product's. `order` names the file's bands in file order (e.g.
    red, green, blue, nir for an RGBN image); None: the file holds the product's bands in its order.
    Values become `DN × scale + offset`; None takes the file's own GDAL scale/offset, which integer data
    must have one way or the other. `nodata` overrides the file's no-data value."""

    order: tuple[str, ...] | None = None
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None

    def indexes(self, where: str, spec: InputSpec, path: str, count: int) -> list[int]:
        """1-based file bands holding `spec.bands`, in the product's order; `where` names layer and year."""
        if self.order is None:
            if count != len(spec.bands):
                raise SourceError(f"{where}: {path} has {count} band{'s' if count != 1 else ''}; the "
                                  f"product needs {len(spec.bands)} ({', '.join(spec.bands)}); declare which is "
                                  "which with --bands")
            return list(range(1, count + 1))
        if len(self.order) != count:
            raise SourceError(f"{where}: {path} has {count} bands but --bands names {len(self.order)} "
                              f"({', '.join(self.order)})")
        names = [BAND_ALIASES.get(b, b) for b in self.order]
        missing = [b for b in spec.bands if b not in names]
        if missing:
            raise SourceError(f"{where}: {path} lacks band{'s' if len(missing) > 1 else ''} "
                              f"{', '.join(missing)} (its bands: {', '.join(self.order)})")
        return [names.index(b) + 1 for b in spec.bands]

    def describe(self) -> str:
        parts = []
        if self.order:
            parts.append("bands " + ",".join(self.order))
        if self.scale is not None or self.offset is not None:
            parts.append(f"× {self.scale if self.scale is not None else 1} + {self.offset or 0}")
        if self.nodata is not None:
            parts.append(f"nodata {self.nodata}")
        return f" [{'; '.join(parts)}]" if parts else ""


@dataclass(frozen=True)
class FileSource(Source):
    """One layer as one raster per year."""

    label: str
    files: dict[int, str] = field(default_factory=dict)
    bands: BandMap = BandMap()

    @property
    def description(self) -> str:
        return self.label + self.bands.describe()

    def path(self, year: int) -> str:
        try:
            return self.files[year]
        except KeyError:
            raise SourceError(f"source {self.label}: no raster for {year} (it has {year_span(list(self.files))})") \
                from None

    def check(self, spec: InputSpec, years: Sequence[int], bounds: Bounds) -> dict[int, float]:
        missing = [y for y in years if y not in self.files]
        if missing:
            raise SourceError(f"source {self.label}: no '{spec.name}' raster for {year_span(missing)} "
                              f"(it has {year_span(list(self.files))})")
        coverage = {}
        for year in years:
            path = self.files[year]
            try:
                with rasterio.open(path) as src:
                    count, crs, src_bounds = src.count, src.crs, src.bounds
                    dtypes, scales, offsets = src.dtypes, src.scales, src.offsets
            except rasterio.errors.RasterioIOError as exc:
                raise SourceError(f"{spec.name} {year}: {path} cannot be opened "
                                  f"({str(exc).splitlines()[0]})") from None
            indexes = self.bands.indexes(f"{spec.name} {year}", spec, path, count)
            dtype = np.dtype(dtypes[indexes[0] - 1])
            if dtype.kind == "c" or dtype.kind not in "uif":
                raise SourceError(f"{spec.name} {year}: {path} holds {dtype} values; mapgen reads real numbers")
            own_scale = any(scales[i - 1] != 1 or offsets[i - 1] != 0 for i in indexes)
            if dtype.kind in "ui" and self.bands.scale is None and not own_scale:
                raise SourceError(f"{spec.name} {year}: {path} holds {dtype} numbers with no scale; declare "
                                  f"how they map to the product's values with --scale (value = DN × scale + "
                                  f"offset), e.g. --scale 0.0001 for Sentinel-2 DN")
            if crs is None:
                raise SourceError(f"{spec.name} {year}: {path} has no CRS")
            coverage[year] = covered_fraction(bounds, [transform_bounds(crs, "EPSG:4326", *src_bounds)])
        if not any(coverage.values()):
            raise SourceError(f"the region {tuple(round(v, 4) for v in bounds)} lies outside every '{spec.name}' "
                              f"raster of source {self.label}")
        return coverage

    def read(self, spec: InputSpec, year: int, grid: Grid, box: Box) -> np.ndarray:
        path = self.path(year)
        count, own_scales, own_offsets = _band_layout(path)
        indexes = self.bands.indexes(f"{spec.name} {year}", spec, path, count)
        scales = np.array([own_scales[i - 1] for i in indexes], dtype=np.float64)
        offsets = np.array([own_offsets[i - 1] for i in indexes], dtype=np.float64)
        if self.bands.scale is not None:
            scales[:] = self.bands.scale
        if self.bands.offset is not None:
            offsets[:] = self.bands.offset
        data = read_box(path, grid, box, indexes=indexes, nodata=self.bands.nodata)
        if np.any(scales != 1) or np.any(offsets != 0):
            data = (data * scales[:, None, None] + offsets[:, None, None]).astype(np.float32)
        return data


@lru_cache(maxsize=256)
def _band_layout(path: str) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Band count and GDAL scales/offsets of a raster, once per process (a run reads each file many times)."""
    with rasterio.open(path) as src:
        return src.count, tuple(src.scales), tuple(src.offsets)


def _stac_year(item) -> int | None:
    if "mapgen:year" in item.properties:
        return int(item.properties["mapgen:year"])
    start = item.properties.get("start_datetime") or item.properties.get("datetime")
    return int(str(start)[:4]) if start else None


def yearly_catalog_layers(catalog, label: str) -> dict[str, dict[int, str]]:
    """Layer → year → href of a static catalog whose items are years (items with `mapgen:year`)."""
    files: dict[str, dict[int, str]] = {}
    for item in catalog.get_items(recursive=True):
        year = _stac_year(item)
        if year is None:
            continue
        for key, asset in item.assets.items():
            files.setdefault(key, {})[year] = asset.get_absolute_href()
    if not files:
        raise SourceError(f"source {label}: the STAC catalog has no items with assets")
    return files


def pattern_files(pattern: str) -> dict[str, dict[int, str]]:
    """Layer → year → path of the files a pattern names. With no {layer} the layer is '' (the image)."""
    if "{year}" not in pattern:
        raise SourceError(f"source {pattern}: a file pattern needs {{year}}, e.g. data/{{year}}/{{layer}}.tif "
                          "or imagery/rgbn_{year}.tif")
    regex = re.escape(pattern).replace(re.escape("{year}"), r"(?P<year>\d{4})", 1)
    regex = regex.replace(re.escape("{layer}"), r"(?P<layer>[^/]+?)", 1)
    regex = regex.replace(re.escape("{year}"), r"(?P=year)").replace(re.escape("{layer}"), r"(?P=layer)")
    files: dict[str, dict[int, str]] = {}
    for path in sorted(glob.glob(pattern.replace("{year}", "*").replace("{layer}", "*"))):
        match = re.fullmatch(regex, path)
        if match:
            layer = match.groupdict().get("layer") or ""
            files.setdefault(layer, {})[int(match["year"])] = str(Path(path).resolve())
    if not files:
        raise SourceError(f"source {pattern}: no file matches the pattern")
    return files
