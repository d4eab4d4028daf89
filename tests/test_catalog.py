"""The STAC catalog of a run (pipeline/catalog.py): valid offline, one item per tile and date with its
extensions, checksums that match the files, and the same catalog whether or not the run was resumed."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import odc.stac
import pystac
import pytest
import rasterio
from conftest import TEST_BLOCK, YEARS, region_box, write_region
from hypothesis import given
from hypothesis import strategies as st

from mapgen.pipeline.catalog import (
    CATALOG,
    STAC_DIR,
    check_href,
    class_name,
    classes,
    collection_id,
    label_span,
    multihash,
    validate_catalog,
)
from mapgen.pipeline.run import execute, prepare
from mapgen.workflows import load_product

PRODUCT = load_product("cbra")
EXTENSIONS = {"https://stac-extensions.github.io/projection/v2.0.0/schema.json",
              "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
              "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
              "https://stac-extensions.github.io/file/v2.1.0/schema.json"}


def catalog_files(out: Path) -> dict[str, str]:
    """Every file of the catalog under OUT, by its path relative to OUT."""
    found = {CATALOG: (out / CATALOG).read_text()}
    found.update({p.relative_to(out).as_posix(): p.read_text() for p in sorted((out / STAC_DIR).rglob("*"))
                  if p.is_file()})
    return found


@pytest.fixture()
def offline(monkeypatch) -> list[str]:
    """pystac's reads of URLs fail (and are recorded), so a validation that would fetch a schema fails."""
    fetched: list[str] = []
    read = pystac.stac_io.DefaultStacIO.read_text_from_href

    def local_only(self, href: str) -> str:
        if "://" in href and not href.startswith("file://"):
            fetched.append(href)
            raise OSError(f"no network in this test: {href}")
        return read(self, href)

    monkeypatch.setattr(pystac.stac_io.DefaultStacIO, "read_text_from_href", local_only)
    return fetched


@pytest.fixture(scope="module")
def finished(client, scene, checkpoint, tmp_path_factory) -> Path:
    """A finished CBRA run of 2 × 1 test blocks (one tile) × 3 years."""
    out = tmp_path_factory.mktemp("catalog") / "out"
    ctx, plan = prepare(PRODUCT, region_box(2, 1), YEARS, str(scene), out, checkpoint=str(checkpoint),
                        block_size=TEST_BLOCK)
    report = execute(client, ctx, plan)
    assert report.status == "finished", report.failed
    return out


def test_the_catalog_validates_against_the_core_schemas_without_the_network(finished, offline):
    # the root, one collection, one item per tile and year
    assert validate_catalog(finished / CATALOG) == 1 + 1 + len(YEARS)
    assert offline == []


def test_an_invalid_object_is_refused_by_the_validator(finished, tmp_path, offline):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished / STAC_DIR, copy / STAC_DIR)
    shutil.copy(finished / CATALOG, copy / CATALOG)
    item = next((copy / STAC_DIR / "cbra").glob("CBRA_*.json"))
    broken = json.loads(item.read_text())
    del broken["properties"]["start_datetime"]  # datetime is null: a range is then required
    item.write_text(json.dumps(broken))
    with pytest.raises(pystac.STACValidationError):
        validate_catalog(copy / CATALOG)
    assert offline == []


