"""The STAC catalog of a run's maps, written beside them with pystac.

    OUT/catalog.json                          the root catalog (a static catalog)
    OUT/stac/{collection}/collection.json     one collection per product output ('cbra', 'fusu-landuse')
    OUT/stac/{collection}/{item}.json         one item per tile and date (or pair): the tile's file stem

An item is one COG, with the `proj` (EPSG, shape, transform), `raster` (dtype, nodata), `classification`
(values, names, colours, and which value is no data) and `file` (size, multihash sha256) extensions, the
map's time span, the model, mapgen's version and the inputs; its collection has the per-date VRTs as
assets. Nothing in it depends on when or how often the run was started (no timestamps; ids, order and
datetimes come from the plan and the maps' dates), so a resumed run writes the catalog an uninterrupted
one writes. Self-contained by default (relative hrefs); `href` gives absolute ones for publishing.
"""

from __future__ import annotations

import calendar
import datetime
import json
import re
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import pystac
import pystac.validation
import rasterio
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from mapgen.files import write_text
from mapgen.tiles import Tile
from mapgen.workflows import OutputSpec, Product

from .context import RunContext
from .store import file_digest, read_marker
from .styles import style_path
from .tasks import export_key

CATALOG = "catalog.json"
STAC_DIR = "stac"  # the collections and items, under OUT
LICENSE = "other"  # a product's terms are its own; STAC's word for "see the provider"


def check_href(href: str) -> str:
    """`href` (where OUT will be published, e.g. https://example.org/cbra) without a trailing slash; ValueError
    in one line unless it is an absolute URL."""
    parts = urlsplit(href)
    if not parts.scheme or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"--stac-href {href!r}: give the absolute URL the output folder is published at "
                         "(https://host/path)")
    return href.rstrip("/")


def label_span(label: str) -> tuple[datetime.datetime, datetime.datetime]:
    """The time a map's label stands for, in UTC: a year, a month or a day ('2019', '2018-08', '2018-08-15'),
    or from the start of the first to the end of the second date of a pair ('2018-08_2020-08')."""
    first, _, second = label.partition("_")

    def bounds(date: str) -> tuple[datetime.datetime, datetime.datetime]:
        year, month, day = (int(p) for p in (date.split("-") + ["0", "0"])[:3])
        start = datetime.date(year, month or 1, day or 1)
        end = (datetime.date(year, 12, 31) if not month else
               datetime.date(year, month, day or calendar.monthrange(year, month)[1]))
        utc = datetime.UTC
        return (datetime.datetime.combine(start, datetime.time(0, 0, 0), utc),
                datetime.datetime.combine(end, datetime.time(23, 59, 59), utc))

    return bounds(first)[0], bounds(second or first)[1]


def collection_id(product: Product, output: OutputSpec) -> str:
    """A collection per output: the product's name, and the output's for a product of several."""
    return f"{product.name}-{output.name}" if len(product.outputs) > 1 else product.name


def class_name(name: str) -> str:
    """A class name as the classification extension's `name` allows it (letters, digits, - and _)."""
    return re.sub(r"[^0-9A-Za-z_-]+", "_", name).strip("_") or "class"


def classes(spec: OutputSpec) -> list[Classification]:
    """The output's pixel values as classification classes: each class (its name as title, its colour as
    hint), and the no-data value marked as such."""
    out = [Classification.create(value=c.value, name=class_name(c.name), title=c.name,
                                 color_hint="{:02X}{:02X}{:02X}".format(*c.rgba[:3])) for c in spec.classes]
    out.append(Classification.create(value=spec.nodata, name="no_data", title="no input data", nodata=True))
    return out


def multihash(sha256: str) -> str:
    """A sha256 hex digest as the multihash `file:checksum` takes: 0x12 (sha2-256), 0x20 (32 bytes), digest."""
    return "1220" + sha256


