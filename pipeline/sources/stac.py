"""Sentinel-2 scenes from STAC: searched per block and year, cloud-masked per pixel, yearly median.

A STAC API (Earth Search, Planetary Computer, your own) is searched with pystac-client; a static catalog
on disk is walked with pystac. Pixels are loaded with odc-stac straight onto the product's lattice, each
scene with its own `raster:bands` scale and offset, masked from its scene classification (L2A `SCL`) or
QA band (L1C `QA60`), then reduced to the median of the year with dask.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from shapely.geometry.base import BaseGeometry

from mapgen.tiles import Box, Grid
from mapgen.workflows.product import InputSpec

from . import planetary
from .base import Bounds, Source, SourceError, covered_fraction, intersects
from .sample import Coverage, as_geometry, bounds_parts

# Asset keys of each product band across catalogs: Earth Search names bands by colour, Planetary
# Computer and the Copernicus catalogs by their Sentinel-2 number.
BAND_ASSETS = {
    "B2": ("blue", "B02", "B2"), "B3": ("green", "B03", "B3"), "B4": ("red", "B04", "B4"),
    "B8": ("nir", "B08", "B8"), "B8A": ("nir08", "B8A"), "B11": ("swir16", "B11"), "B12": ("swir22", "B12"),
}
SCL_ASSETS = ("scl", "SCL")
QA60_ASSETS = ("QA60", "qa60")
# Scene classes that are not a clear view of the ground: no data, saturated, cloud shadow, cloud of
# medium and high probability, thin cirrus.
SCL_NOT_CLEAR = (0, 1, 3, 8, 9, 10)
QA60_OPAQUE, QA60_CIRRUS = 1 << 10, 1 << 11
DEFAULT_SCALE = 1e-4  # Sentinel-2 DN → reflectance, when an asset does not say (raster:bands)
# L2A of processing baseline 04.00 on (25 January 2022) holds reflectance × 10000 + 1000 (BOA_ADD_OFFSET);
# a catalog that serves ESA's values without raster:bands saying so (Planetary Computer) needs the offset.
BOA_OFFSET, BOA_BASELINE = -0.1, "04.00"


def _asset_key(item, names: Sequence[str]) -> str | None:
    return next((k for k in names if k in item.assets), None)


def _raster_band(asset) -> dict:
    bands = asset.extra_fields.get("raster:bands") or [{}]
    return bands[0]


def _default_offset(item) -> float:
    """The offset of an asset whose raster:bands has none: ESA's BOA offset for L2A of baseline 04.00 on,
    unless the catalog says it took it off (Earth Search's `earthsearch:boa_offset_applied`)."""
    baseline = str(item.properties.get("s2:processing_baseline") or "")
    applied = item.properties.get("earthsearch:boa_offset_applied")
    return BOA_OFFSET if baseline >= BOA_BASELINE and not applied else 0.0


def _year_of(item) -> int | None:
    when = item.datetime or item.common_metadata.start_datetime
    return when.year if when else None


@lru_cache(maxsize=8)
def _static_items(href: str) -> tuple:
    """Every item of a static catalog, read once per process."""
    import pystac

    return tuple(pystac.Catalog.from_file(href).get_items(recursive=True))


@dataclass(frozen=True)
class StacScenes(Source):
    """The yearly median of cloud-masked Sentinel-2 scenes of a STAC collection."""

    href: str  # STAC API URL, or path of a static catalog.json
    collection: str = "sentinel-2-l2a"
    cloud_cover: float = 20.0  # scenes with eo:cloud_cover at or above this are left out (paper: 20 %)
    chunk: int = 512
    sign: bool | None = None  # SAS-sign asset hrefs (Planetary Computer); None: where the catalog needs it

    @property
    def signed(self) -> bool:
        if self.sign is not None:
            return self.sign
        return planetary.needs_signing(self.href, () if self.is_api else _static_items(self.href))

    @property
    def is_api(self) -> bool:
        return self.href.startswith(("http://", "https://"))

    @property
    def description(self) -> str:
        return f"STAC {self.href} ({self.collection}, eo:cloud_cover < {self.cloud_cover:g} %)"

    def identity(self, years: Sequence[int]) -> dict:
        found = {"kind": "stac", "href": self.href if self.is_api else str(Path(self.href).resolve()),
                 "collection": self.collection, "cloud_cover": self.cloud_cover}
        if not self.is_api:  # a static catalog on disk: its items of those years, as ids and update times
            found["items"] = sorted(
                [it.id, str(it.properties.get("updated") or it.datetime or "")] for it in _static_items(self.href)
                if it.collection_id in (None, self.collection) and _year_of(it) in years)
        return found

    def search(self, bounds: Bounds, year: int) -> list:
        """The scenes of `year` over `bounds` under the cloud limit, oldest first."""
        if self.is_api:
            items = self._search_api(bounds, year)
        else:
            items = [
                it for it in _static_items(self.href)
                if (it.collection_id in (None, self.collection)) and _year_of(it) == year
                and it.bbox is not None and intersects(tuple(it.bbox), bounds)
                and float(it.properties.get("eo:cloud_cover", 0.0)) < self.cloud_cover
            ]
        return sorted(items, key=lambda it: (it.datetime or it.common_metadata.start_datetime, it.id))

    def _search_api(self, bounds: Bounds, year: int) -> list:
        import pystac_client

        try:
            client = pystac_client.Client.open(self.href)
            search = client.search(collections=[self.collection], bbox=list(bounds),
                                   datetime=f"{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z",
                                   query={"eo:cloud_cover": {"lt": self.cloud_cover}})
            return list(search.items())
        except Exception as exc:  # noqa: BLE001 - network, HTTP and API errors all mean the same here
            raise SourceError(f"STAC {self.href}: cannot be searched ({str(exc).splitlines()[0][:200]})") from None

    def _keys(self, spec: InputSpec, item) -> tuple[list[str], str, str]:
        """Asset keys of the bands, the cloud-mask asset and its kind ('scl' or 'qa60')."""
        keys, missing = [], []
        for band in spec.bands:
            key = _asset_key(item, BAND_ASSETS.get(band, (band,)))
            (keys.append(key) if key else missing.append(band))
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise SourceError(f"STAC {self.href}: item {item.id} has no asset for band{plural} "
                              f"{', '.join(missing)} (assets: {', '.join(sorted(item.assets))})")
        if (mask := _asset_key(item, SCL_ASSETS)) is not None:
            return keys, mask, "scl"
        if (mask := _asset_key(item, QA60_ASSETS)) is not None:
            return keys, mask, "qa60"
        raise SourceError(f"STAC {self.href}: item {item.id} has neither a scene classification (SCL) nor a "
                          "QA60 asset to mask clouds with")

    def check(self, spec: InputSpec, years: Sequence[int], region: Bounds | BaseGeometry) -> Coverage:
        # scenes are not read before the run: coverage is the share of the bounding box(es) under footprints
        bounds = tuple(as_geometry(region).bounds)
        parts = bounds_parts(region)
        if not self.is_api:
            try:
                _static_items(self.href)
            except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad catalog
                raise SourceError(f"source {self.href}: not a readable STAC catalog "
                                  f"({str(exc).splitlines()[0]})") from None
        coverage = {}
        for year in years:
            found = [self.search(part, year) for part in parts]
            items = [it for part in found for it in part]
            if not items:
                raise SourceError(f"STAC {self.href}: no {self.collection} scene with eo:cloud_cover < "
                                  f"{self.cloud_cover:g} % over {tuple(round(v, 4) for v in bounds)} in {year}")
            for item in items:
                keys, mask, _ = self._keys(spec, item)
                asset = item.assets[keys[0]]
                dtype = _raster_band(asset).get("data_type")
                if dtype is not None and not np.issubdtype(np.dtype(dtype), np.number):
                    raise SourceError(f"STAC {self.href}: item {item.id} band {keys[0]} holds {dtype} values")
            if year == years[0]:
                self._probe(spec, items)
            areas = [(e - w) * (n - s) for w, s, e, n in parts]
            coverage[year] = sum(a * covered_fraction(part, [tuple(it.bbox) for it in its])
                                 for part, its, a in zip(parts, found, areas, strict=True)) / (sum(areas) or 1)
        return Coverage(coverage, measured="footprints")

    def _probe(self, spec: InputSpec, items: list) -> None:
        """Remote assets: get the SAS tokens they need and open one, so that a refused read is one line now
        rather than a failure in every block."""
        keys = [self._keys(spec, it) for it in items]
        hrefs = [it.assets[k].href for it, (bands, mask, _) in zip(items, keys, strict=True) for k in [*bands, mask]]
        if not hrefs[0].startswith(("http://", "https://")):
            return
        where = f"STAC {self.href}"
        if self.signed:
            planetary.fetch_tokens(hrefs, where)
        planetary.probe(hrefs[0], signed=self.signed, where=f"{where}: item {items[0].id}")

    def read(self, spec: InputSpec, year: int, grid: Grid, box: Box) -> np.ndarray:
        import odc.stac
        import rasterio.errors
        from odc.geo.geobox import GeoBox

        items = self.search(grid.bounds(box), year)
        if not items:
            return np.full((len(spec.bands), box.height, box.width), np.nan, dtype=np.float32)
        keys, mask_key, mask_kind = self._keys(spec, items[0])
        geobox = GeoBox(box.shape, grid.transform(box), grid.crs)
        # One plane per scene (groupby "id"), in the order of `items`, so each gets its own scale/offset.
        ds = odc.stac.load(items, bands=[*keys, mask_key], geobox=geobox, groupby="id",
                           preserve_original_order=True, chunks={"x": self.chunk, "y": self.chunk},
                           resampling={"*": "bilinear", mask_key: "nearest"},
                           patch_url=planetary.sign if self.signed else None)
        mask = ds[mask_key]
        if mask_kind == "scl":
            clear = ~mask.isin(SCL_NOT_CLEAR)
        else:
            qa = mask.astype("int64")
            clear = ((qa & QA60_OPAQUE) == 0) & ((qa & QA60_CIRRUS) == 0)
        import dask.array as da

        planes = []
        for key in keys:
            per_item = [_raster_band(it.assets[key]) for it in items]
            scale = np.array([b.get("scale", DEFAULT_SCALE) for b in per_item])[:, None, None]
            offset = np.array([b.get("offset", _default_offset(it)) for b, it in zip(per_item, items, strict=True)]
                              )[:, None, None]
            nodata = np.array([b.get("nodata", 0) for b in per_item])[:, None, None]
            dn = ds[key].data.astype("float32")
            valid = clear.data & (dn != nodata)
            planes.append(da.where(valid, dn * scale + offset, np.nan))

        stack = da.stack(planes, axis=1)  # (scene, band, y, x)
        median = da.nanmedian(stack, axis=0) if stack.shape[0] > 1 else stack[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: no clear view this year
            try:
                out = median.compute(scheduler="synchronous")
            except rasterio.errors.RasterioIOError as exc:  # a refused read: say which asset and why
                hrefs = [it.assets[k].href for it in items for k in [*keys, mask_key]]
                raise (planetary.read_error(exc, hrefs, signed=self.signed) or exc) from None
        return np.asarray(out, dtype=np.float32)
