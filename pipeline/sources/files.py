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
import rasterio.errors
import shapely
from rasterio.enums import ColorInterp
from rasterio.warp import transform_bounds
from shapely.geometry.base import BaseGeometry

from mapgen.tiles import Box, Grid
from mapgen.workflows.dates import source_date
from mapgen.workflows.product import InputSpec

from .base import Bounds, Source, SourceError, file_identity, year_span
from .read import read_box, read_sample, resampling
from .sample import Coverage, Sample, SampleGrid, as_geometry, sample_grids, sampled_coverage, summarise

# Names a user may give for the Sentinel-2 10 m bands, besides the product's own (B2 …).
BAND_ALIASES = {"blue": "B2", "green": "B3", "red": "B4", "nir": "B8",
                "B02": "B2", "B03": "B3", "B04": "B4", "B08": "B8"}


# What a band name in a file means, as the product's bands it could be (Sentinel-2 numbering).
_WORDS = {"coastal": {"B1"}, "coastal aerosol": {"B1"}, "aerosol": {"B1"}, "blue": {"B2"}, "green": {"B3"},
          "red": {"B4"}, "red edge": {"B5", "B6", "B7", "B8A"}, "rededge": {"B5", "B6", "B7", "B8A"},
          "nir": {"B8", "B8A"}, "near infrared": {"B8", "B8A"}, "nir08": {"B8A"}, "swir": {"B11", "B12"},
          "swir16": {"B11"}, "swir22": {"B12"}, "swir1": {"B11"}, "swir2": {"B12"}}
_COLOUR_INTERP = {"coastal": frozenset({"B1"}), "blue": frozenset({"B2"}), "green": frozenset({"B3"}),
                  "red": frozenset({"B4"}), "rededge": frozenset({"B5", "B6", "B7", "B8A"}),
                  "nir": frozenset({"B8", "B8A"}), "swir": frozenset({"B11", "B12"})}
_GDAL_DEFAULT_RGB = {(ColorInterp.red, ColorInterp.green, ColorInterp.blue),
                     (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha)}
_COMMON = {"B2": "blue", "B3": "green", "B4": "red", "B8": "nir"}


def _meaning(name: str, *, numbers: bool, extra: Sequence[str] = ()) -> tuple[str, frozenset[str]] | None:
    """(name as written, the bands it may be), or None for a name that says nothing ('', 'band 1', 'gray')."""
    text = " ".join(name.strip().lower().replace("_", " ").replace("-", " ").split())
    if text in _WORDS:
        return name.strip(), frozenset(_WORDS[text])
    match = re.fullmatch(r"b0?(\d{1,2}a?)", text)  # B4, B04, B8A; not "band 1", which says nothing
    if match and numbers and (band := f"B{match[1].upper()}") in _S2_BANDS:
        return name.strip(), frozenset({band})
    if text in {b.lower() for b in extra} and not match:
        return name.strip(), frozenset({next(b for b in extra if b.lower() == text)})
    return None