def test_every_tile_has_its_item_with_the_extensions(finished, checkpoint):
    catalog = pystac.Catalog.from_file(str(finished / CATALOG))
    (collection,) = catalog.get_children()
    assert collection.id == "cbra"
    items = {item.id: item for item in collection.get_items()}
    tiles = sorted(finished.glob("CBRA_*.tif"))
    assert sorted(items) == [t.stem for t in tiles] and len(tiles) == len(YEARS)
    sha = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    for tile in tiles:
        item = items[tile.stem]
        assert EXTENSIONS <= set(item.stac_extensions)
        year = int(tile.stem.split("_")[1])
        props = item.properties
        assert item.datetime is None
        assert props["start_datetime"] == f"{year}-01-01T00:00:00Z"
        assert props["end_datetime"] == f"{year}-12-31T23:59:59Z"
        assert props["mapgen:model"] == {"architecture": "stsr-seg", "checkpoint_sha256": sha}
        assert props["mapgen:version"] and set(props["mapgen:inputs"]) == {"s2", "built"}
        data = item.assets["data"]
        assert data.media_type == pystac.MediaType.COG and data.roles == ["data"]
        assert Path(data.get_absolute_href()) == tile.resolve()
        with rasterio.open(tile) as src:
            assert props["proj:code"] == "EPSG:4326"
            assert props["proj:shape"] == list(src.shape)
            assert props["proj:transform"] == list(src.transform)[:6]
            assert item.bbox == list(src.bounds)
            assert data.extra_fields["raster:bands"] == [{"nodata": src.nodata, "data_type": "uint8"}]
        body = tile.read_bytes()
        assert data.extra_fields["file:size"] == len(body)
        assert data.extra_fields["file:checksum"] == "1220" + hashlib.sha256(body).hexdigest()
        assert data.extra_fields["classification:classes"] == [
            {"value": 0, "name": "background", "title": "background", "color_hint": "000000"},
            {"value": 255, "name": "building_rooftop", "title": "building rooftop", "color_hint": "E4262C"},
            {"value": 1, "name": "no_data", "title": "no input data", "nodata": True}]
        assert Path(item.assets["style"].get_absolute_href()) == tile.with_suffix(".qml").resolve()


def test_the_collection_has_the_mosaics_and_the_tiles_extent(finished):
    collection = pystac.Collection.from_file(str(finished / STAC_DIR / "cbra" / "collection.json"))
    with rasterio.open(next(finished.glob("CBRA_*.tif"))) as src:
        assert collection.extent.spatial.bboxes == [list(src.bounds)]
    interval = collection.extent.temporal.intervals[0]
    assert interval == [datetime.datetime(YEARS[0], 1, 1, tzinfo=datetime.UTC),
                        datetime.datetime(YEARS[-1], 12, 31, 23, 59, 59, tzinfo=datetime.UTC)]
    for year in YEARS:
        mosaic = collection.assets[f"mosaic_{year}"]
        vrt = finished / f"CBRA_{year}.vrt"
        assert Path(mosaic.get_absolute_href()) == vrt.resolve()
        assert mosaic.extra_fields["file:checksum"] == multihash(hashlib.sha256(vrt.read_bytes()).hexdigest())
        assert Path(collection.assets[f"mosaic_{year}_style"].get_absolute_href()) == vrt.with_suffix(".qml").resolve()


def test_odc_stac_loads_the_maps_from_the_catalog_as_they_are(finished):
    """The field's STAC reader, given only the catalog, gets each date's map pixel for pixel, with its
    nodata and grid: what a user of the published catalog sees."""
    catalog = pystac.Catalog.from_file(str(finished / CATALOG))
    items = list(catalog.get_items(recursive=True))
    loaded = odc.stac.load(items, bands=["data"], groupby="time")
    assert loaded.time.dt.year.values.tolist() == YEARS
    assert loaded.data.attrs["nodata"] == 1 and loaded.odc.crs == "EPSG:4326"
    for year in YEARS:
        with rasterio.open(finished / f"CBRA_{year}.vrt") as src:
            assert loaded.odc.geobox.affine == src.transform
            np.testing.assert_array_equal(loaded.data.sel(time=str(year)).values[0], src.read(1))


def test_the_catalog_is_self_contained(finished):
    """Relative hrefs only, each to a file that is there: the folder can be moved or served as it is."""
    for name, text in catalog_files(finished).items():
        assert str(finished) not in text, name
        obj = json.loads(text)
        hrefs = [link["href"] for link in obj["links"]] + [a["href"] for a in obj.get("assets", {}).values()]
        assert not any(link["rel"] == "self" for link in obj["links"]), name
        for href in hrefs:
            assert not href.startswith("/") and "://" not in href, (name, href)
            assert ((finished / name).parent / href).resolve().is_file(), (name, href)


