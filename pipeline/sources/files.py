"""Sources made of files: a static STAC catalog on disk, or a path pattern with {layer} and {year}."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from .base import LayerFiles, SourceError


def _stac_year(item) -> int | None:
    if "mapgen:year" in item.properties:
        return int(item.properties["mapgen:year"])
    start = item.properties.get("start_datetime") or item.properties.get("datetime")
    return int(str(start)[:4]) if start else None


def open_stac_catalog(path: Path) -> LayerFiles:
    """A static STAC catalog whose items are years and whose assets are layers (as `mapgen synth`
    writes)."""
    import pystac

    try:
        catalog = pystac.Catalog.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad catalog
        raise SourceError(f"source {path}: not a readable STAC catalog ({str(exc).splitlines()[0]})") from None
    files: dict[str, dict[int, str]] = {}
    for item in catalog.get_items(recursive=True):
        year = _stac_year(item)
        if year is None:
            continue
        for key, asset in item.assets.items():
            files.setdefault(key, {})[year] = asset.get_absolute_href()
    if not files:
        raise SourceError(f"source {path}: the STAC catalog has no items with assets")
    return LayerFiles(str(path), files)


def open_pattern(pattern: str) -> LayerFiles:
    """Files named by a pattern such as `data/{year}/{layer}.tif`."""
    if "{year}" not in pattern or "{layer}" not in pattern:
        raise SourceError(f"source {pattern}: a file pattern needs both {{layer}} and {{year}}, "
                          "e.g. data/{year}/{layer}.tif")
    regex = re.escape(pattern).replace(re.escape("{year}"), r"(?P<year>\d{4})", 1)
    regex = regex.replace(re.escape("{layer}"), r"(?P<layer>[^/]+?)", 1)
    regex = regex.replace(re.escape("{year}"), r"(?P=year)").replace(re.escape("{layer}"), r"(?P=layer)")
    files: dict[str, dict[int, str]] = {}
    for path in sorted(glob.glob(pattern.replace("{year}", "*").replace("{layer}", "*"))):
        match = re.fullmatch(regex, path)
        if match:
            files.setdefault(match["layer"], {})[int(match["year"])] = str(Path(path).resolve())
    if not files:
        raise SourceError(f"source {pattern}: no file matches the pattern")
    return LayerFiles(pattern, files)


def open_source(spec: str | Path) -> LayerFiles:
    """Resolve `--source`: a directory with catalog.json, a STAC catalog file, or a file pattern."""
    text = str(spec)
    path = Path(text)
    if "{" in text:
        return open_pattern(text)
    if path.is_dir():
        if (path / "catalog.json").exists():
            return open_stac_catalog(path / "catalog.json")
        raise SourceError(f"source {path}: a directory without catalog.json; give a STAC catalog or a "
                          "pattern like DIR/{year}/{layer}.tif")
    if path.suffix == ".json" and path.exists():
        return open_stac_catalog(path)
    if not path.exists():
        raise SourceError(f"source {text}: no such file or directory")
    raise SourceError(f"source {text}: not a STAC catalog, a directory with catalog.json, or a pattern "
                      "with {layer} and {year}")
