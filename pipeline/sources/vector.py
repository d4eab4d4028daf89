"""A mask input given as polygons (an urban boundary such as GUB 2018): any vector file GDAL/OGR reads,
rasterised onto the lattice by rasterio, 1 inside a polygon (the pixel's centre in it), 0 outside."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from mapgen.tiles import Box, Grid
from mapgen.workflows.product import InputSpec

from .base import Bounds, Source, SourceError, file_identity
from .sample import as_geometry

VECTOR_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp", ".fgb", ".parquet", ".geoparquet"}


def is_vector_file(path: str) -> bool:
    """A vector file by its suffix; a `.json` only when it holds GeoJSON (a STAC catalog is also JSON)."""
    suffix = Path(path).suffix.lower()
    if suffix not in VECTOR_SUFFIXES:
        return False
    if suffix != ".json":
        return True
    try:
        with open(path, encoding="utf-8") as f:
            kind = json.load(f).get("type")
    except (OSError, ValueError, AttributeError):
        return False
    return kind in {"FeatureCollection", "Feature", "Polygon", "MultiPolygon", "GeometryCollection"}


@cache
def read_polygons(path: str) -> tuple[BaseGeometry, ...]:
    """The file's non-empty geometries in EPSG:4326 (a file without a CRS is taken as EPSG:4326, as GeoJSON
    is by definition); one line (SourceError) for a file that cannot be read."""
    import geopandas

    try:
        frame = geopandas.read_file(path)
    except Exception as exc:  # noqa: BLE001 - pyogrio's and fiona's errors share no base class
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{path}: cannot be read as a vector file ({reason})") from None
    if frame.crs is not None:
        frame = frame.to_crs("EPSG:4326")
    return tuple(g for g in frame.geometry if g is not None and not g.is_empty)


def rasterise(polygons: Sequence[BaseGeometry], grid: Grid, box: Box) -> np.ndarray:
    """(H, W) uint8 of `box` on `grid`: 1 where a pixel's centre is inside a polygon, else 0."""
    from rasterio.features import rasterize

    if not polygons:
        return np.zeros(box.shape, np.uint8)
    return rasterize(((g, 1) for g in polygons), out_shape=box.shape, transform=grid.transform(box), fill=0,
                     dtype="uint8")


class VectorSource(Source):
    """Polygons of one layer, the same for every date (a fixed epoch such as GUB 2018)."""

    def __init__(self, path: str) -> None:
        self.path = str(Path(path).resolve())

    @property
    def description(self) -> str:
        return f"polygons {self.path}"

    def identity(self, years: Sequence[int]) -> dict:
        return {"kind": "VectorSource", **file_identity(self.path)}

    def check(self, spec: InputSpec, years: Sequence[int], bounds: Bounds | BaseGeometry) -> dict[int, float]:
        if len(spec.bands) != 1:
            raise SourceError(f"{spec.name}: polygons {self.path} give one band (1 inside, 0 outside), but the "
                              f"product's {spec.name} has {len(spec.bands)} ({', '.join(spec.bands)})")
        polygons = read_polygons(self.path)
        if not polygons:
            raise SourceError(f"{spec.name}: {self.path} holds no polygons; give the {spec.description or spec.name} "
                              "as polygons or a raster, or --mask none to skip the step")
        region = as_geometry(bounds)
        if not any(shapely.intersects(p, region) for p in polygons):
            west, south, east, north = shapely.total_bounds(polygons)
            raise SourceError(f"{spec.name}: none of the {len(polygons)} polygons of {self.path} (within "
                              f"{west:.4f}, {south:.4f}, {east:.4f}, {north:.4f}) meets the region "
                              f"{tuple(round(v, 4) for v in region.bounds)}; every pixel would be masked out")
        return {year: 1.0 for year in years}  # known everywhere: 1 inside, 0 outside

    def read(self, spec: InputSpec, year: int, grid: Grid, box: Box) -> np.ndarray:
        return rasterise(read_polygons(self.path), grid, box)[None].astype(np.float32)
