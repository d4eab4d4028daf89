"""Reading and checking a region of interest."""

from __future__ import annotations

from pathlib import Path

import shapely
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity


class RegionError(ValueError):
    """A region that cannot be planned: one line saying what and where."""


def check_region(geometry: BaseGeometry, where: str = "region") -> BaseGeometry:
    """Refuse empty, invalid, non-areal or out-of-range geometries; return it unchanged otherwise."""
    if geometry is None or geometry.is_empty:
        raise RegionError(f"{where}: the region is empty")
    if not geometry.is_valid:
        raise RegionError(f"{where}: invalid geometry ({explain_validity(geometry)})")
    if geometry.area <= 0:
        raise RegionError(f"{where}: the region has no area (a {geometry.geom_type}, not a polygon)")
    west, south, east, north = geometry.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise RegionError(f"{where}: bounds {geometry.bounds} are outside longitude ±180 / latitude ±90; "
                          "is it in EPSG:4326?")
    return geometry


def load_region(path: str | Path) -> BaseGeometry:
    """The union of all geometries of a vector file (GeoJSON, GeoPackage, Shapefile…), in EPSG:4326."""
    import geopandas as gpd  # heavy import, only where a file is read

    path = Path(path)
    if not path.exists():
        raise RegionError(f"{path}: no such file")
    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad region file
        raise RegionError(f"{path}: cannot be read as a vector file ({str(exc).splitlines()[0]})") from None
    if frame.empty:
        raise RegionError(f"{path}: the file holds no features")
    if frame.crs is not None and not frame.crs.equals("EPSG:4326"):
        frame = frame.to_crs("EPSG:4326")
    geoms = [g for g in frame.geometry if g is not None]
    invalid = [i for i, g in enumerate(geoms) if not g.is_valid]
    if invalid:
        raise RegionError(f"{path}: feature {invalid[0]} has an invalid geometry "
                          f"({explain_validity(geoms[invalid[0]])})")
    return check_region(shapely.union_all(geoms), str(path))