def _tile_digest(ctx: RunContext, tile: Tile, output: OutputSpec, label: str, path: Path) -> tuple[int, str]:
    """(size, sha256) of a finished tile: its export marker's, which a finished run wrote after the file or
    verified before skipping it; the file is hashed again only if the marker is not about this file."""
    record = read_marker(ctx.run_dir, "export", export_key(tile, output, label))
    if record is not None and record.get("file") == path.name and record.get("size") == path.stat().st_size:
        return record["size"], record["sha256"]
    return file_digest(path)


def _run_fields(ctx: RunContext) -> dict[str, object]:
    """What made the maps, as fields of each item and collection."""
    return {"mapgen:version": version("mapgen"),
            "mapgen:model": {"architecture": ctx.model.architecture, "checkpoint_sha256": ctx.model.sha256},
            "mapgen:inputs": ctx.inputs.describe()}


def _item(ctx: RunContext, tile: Tile, output: OutputSpec, label: str, base: str) -> pystac.Item:
    path = ctx.tile_path(tile.row, tile.col, label, output)
    with rasterio.open(path) as src:
        crs, transform, shape, dtype, nodata = src.crs, src.transform, src.shape, src.dtypes[0], src.nodata
        bbox = list(src.bounds if crs.to_epsg() == 4326 else transform_bounds(crs, "EPSG:4326", *src.bounds))
    start, end = label_span(label)
    item = pystac.Item(id=path.stem, geometry=mapping(box(*bbox)), bbox=bbox, datetime=None,
                       start_datetime=start, end_datetime=end, properties=_run_fields(ctx))
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(epsg=crs.to_epsg(), shape=list(shape), transform=list(transform)[:6])
    asset = pystac.Asset(href=f"{base}/{path.name}", media_type=pystac.MediaType.COG, roles=["data"],
                         title=f"{output.band_description}, {label.replace('_', ' to ')}")
    item.add_asset("data", asset)
    RasterExtension.ext(asset, add_if_missing=True).apply(
        # an integer band's nodata as an integer (rasterio reads every nodata as a float)
        bands=[RasterBand.create(nodata=int(nodata) if float(nodata).is_integer() else nodata,
                                 data_type=DataType(dtype))])
    ClassificationExtension.ext(asset, add_if_missing=True).apply(classes(output))
    size, sha256 = _tile_digest(ctx, tile, output, label, path)
    FileExtension.ext(asset, add_if_missing=True).apply(size=size, checksum=multihash(sha256))
    item.add_asset("style", pystac.Asset(href=f"{base}/{style_path(path).name}", media_type=pystac.MediaType.XML,
                                         roles=["style"], title="QGIS style (QML)"))
    return item


def _collection(ctx: RunContext, output: OutputSpec, items: list[pystac.Item], base: str) -> pystac.Collection:
    product = ctx.product
    west, south, east, north = (f([i.bbox[k] for i in items]) for k, f in enumerate((min, min, max, max)))
    times = [label_span(label) for label in ctx.labels(output)]
    maps = "pair of dates" if output.per == "pair" else "date"
    collection = pystac.Collection(
        id=collection_id(product, output), title=f"{product.title}: {output.band_description}",
        description=f"{product.title}: {output.band_description}, one Cloud-Optimized GeoTIFF per tile and {maps}, "
                    f"made by mapgen." + (f" {product.reference}." if product.reference else ""),
        extent=pystac.Extent(pystac.SpatialExtent([[west, south, east, north]]),
                             pystac.TemporalExtent([[times[0][0], times[-1][1]]])),
        license=LICENSE, extra_fields=_run_fields(ctx))
    for label in ctx.labels(output):
        vrt = ctx.vrt_path(label, output)
        asset = pystac.Asset(href=f"{base}/{vrt.name}", media_type=pystac.MediaType.XML, roles=["data", "mosaic"],
                             title=f"mosaic of the tiles (GDAL VRT), {label.replace('_', ' to ')}")
        collection.add_asset(f"mosaic_{label}", asset)
        size, sha256 = file_digest(vrt)
        FileExtension.ext(asset, add_if_missing=True).apply(size=size, checksum=multihash(sha256))
        collection.add_asset(f"mosaic_{label}_style", pystac.Asset(
            href=f"{base}/{style_path(vrt).name}", media_type=pystac.MediaType.XML, roles=["style"],
            title=f"QGIS style (QML) of the mosaic, {label.replace('_', ' to ')}"))
    for item in items:
        collection.add_item(item)
    return collection