_S2_BANDS = {f"B{i}" for i in range(1, 13)} | {"B8A"}


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

    def check_names(self, where: str, spec: InputSpec, path: str, descriptions: Sequence[str | None],
                    colorinterp: Sequence[ColorInterp], dtype: np.dtype) -> None:
        """Refuse a file whose own band names (GDAL descriptions, else colour interpretation) contradict the
        bands it is read as (--bands, or the product's order). Sentinel-2 numbers (B4, B08) count only
        without --bands: other sensors number their bands otherwise, and --bands is the way to say so."""
        assumed = list(self.order) if self.order is not None else list(spec.bands)
        if len(assumed) != len(descriptions):
            return
        # GDAL tags every 3- or 4-band 8-bit GeoTIFF red, green, blue (alpha) unless told otherwise: no news
        colours = [] if dtype.itemsize == 1 and tuple(colorinterp) in _GDAL_DEFAULT_RGB else list(colorinterp)
        said: list[tuple[str, frozenset[str]] | None] = []
        for i, name in enumerate(descriptions):
            meaning = _meaning(name or "", numbers=self.order is None, extra=spec.bands)
            if meaning is None and i < len(colours):
                label = colours[i].name
                meaning = (label, _COLOUR_INTERP[label]) if label in _COLOUR_INTERP else None
            said.append(meaning)
        for i, (meaning, name) in enumerate(zip(said, assumed, strict=True), start=1):
            means = _meaning(name, numbers=True, extra=spec.bands)
            if meaning is None or means is None or meaning[1] & means[1]:
                continue
            how = "--bands" if self.order is not None else f"the product's order {', '.join(spec.bands)}"
            given = f"{name} ({_COMMON.get(name, name)})" if name in _COMMON else name
            suggest = ",".join(m[0] if m else _COMMON.get(a, a) for m, a in zip(said, assumed, strict=True))
            raise SourceError(f"{where}: {path} band {i} is '{meaning[0]}' by the file's own band names but is "
                              f"read as {given} ({how}); if the file is right give --bands {suggest}")

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

    def identity(self, years: Sequence[int]) -> dict:
        return {"kind": "files", "bands": self.bands.describe(),
                "files": {str(y): file_identity(self.files[y]) for y in years if y in self.files}}

    def path(self, year: int) -> str:
        try:
            return self.files[year]
        except KeyError:
            raise SourceError(f"source {self.label}: no raster for {year} (it has {year_span(list(self.files))})") \
                from None

    def check(self, spec: InputSpec, years: Sequence[int], bounds: Bounds | BaseGeometry) -> Coverage:
        missing = [y for y in years if y not in self.files]
        if missing:
            raise SourceError(f"source {self.label}: no '{spec.name}' raster for {year_span(missing)} "
                              f"(it has {year_span(list(self.files))})")
        grids = sample_grids(bounds)
        region = tuple(round(v, 4) for v in as_geometry(bounds).bounds)
        samples, by_path, footprint = {}, {}, False
        for year in years:
            path = self.files[year]
            where = f"{spec.name} {year}"
            try:
                with rasterio.open(path) as src:
                    count, crs, src_bounds = src.count, src.crs, src.bounds
                    dtypes, scales, offsets = src.dtypes, src.scales, src.offsets
                    descriptions, colorinterp = src.descriptions, src.colorinterp
            except rasterio.errors.RasterioIOError as exc:
                raise SourceError(f"{where}: {path} {cannot_open(path, exc)}") from None
            indexes = self.bands.indexes(where, spec, path, count)
            dtype = np.dtype(dtypes[indexes[0] - 1])
            if dtype.kind == "c" or dtype.kind not in "uif":
                raise SourceError(f"{where}: {path} holds {dtype} values; mapgen reads real numbers")
            own_scale = any(scales[i - 1] != 1 or offsets[i - 1] != 0 for i in indexes)
            if dtype.kind in "ui" and self.bands.scale is None and not own_scale and spec.units != "dn":
                raise SourceError(f"{where}: {path} holds {dtype} numbers with no scale; declare how they map "
                                  f"to the product's values with --scale (value = DN × scale + offset), "
                                  + _scale_hint(dtype))
            if crs is None:
                raise SourceError(f"{where}: {path} has no CRS")
            self.bands.check_names(where, spec, path, descriptions, colorinterp, dtype)
            footprint |= as_geometry(bounds).intersects(shapely.box(*transform_bounds(crs, "EPSG:4326",
                                                                                   *src_bounds)))
            if path not in by_path:  # one raster for every year is sampled once
                by_path[path] = self._sample(spec, year, path, grids, indexes)
            samples[year] = by_path[path]
        if not footprint:
            raise SourceError(f"the region {region} lies outside every '{spec.name}' raster of source {self.label}")
        return sampled_coverage(spec, samples, self.label)

    def _sample(self, spec: InputSpec, year: int, path: str, grids: list[SampleGrid], indexes: list[int]
                ) -> Sample:
        """The year's sample points, read as the run reads (band mapping, scale, offset, no data)."""
        try:
            values = [read_sample(path, g.grid, g.box, indexes=indexes, nodata=self.bands.nodata) for g in grids]
        except rasterio.errors.RasterioIOError as exc:
            cause = str(exc.__cause__ or exc).strip().splitlines()[0]
            raise SourceError(f"{spec.name} {year}: {path} is damaged or truncated, GDAL cannot read its pixels "
                              f"({cause}); write or download it again") from None
        scales, offsets = self._scale_offset(path, indexes)
        values = [v * scales[:, None, None] + offsets[:, None, None] for v in values]
        order = self.bands.order or tuple(spec.bands)
        return summarise(values, grids, scale=float(scales[0]), order=tuple(order), indexes=tuple(indexes))

    def _scale_offset(self, path: str, indexes: list[int]) -> tuple[np.ndarray, np.ndarray]:
        _, own_scales, own_offsets = _band_layout(path)
        scales = np.array([own_scales[i - 1] for i in indexes], dtype=np.float64)
        offsets = np.array([own_offsets[i - 1] for i in indexes], dtype=np.float64)
        if self.bands.scale is not None:
            scales[:] = self.bands.scale
        if self.bands.offset is not None:
            offsets[:] = self.bands.offset
        return scales, offsets

    def read(self, spec: InputSpec, year: int, grid: Grid, box: Box) -> np.ndarray:
        path = self.path(year)
        count, _, _ = _band_layout(path)
        indexes = self.bands.indexes(f"{spec.name} {year}", spec, path, count)
        scales, offsets = self._scale_offset(path, indexes)
        data = read_box(path, grid, box, resampling(spec), indexes=indexes, nodata=self.bands.nodata)
        if np.any(scales != 1) or np.any(offsets != 0):
            data = (data * scales[:, None, None] + offsets[:, None, None]).astype(np.float32)
        return data


