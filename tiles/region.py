"""Reading and checking a region of interest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity


class RegionError(ValueError):
    """A region that cannot be planned: one line saying what and where."""


def crosses_antimeridian(geometry: BaseGeometry) -> bool:
    """Whether an edge of the geometry jumps more than 180° in longitude: drawn the short way, across ±180°
    (a region merely wider than 180° has no such edge)."""
    polygons = getattr(geometry, "geoms", [geometry])
    for polygon in polygons:
        for ring in (polygon.exterior, *polygon.interiors) if polygon.geom_type == "Polygon" else ():
            if np.any(np.abs(np.diff(np.asarray(ring.coords)[:, 0])) > 180):
                return True
    return False


def split_antimeridian(geometry: BaseGeometry) -> BaseGeometry:
    """A region that crosses ±180° as its two parts: each crossing polygon is shifted east (negative
    longitudes + 360°), cut at 180°, and the part beyond shifted back; other polygons stay as they are."""
    parts = []
    for polygon in getattr(geometry, "geoms", [geometry]):
        if not crosses_antimeridian(polygon):
            parts.append(polygon)
            continue
        east = shapely.transform(polygon, lambda xy: np.where(xy[:, :1] < 0, xy + [360.0, 0.0], xy))
        parts.append(shapely.clip_by_rect(east, -180, -90, 180, 90))
        parts.append(shapely.transform(shapely.clip_by_rect(east, 180, -90, 540, 90), lambda xy: xy - [360.0, 0.0]))
    return shapely.union_all([p for p in parts if not p.is_empty])


def check_region(geometry: BaseGeometry, where: str = "region") -> BaseGeometry:
    """Refuse empty, invalid, non-areal or out-of-range geometries; return it, split at ±180° when it crosses
    the antimeridian, otherwise unchanged."""
    if geometry is None or geometry.is_empty:
        raise RegionError(f"{where}: the region is empty")
    if geometry.geom_type in ("Polygon", "MultiPolygon") and crosses_antimeridian(geometry):
        geometry = split_antimeridian(geometry)
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
    # a polygon drawn across ±180° is split before its validity is judged (as drawn it may cross itself)
    geoms = [split_antimeridian(g) if g is not None and g.geom_type in ("Polygon", "MultiPolygon")
             and crosses_antimeridian(g) else g for g in frame.geometry if g is not None]
    invalid = [i for i, g in enumerate(geoms) if not g.is_valid]
    if invalid:
        raise RegionError(f"{path}: feature {invalid[0]} has an invalid geometry "
                          f"({explain_validity(geoms[invalid[0]])})")
    return check_region(shapely.union_all(geoms), str(path))


def region_name(path: str | Path) -> str:
    """The region's name, made safe for file names: the `name` property its features share (a GeoJSON
    FeatureCollection's own `name` member otherwise), else the file's stem: `{region}` of a product's
    checkpoint and mosaic names."""
    import json
    import re

    import geopandas as gpd

    path = Path(path)
    try:
        frame = gpd.read_file(path)
    except Exception:  # noqa: BLE001 - an unreadable file is refused by load_region, in its own words
        return path.stem
    name = None
    if "name" in frame.columns:
        names = {str(n).strip() for n in frame["name"] if n is not None and str(n).strip()}
        name = names.pop() if len(names) == 1 else None
    if name is None and path.suffix.lower() in (".geojson", ".json"):
        try:
            member = json.loads(path.read_text()).get("name")
        except (ValueError, AttributeError):
            member = None
        name = member.strip() if isinstance(member, str) and member.strip() else None
    # a name goes into file names: letters (any script), digits, '.', '_' and '-' only
    safe = re.sub(r"[^\w.-]+", "-", name or "").strip("-.")
    return safe or path.stem
