"""ESA WorldCover's built-up class as a product's mask input (`--mask worldcover`).

WorldCover is a 10 m class map (50 = built-up, 0 = no data) in 3° × 3° tiles, one version a year that
exists (2020 v100, 2021 v200), served as STAC collection `esa-worldcover` with asset `map` (Planetary
Computer's, whose assets need SAS signing; or a static catalog saved from it). The mask input is a
probability-like layer (CBRA: Dynamic World `built` ≥ 0.2): the built-up class is given as 1.0 where
the class is 50, 0.0 elsewhere and NaN where WorldCover has no data, on the product's lattice (nearest
class), so the mask step applies unchanged. A year without a version of its own uses the nearest one,
and the run's report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from shapely.geometry.base import BaseGeometry

from mapgen.tiles import Box, Grid
from mapgen.workflows.product import InputSpec

from . import planetary
from .base import Bounds, Source, SourceError, covered_fraction, intersects, year_span
from .sample import Coverage, as_geometry, bounds_parts
from .stac import _static_items, _year_of

PREFIX = "worldcover"  # --mask worldcover or worldcover:CATALOG_OR_API_URL
COLLECTION, ASSET = "esa-worldcover", "map"
BUILT_UP, NO_DATA = 50, 0


def is_worldcover(text: str) -> bool:
    return text == PREFIX or text.startswith(PREFIX + ":")


@dataclass(frozen=True)
class WorldCoverSource(Source):
    """ESA WorldCover's built-up class (1.0 built-up, 0.0 other, NaN no data) from a STAC API or catalog."""

    href: str = planetary.PC_STAC  # STAC API URL, or path of a static catalog.json
    collection: str = COLLECTION
    sign: bool | None = None  # SAS-sign the maps' hrefs; None: where the catalog needs it

    @classmethod
    def parse(cls, text: str) -> WorldCoverSource:
        """`worldcover` (Planetary Computer's STAC API) or `worldcover:CATALOG_OR_API_URL`."""
        where = text[len(PREFIX) + 1:] if text.startswith(PREFIX + ":") else ""
        if not where:
            return cls()
        if where.startswith(("http://", "https://")):
            return cls(where.rstrip("/"))
        path = Path(where)
        if path.is_dir():
            path = path / "catalog.json"
        if not path.is_file():
            raise SourceError(f"--mask {text}: no such STAC catalog ({path})")
        return cls(str(path.resolve()))

    @property
    def is_api(self) -> bool:
        return self.href.startswith(("http://", "https://"))

    @property
    def signed(self) -> bool:
        if self.sign is not None:
            return self.sign
        return planetary.needs_signing(self.href, () if self.is_api else self._items())

    @property
    def description(self) -> str:
        return f"ESA WorldCover built-up (class {BUILT_UP}) from STAC {self.href} ({self.collection})"

    def _items(self) -> list:
        try:
            items = _static_items(self.href)
        except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad catalog
            raise SourceError(f"WorldCover {self.href}: not a readable STAC catalog "
                              f"({str(exc).splitlines()[0]})") from None
        return [it for it in items if it.collection_id == self.collection]

    def search(self, bounds: Bounds, year: int | None = None) -> list:
        """The tiles over `bounds` (of `year`'s version, or of every version), by id."""
        if self.is_api:
            items = self._search_api(bounds, year)
        else:
            items = [it for it in self._items() if it.bbox is not None and intersects(tuple(it.bbox), bounds)
                     and (year is None or _year_of(it) == year)]
        return sorted(items, key=lambda it: it.id)

    def _search_api(self, bounds: Bounds, year: int | None) -> list:
        import pystac_client

        when = f"{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z" if year is not None else "2000-01-01T00:00:00Z/.."
        try:
            client = pystac_client.Client.open(self.href)
            return list(client.search(collections=[self.collection], bbox=list(bounds), datetime=when).items())
        except Exception as exc:  # noqa: BLE001 - network, HTTP and API errors all mean the same here
            raise SourceError(f"WorldCover {self.href}: cannot be searched "
                              f"({planetary.public(str(exc).splitlines()[0])[:200]})") from None

    def version(self, year: int | str, versions: Sequence[int]) -> int:
        """The version year for `year`: its own, else the nearest (the later of two as near)."""
        year = int(str(year)[:4])
        return min(versions, key=lambda v: (abs(v - year), -v))

    def identity(self, years: Sequence[int]) -> dict:
        found = {"kind": "worldcover", "href": self.href, "collection": self.collection}
        if not self.is_api:  # a static catalog: its items, as ids and update times
            found["items"] = sorted([it.id, str(it.properties.get("updated") or it.properties.get("created") or "")]
                                    for it in self._items())
        return found

    def check(self, spec: InputSpec, years: Sequence[int], region: Bounds | BaseGeometry) -> Coverage:
        if len(spec.bands) != 1:
            raise SourceError(f"{spec.name}: WorldCover gives one band (built-up 1, other 0), but the product's "
                              f"{spec.name} has {len(spec.bands)} ({', '.join(spec.bands)})")
        where = f"WorldCover {self.href}"
        if not self.is_api and not self._items():
            have = sorted({str(it.collection_id) for it in _static_items(self.href)})
            raise SourceError(f"{where}: no item of collection {self.collection} (the catalog has "
                              f"{', '.join(have) or 'no items'}); give an ESA WorldCover catalog")
        parts = bounds_parts(region)
        found = [it for part in parts for it in self.search(part)]
        bounds = tuple(round(v, 4) for v in as_geometry(region).bounds)
        if not found:
            raise SourceError(f"{where}: no {self.collection} tile over the region {bounds}")
        for item in found:
            if ASSET not in item.assets:
                raise SourceError(f"{where}: item {item.id} has no '{ASSET}' asset, the WorldCover class map "
                                  f"(its assets: {', '.join(sorted(item.assets)) or 'none'})")
        by_year: dict[int, list] = {}
        for item in found:
            by_year.setdefault(_year_of(item), []).append(item)
        versions = sorted(y for y in by_year if y is not None)
        if not versions:
            raise SourceError(f"{where}: its {self.collection} items carry no year (datetime or start_datetime)")
        hrefs = [it.assets[ASSET].href for it in found]
        if hrefs[0].startswith(("http://", "https://")):
            if self.signed:
                planetary.fetch_tokens(hrefs, where)
            planetary.probe(hrefs[0], signed=self.signed, where=f"{where}: item {found[0].id}")
        areas = [(e - w) * (n - s) for w, s, e, n in parts]
        coverage, moved = {}, {}
        for year in years:
            used = self.version(year, versions)
            if used != int(str(year)[:4]):
                moved.setdefault(used, []).append(year)
            tiles = [tuple(it.bbox) for it in by_year[used]]
            coverage[year] = sum(a * covered_fraction(part, [t for t in tiles if intersects(t, part)])
                                 for part, a in zip(parts, areas, strict=True)) / (sum(areas) or 1)
        notes = [f"{spec.name}: ESA WorldCover has {year_span(versions)} only; {year_span(ys)} "
                 f"use{'s' if len(ys) == 1 else ''} WorldCover {used}: built-up areas that changed since are "
                 f"masked as of {used}" for used, ys in sorted(moved.items())]
        return Coverage(coverage, measured="footprints", notes=notes)

    def read(self, spec: InputSpec, year: int, grid: Grid, box: Box) -> np.ndarray:
        import odc.stac
        import rasterio.errors
        from odc.geo.geobox import GeoBox

        bounds = grid.bounds(box)
        found = self.search(bounds)
        versions = sorted({y for it in found if (y := _year_of(it)) is not None})
        out = np.full((1, box.height, box.width), np.nan, dtype=np.float32)
        if not versions:
            return out
        used = self.version(year, versions)
        items = [it for it in found if _year_of(it) == used]
        geobox = GeoBox(box.shape, grid.transform(box), grid.crs)
        # One plane for the version: the tiles do not overlap; classes are read by nearest neighbour.
        try:
            ds = odc.stac.load(items, bands=[ASSET], geobox=geobox, groupby=lambda *_: used, resampling="nearest",
                               dtype="uint8", patch_url=planetary.sign if self.signed else None)
            classes = ds[ASSET].values[0]
        except rasterio.errors.RasterioIOError as exc:  # a refused read: say which asset and why
            hrefs = [it.assets[ASSET].href for it in items]
            raise (planetary.read_error(exc, hrefs, signed=self.signed) or exc) from None
        out[0] = np.where(classes == NO_DATA, np.nan, (classes == BUILT_UP).astype(np.float32))
        return out