def _scale_hint(dtype: np.dtype) -> str:
    """What --scale to give: 0.0001 is right for Sentinel-2 DN (16 bit), not for 8-bit imagery."""
    if dtype.itemsize == 1:
        return ("e.g. about k/255 for 8-bit imagery whose 255 stands for reflectance k (--scale 0.0016 for "
                "0–0.4); not 0.0001, which is for 16-bit Sentinel-2 DN and would make 8-bit imagery near black")
    return "e.g. --scale 0.0001 for Sentinel-2 DN (reflectance × 10000)"


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


def pattern_files(pattern: str) -> dict[str, dict[int | str, str]]:
    """Layer → date → path of the files a pattern names: `{year}` is a year (data/{year}/{layer}.tif), `{date}`
    a year, month or day (data/{date}/{layer}.tif holds data/2018-08/hr.tif). With no {layer} the layer is ''
    (the image)."""
    field = "{date}" if "{date}" in pattern else "{year}"
    if field not in pattern:
        raise SourceError(f"source {pattern}: a file pattern needs {{year}} or {{date}}, e.g. "
                          "data/{year}/{layer}.tif or imagery/rgbn_{year}.tif")
    when = r"\d{4}" if field == "{year}" else r"\d{4}(?:-\d{2}){0,2}"
    regex = re.escape(pattern).replace(re.escape(field), rf"(?P<year>{when})", 1)
    regex = regex.replace(re.escape("{layer}"), r"(?P<layer>[^/]+?)", 1)
    regex = regex.replace(re.escape(field), r"(?P=year)").replace(re.escape("{layer}"), r"(?P=layer)")
    files: dict[str, dict[int | str, str]] = {}
    for path in sorted(glob.glob(pattern.replace(field, "*").replace("{layer}", "*"))):
        match = re.fullmatch(regex, path)
        if match:
            layer = match.groupdict().get("layer") or ""
            files.setdefault(layer, {})[source_date(match["year"])] = str(Path(path).resolve())
    if not files:
        raise SourceError(f"source {pattern}: no file matches the pattern")
    return files


def check_raster(path: str, where: str) -> None:
    """Refuse, in one line, a file GDAL cannot open as a raster (a text file, an HTML error page, a cut file)."""
    try:
        with rasterio.open(path):
            pass
    except rasterio.errors.RasterioIOError as exc:
        raise SourceError(f"{where}: {path} {cannot_open(path, exc)}") from None


def cannot_open(path: str, exc: Exception) -> str:
    """Why GDAL cannot open `path`: a TIFF it cannot read is damaged or truncated, anything else is no raster."""
    reason = str(exc).splitlines()[0]
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        magic = b""
    if magic in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return f"cannot be opened, it is a damaged or truncated GeoTIFF ({reason}); write or download it again"
    return f"cannot be opened, it is not a raster GDAL can open ({reason})"
