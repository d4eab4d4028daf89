"""QGIS styles of a run's maps (pipeline/styles.py): a paletted renderer with every class by name and colour,
no data and a binary map's background transparent, written beside each raster."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from mapgen.pipeline.styles import qml, style_path, transparent_values, write_styles
from mapgen.workflows import load_product

PRODUCTS = ["cbra", "ugs", "fusu"]


def outputs():
    return [(name, spec) for name in PRODUCTS for spec in load_product(name).outputs]


def _renderer(text: str) -> ET.Element:
    root = ET.fromstring(text.split("\n", 1)[1])  # past the DOCTYPE line
    assert root.tag == "qgis"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None
    return renderer


@pytest.mark.parametrize(("product", "spec"), outputs(), ids=lambda v: getattr(v, "name", v) or "map")
def test_the_palette_names_every_class_in_its_colour(product, spec):
    renderer = _renderer(qml(spec))
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    assert renderer.get("nodataColor") == ""  # no data is not drawn
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [int(e.get("value")) for e in entries] == [c.value for c in spec.classes]
    assert [e.get("label") for e in entries] == [c.name for c in spec.classes]
    assert [e.get("color") for e in entries] == [c.color[:7].lower() for c in spec.classes]
    assert spec.nodata not in {int(e.get("value")) for e in entries}


@pytest.mark.parametrize(("product", "spec"), outputs(), ids=lambda v: getattr(v, "name", v) or "map")
def test_only_a_binary_maps_background_is_transparent(product, spec):
    entries = _renderer(qml(spec)).findall("colorPalette/paletteEntry")
    alpha = {int(e.get("value")): int(e.get("alpha")) for e in entries}
    if len(spec.classes) == 2:
        background, found = spec.classes
        assert transparent_values(spec) == {background.value}
        assert alpha[background.value] == 0 and alpha[found.value] == found.rgba[3] > 0
    else:
        assert transparent_values(spec) == frozenset()
        assert alpha == {c.value: c.rgba[3] for c in spec.classes}


def test_cbra_draws_rooftops_over_what_lies_under_them():
    (spec,) = load_product("cbra").outputs
    alpha = {int(e.get("value")): int(e.get("alpha")) for e in _renderer(qml(spec)).iter("paletteEntry")}
    assert alpha == {0: 0, 255: 255}


def test_class_codes_are_not_blended():
    (spec,) = load_product("cbra").outputs
    root = ET.fromstring(qml(spec).split("\n", 1)[1])
    resampling = root.find("pipe/provider/resampling")
    assert resampling.get("zoomedInResamplingMethod") == resampling.get("zoomedOutResamplingMethod") == \
        "nearestNeighbour"


def test_a_style_lies_beside_each_raster_and_says_the_same(tmp_path):
    (spec,) = load_product("cbra").outputs
    (tmp_path / "a.b").mkdir()
    (tmp_path / "tmp").mkdir()
    rasters = [tmp_path / "CBRA_2019.vrt", tmp_path / "CBRA_2019_E115N40.tif", tmp_path / "a.b" / "UGS.tif"]
    written = write_styles(rasters, spec, scratch_dir=tmp_path / "tmp")
    assert written == [tmp_path / "CBRA_2019.qml", tmp_path / "CBRA_2019_E115N40.qml", tmp_path / "a.b/UGS.qml"]
    assert all(style_path(r) == w for r, w in zip(rasters, written, strict=True))
    assert {p.read_text() for p in written} == {qml(spec)}
    assert not list((tmp_path / "tmp").glob("*"))  # no temporaries left
