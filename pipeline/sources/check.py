"""Checks made on the client before any work is spent."""

from __future__ import annotations

import rasterio
from rasterio.warp import transform_bounds

from .base import LayerFiles, SourceError, year_span


def _intersects(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_source(source: LayerFiles, layers: dict[str, int], years: list[int] | tuple[int, ...],
                 bounds: tuple[float, float, float, float]) -> dict[str, dict[int, tuple[float, ...]]]:
    """Refuse, in one line, a source that lacks a layer or year, has unreadable rasters or the wrong band
    count, or does not reach the region. `layers` maps layer name → expected band count. Returns the
    EPSG:4326 footprint of every raster."""
    footprints: dict[str, dict[int, tuple[float, ...]]] = {}
    for layer in layers:
        have = source.years(layer)
        if not have:
            raise SourceError(f"source {source.description}: no '{layer}' layer "
                              f"(it has {', '.join(sorted(source.files)) or 'none'})")
        missing = [y for y in years if y not in have]
        if missing:
            raise SourceError(f"source {source.description}: no '{layer}' for {year_span(missing)} "
                              f"(it has {year_span(have)})")
    for layer, bands in layers.items():
        for year in years:
            path = source.path(layer, year)
            try:
                with rasterio.open(path) as src:
                    count, crs, src_bounds = src.count, src.crs, src.bounds
            except rasterio.errors.RasterioIOError as exc:
                raise SourceError(f"{layer} {year}: {path} cannot be opened "
                                  f"({str(exc).splitlines()[0]})") from None
            if count != bands:
                raise SourceError(f"{layer} {year}: {path} has {count} band{'s' if count != 1 else ''}; "
                                  f"the product needs {bands}")
            if crs is None:
                raise SourceError(f"{layer} {year}: {path} has no CRS")
            footprint = transform_bounds(crs, "EPSG:4326", *src_bounds)
            footprints.setdefault(layer, {})[year] = footprint
    if not any(_intersects(bounds, fp) for fps in footprints.values() for fp in fps.values()):
        raise SourceError(f"the region {tuple(round(v, 4) for v in bounds)} lies outside every raster of "
                          f"source {source.description}")
    return footprints
