"""`--source` and `--mask` strings → the source of each product input, checked before any work."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shapely.geometry.base import BaseGeometry

from mapgen.workflows import Product
from mapgen.workflows.dates import source_date

from .base import Bounds, Inputs, Source, SourceError, year_span
from .cache import STORE, CachedSource
from .earthengine import EarthEngineSource
from .files import BandMap, FileSource, check_raster, pattern_files, yearly_catalog_layers
from .sample import as_geometry
from .stac import StacScenes
from .vector import VectorSource, is_vector_file
from .worldcover import WorldCoverSource, is_worldcover

MASK_OFF = "none"
AS_IS = BandMap()  # the file holds the product's bands, in its order


def _catalog(path: Path):
    import pystac

    try:
        return pystac.Catalog.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad catalog
        raise SourceError(f"source {path}: not a readable STAC catalog ({str(exc).splitlines()[0]})") from None


def _catalog_path(text: str) -> Path | None:
    path = Path(text)
    if path.is_dir():
        if (path / "catalog.json").exists():
            return path / "catalog.json"
        if (path / "collection.json").exists():
            return path / "collection.json"
        raise SourceError(f"source {path}: a directory without catalog.json; give a STAC catalog or a "
                          "pattern like DIR/{year}/{layer}.tif")
    if path.suffix == ".json":
        if not path.exists():
            raise SourceError(f"source {text}: no such file")
        return path
    return None


def _is_yearly(catalog) -> bool:
    """A catalog of yearly rasters (items are years, assets are layers) rather than of scenes."""
    first = next(iter(catalog.get_items(recursive=True)), None)
    if first is None:
        raise SourceError(f"source {catalog.get_self_href()}: the STAC catalog has no items")
    return "mapgen:year" in first.properties


def layer_sources(text: str, product: Product, years: Sequence[int | str], *, bands: BandMap = AS_IS,
                  collection: str = "sentinel-2-l2a", cloud_cover: float = 20.0) -> dict[str, Source]:
    """The sources one `--source` string gives, by product input name (some inputs may be missing)."""
    image = product.image_input.name
    if text == "ee" or text.startswith("ee://"):
        from .earthengine import parse_ee_spec

        ee_source = parse_ee_spec(text)
        return {spec.name: ee_source for spec in product.inputs}
    if text.startswith(("http://", "https://")):
        return {image: StacScenes(text, collection, cloud_cover)}
    if "{" in text:
        found = pattern_files(text)
        for layer, files in found.items():  # a text file where a raster belongs: say so, not what is missing
            for year, path in sorted(files.items()):
                check_raster(path, f"{layer or image} {year}")
        if "" in found:  # no {layer}: the files are the image
            return {image: FileSource(text, found[""], bands)}
        return {name: FileSource(text.replace("{layer}", name), files, bands if name == image else BandMap())
                for name, files in found.items() if name in {s.name for s in product.inputs}}
    if Path(text).is_file() and is_vector_file(text):  # polygons: a mask given as a vector file
        return {image: VectorSource(text)}
    if (Path(text) / STORE).is_dir():  # an input cache made by `mapgen fetch`
        return dict(CachedSource.open(text))
    path = _catalog_path(text)
    if path is None:
        if Path(text).is_file():  # one raster for every year
            check_raster(str(Path(text).resolve()), f"source {text}")
            return {image: FileSource(text, {source_date(y): str(Path(text).resolve()) for y in years}, bands)}
        raise SourceError(f"source {text}: no such file or directory" if not Path(text).exists() else
                          f"source {text}: not a STAC catalog, a raster, or a pattern with {{year}}")
    catalog = _catalog(path)
    if _is_yearly(catalog):
        found = yearly_catalog_layers(catalog, str(path))
        return {name: FileSource(f"{path}#{name}", files, bands if name == image else BandMap())
                for name, files in found.items() if name in {s.name for s in product.inputs}}
    return {image: StacScenes(str(path.resolve()), collection, cloud_cover)}


def open_inputs(product: Product, source: str, years: Sequence[int | str], *, mask: str | None = None,
                bands: BandMap = AS_IS, collection: str = "sentinel-2-l2a", cloud_cover: float = 20.0
                ) -> Inputs:
    """The source of every product input: `source` for what it has, `mask` for the mask inputs (a raster,
    a pattern, a catalog, 'worldcover[:CATALOG_OR_API_URL]' for ESA WorldCover's built-up class, or 'none'
    to switch the mask off)."""
    sources = layer_sources(str(source), product, years, bands=bands, collection=collection,
                            cloud_cover=cloud_cover)
    image = product.image_input
    if image.name not in sources:
        have = ", ".join(sorted(sources)) or "none"
        raise SourceError(f"source {source}: no '{image.name}' input (it has {have})")
    absent: set[str] = set()
    notes: list[str] = []
    for spec in product.inputs:
        if spec.role != "mask":
            continue
        if mask == MASK_OFF:
            sources.pop(spec.name, None)
            absent.add(spec.name)
        elif mask is not None:
            if is_worldcover(mask):  # ESA WorldCover's built-up class, from STAC
                sources[spec.name] = WorldCoverSource.parse(mask)
            else:
                given = layer_sources(mask, product, years)
                # a mask source given alone (one raster, a pattern without {layer}) is read as the image slot
                sources[spec.name] = given.get(spec.name) or given[image.name]
            notes.append(f"{spec.name}: from {sources[spec.name].description} instead of the source's own "
                         f"({spec.description or spec.name})")
        elif spec.name not in sources:
            raise SourceError(f"source {source}: no '{spec.name}' input for the '{spec.name}' mask step; give "
                              f"--mask RASTER-or-PATTERN (e.g. a Dynamic World built raster), --mask worldcover "
                              f"(ESA WorldCover's built-up class), or --mask none to skip the step")
    return Inputs(sources, frozenset(absent), tuple(notes))


def check_inputs(inputs: Inputs, product: Product, years: Sequence[int | str], region: Bounds | BaseGeometry
                 ) -> dict[str, dict[int, float]]:
    """Check every input's source over the region (its polygon, or a bounding box) before any work: one line
    on failure, and a run whose input has no data anywhere over the region is refused (its map would be
    empty). Returns the coverage per input and year (a `Coverage`, with its warnings)."""
    coverage = {}
    for spec in product.inputs:
        if spec.name in inputs.absent:
            continue
        source = inputs.source(spec.name)
        dates = [source_date(d) for d in spec.read_dates(tuple(str(y) for y in years))]
        if isinstance(source, (StacScenes, EarthEngineSource)) and not all(isinstance(d, int) for d in dates):
            # their composites are annual medians (the paper's); months and days come from files or a cache
            raise SourceError(f"input {spec.name!r}: {source.description} makes annual composites only, not "
                              f"{', '.join(str(d) for d in dates if not isinstance(d, int))}; give rasters per "
                              "date (a pattern with {date})")
        coverage[spec.name] = shares = source.check(spec, dates, region)
        if not any(shares.values()):
            bounds = tuple(round(v, 4) for v in as_geometry(region).bounds)
            raise SourceError(f"{spec.name}: {source.description} has no data over the region {bounds} in "
                              f"{year_span(list(shares))} (0.0 % of {_measured(shares)}); the map would be "
                              "empty: check the region, the source and --nodata")
    return coverage


def _measured(shares: dict[int, float]) -> str:
    return ("the region's bounding box under the scenes' footprints"
            if getattr(shares, "measured", "footprints") == "footprints" else "the region's sampled pixels")


def coverage_warnings(coverage: dict[str, dict[int, float]], inputs: Inputs) -> list[str]:
    """What the user should know before trusting the tiles: partial coverage, a year without data, values far
    from the training distribution, a mask switched off."""
    notes = list(inputs.notes)
    for layer, years in coverage.items():
        for year, share in sorted(years.items()):
            if share == 0:
                # not refused: the other years still make maps, but this year's tiles are all no data
                others = [y for y, v in years.items() if v > 0]
                notes.append(f"{layer} {year}: NO DATA over the region (0.0 % of {_measured(years)}); its tiles "
                             f"will be empty (no data) while {year_span(others)} have data; drop {year} from "
                             "--years or give a source that has it")
            elif share < 0.999:
                notes.append(f"{layer} {year}: the source covers {100 * share:.1f} % of {_measured(years)}; "
                             "the rest is written as no data")
        notes.extend(getattr(years, "notes", ()))
    for layer in sorted(inputs.absent):
        notes.append(f"{layer}: switched off (--mask none); the post step that uses it is skipped, so "
                     "false positives it would remove (e.g. bare land) stay")
    return notes