def build_catalog(ctx: RunContext, tiles: Sequence[Tile], *, href: str | None = None) -> pystac.Catalog:
    """The catalog of a finished run's `tiles` (every tile of the plan), its hrefs under `href` (published:
    absolute) or the output folder (self-contained: relative once written)."""
    base = check_href(href) if href else Path(ctx.out_dir).resolve().as_posix()
    product = ctx.product
    catalog = pystac.Catalog(id=f"mapgen-{product.name}", title=product.title,
                             description=f"{product.title}: the maps of a mapgen run, by output, tile and date.",
                             catalog_type=pystac.CatalogType.ABSOLUTE_PUBLISHED if href
                             else pystac.CatalogType.SELF_CONTAINED)
    catalog.set_self_href(f"{base}/{CATALOG}")
    for output in ctx.outputs:
        items = [_item(ctx, tile, output, label, base) for label in ctx.labels(output) for tile in tiles]
        collection = _collection(ctx, output, items, base)
        catalog.add_child(collection)
        folder = f"{base}/{STAC_DIR}/{collection.id}"
        collection.set_self_href(f"{folder}/collection.json")
        for item in items:
            item.set_self_href(f"{folder}/{item.id}.json")
            if not href:
                item.make_asset_hrefs_relative()
        if not href:
            collection.make_asset_hrefs_relative()
    return catalog


def write_catalog(ctx: RunContext, tiles: Sequence[Tile], *, href: str | None = None) -> Path:
    """Write the catalog of a finished run (see `build_catalog`) into the output folder, file by file
    atomically, items before the collections and the root that link them; files of an older catalog that
    this one does not have are removed. Returns the root catalog's path."""
    catalog = build_catalog(ctx, tiles, href=href)
    out = Path(ctx.out_dir)
    base = catalog.self_href.rsplit("/", 1)[0]
    absolute = catalog.catalog_type == pystac.CatalogType.ABSOLUTE_PUBLISHED
    objects: list[pystac.STACObject] = []
    for collection in catalog.get_children():
        objects += [*collection.get_items(), collection]
    written = set()
    for obj in [*objects, catalog]:
        path = out / obj.self_href[len(base) + 1:]
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(obj.to_dict(include_self_link=absolute, transform_hrefs=True), indent=2) + "\n"
        write_text(path, text, scratch_dir=ctx.scratch_dir, suffix=".partial")
        written.add(path)
    for stale in (out / STAC_DIR).rglob("*.json"):
        if stale not in written:
            stale.unlink()
    return out / CATALOG


def validate_catalog(path: str | Path) -> int:
    """Validate each file of the local catalog at `path`, as written, against the STAC core schemas that ship
    with pystac, so without the network (extension schemas are not shipped: their fields are not checked
    here); returns the number of objects. Raises pystac.STACValidationError naming the first invalid one."""
    # pystac.validation.validate_all would also fetch the extensions' schemas; this walk follows the same
    # child and item links with the core schemas only
    io, count = pystac.StacIO.default(), 0
    todo = [Path(path).resolve().as_posix()]
    while todo:
        href = todo.pop()
        obj = io.read_json(href)
        pystac.validation.validate_dict(obj, extensions=[], href=href)
        count += 1
        todo += [pystac.utils.make_absolute_href(link["href"], href) for link in obj.get("links", [])
                 if link.get("rel") in ("child", "item")]
    return count