def test_the_same_command_again_writes_the_same_catalog_and_stac_href_publishes(client, scene, checkpoint,
                                                                                finished, tmp_path):
    """A run again over a finished one (everything skipped) leaves the catalog byte for byte as it was;
    `mapgen run --stac-href URL` gives absolute hrefs under URL, and without it the catalog is relative again."""
    from click.testing import CliRunner

    from mapgen.cli import main

    before = catalog_files(finished)
    region = write_region(tmp_path / "region.geojson", region_box(2, 1))
    args = ["run", "--product", "cbra", "--years", "2016-2018", "--region", str(region), "--source", str(scene),
            "--out", str(finished), "--checkpoint", str(checkpoint), "--block-size", TEST_BLOCK, "--no-progress",
            "--scheduler", client.scheduler.address]
    result = CliRunner().invoke(main, args + ["--stac-href", "https://maps.example.org/cbra/"])
    assert result.exit_code == 0, result.output
    assert "tiles written 0, skipped 3" in result.stderr
    published = catalog_files(finished)
    assert published.keys() == before.keys()
    for name, text in published.items():
        obj = json.loads(text)
        links = {link["rel"]: link["href"] for link in obj["links"]}
        assert links["self"] == f"https://maps.example.org/cbra/{name}"
        assert links["root"] == "https://maps.example.org/cbra/catalog.json"
        for asset in obj.get("assets", {}).values():
            assert asset["href"].startswith("https://maps.example.org/cbra/") and asset["href"].count("/") == 4
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert catalog_files(finished) == before


def test_a_stac_href_that_is_no_url_is_refused_before_any_work(region_file, scene, checkpoint, tmp_path):
    from conftest import invoke, run_args

    code, lines = invoke(run_args(region_file, scene, tmp_path / "out", checkpoint) + ["--stac-href", "maps/cbra"])
    assert code == 2 and len(lines) == 1, lines
    assert "--stac-href 'maps/cbra'" in lines[0] and "absolute URL" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("href", ["https://example.org/maps", "s3://bucket/maps/"])
def test_check_href_takes_absolute_urls(href):
    assert check_href(href) == href.rstrip("/")


@pytest.mark.parametrize("href", ["maps/cbra", "/srv/maps", "https://example.org/maps?x=1", "https:///maps"])
def test_check_href_refuses_anything_else(href):
    with pytest.raises(ValueError, match="absolute URL"):
        check_href(href)


DAYS = st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2100, 12, 31))


@given(DAYS, st.sampled_from(["year", "month", "day"]))
def test_a_label_spans_its_year_month_or_day(day, precision):
    label = {"year": f"{day:%Y}", "month": f"{day:%Y-%m}", "day": f"{day:%Y-%m-%d}"}[precision]
    start, end = label_span(label)
    assert start.tzinfo == datetime.UTC and start.time() == datetime.time(0, 0)
    assert end.time() == datetime.time(23, 59, 59)
    assert start.date() <= day <= end.date()
    after = end.date() + datetime.timedelta(days=1)
    before = start.date() - datetime.timedelta(days=1)
    # the span is the whole period and nothing more: the days either side are in another one
    key = {"year": lambda d: d.year, "month": lambda d: (d.year, d.month), "day": lambda d: d}[precision]
    assert key(start.date()) == key(end.date()) == key(day)
    assert key(after) != key(day) and key(before) != key(day)


@given(DAYS, DAYS)
def test_a_pair_spans_from_its_first_to_its_second_date(a, b):
    first, second = sorted((a, b))
    start, end = label_span(f"{first:%Y-%m}_{second:%Y-%m}")
    assert start == label_span(f"{first:%Y-%m}")[0] and end == label_span(f"{second:%Y-%m}")[1]


@pytest.mark.parametrize("product", ["cbra", "ugs", "fusu", "stsun"])
def test_classes_are_as_the_classification_extension_allows(product):
    """Names of letters, digits, - and _ (v2.0.0's pattern), the colour as 6 capital hex digits, no data
    marked; and one collection id per output."""
    spec = load_product(product)
    ids = {collection_id(spec, output) for output in spec.outputs}
    assert len(ids) == len(spec.outputs)
    for output in spec.outputs:
        found = [c.to_dict() for c in classes(output)]
        assert [c["value"] for c in found] == [*output.values, output.nodata]
        assert [c["title"] for c in found[:-1]] == [c.name for c in output.classes]
        assert found[-1]["nodata"] is True
        for c in found:
            assert re.fullmatch(r"[0-9A-Za-z\-_]+", c["name"]), c
            assert "color_hint" not in c or re.fullmatch(r"[0-9A-F]{6}", c["color_hint"]), c


@given(st.text(min_size=1, max_size=30))
def test_a_class_name_is_always_allowed(name):
    assert re.fullmatch(r"[0-9A-Za-z\-_]+", class_name(name))
