"""STAC scenes: a real static catalog of cloudy Sentinel-2-like scenes, read by pystac + odc-stac."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import YEARS, region_box

from mapgen.pipeline.sources import FileSource, SourceError, StacScenes, open_inputs
from mapgen.pipeline.sources import stac as stac_module
from mapgen.synthetic.scenes import write_scene_catalog
from mapgen.tiles import Grid
from mapgen.workflows import load_product

CBRA = load_product("cbra")
S2 = CBRA.input("s2")
GRID = Grid(Fraction(1, 11130))
BOUNDS = region_box(3, 3).bounds
DN_STEP = 1e-4  # the scenes hold reflectance × 10000 as integers


@pytest.fixture(scope="session")
def scenes(scene, tmp_path_factory) -> Path:
    return write_scene_catalog(scene, tmp_path_factory.mktemp("scenes"), YEARS, per_year=3, seed=5)


def test_the_catalog_has_cloudy_scenes_and_one_over_the_limit(scenes):
    src = StacScenes(str(scenes))
    every = StacScenes(str(scenes), cloud_cover=100.0)
    for year in YEARS:
        kept, all_ = src.search(BOUNDS, year), every.search(BOUNDS, year)
        assert len(kept) == 3 and len(all_) == 4
        covers = [it.properties["eo:cloud_cover"] for it in all_]
        assert max(covers) >= 20 and all(0 < c < 20 for c in sorted(covers)[:3])
    assert src.search((0.0, 0.0, 1.0, 1.0), YEARS[0]) == []  # far away


def test_median_of_cloud_masked_scenes_is_the_composite(scene, scenes):
    box = GRID.box(region_box(2, 2).bounds)
    for year in YEARS[:2]:
        got = StacScenes(str(scenes)).read(S2, year, GRID, box)
        expect = FileSource("s2", {year: str(scene / str(year) / "s2.tif")}).read(S2, year, GRID, box)
        assert got.shape == expect.shape == (4, *box.shape)
        assert np.isfinite(got).all()
        assert np.abs(got - expect).max() <= DN_STEP / 2 + 1e-6


def test_without_the_cloud_mask_or_the_cloud_filter_the_composite_is_wrong(scene, scenes, monkeypatch):
    box = GRID.box(region_box(2, 2).bounds)
    year = YEARS[0]
    expect = FileSource("s2", {year: str(scene / str(year) / "s2.tif")}).read(S2, year, GRID, box)
    hazy = StacScenes(str(scenes), cloud_cover=100.0).read(S2, year, GRID, box)
    assert (np.abs(hazy - expect) > 0.01).any(axis=0).mean() > 0.005
    monkeypatch.setattr(stac_module, "SCL_NOT_CLEAR", (0,))  # the authors' mistake: a mask with no effect
    cloudy = StacScenes(str(scenes)).read(S2, year, GRID, box)
    assert (np.abs(cloudy - expect) > 0.01).any(axis=0).mean() > 0.005


def test_a_scene_catalog_resolves_to_stac_scenes_and_needs_a_mask_source(scene, scenes):
    with pytest.raises(SourceError, match="no 'built' input for the 'built' mask step.*--mask"):
        open_inputs(CBRA, str(scenes), YEARS)
    inputs = open_inputs(CBRA, str(scenes), YEARS, mask=f"{scene}/{{year}}/built.tif")
    assert isinstance(inputs.source("s2"), StacScenes)
    assert isinstance(inputs.source("built"), FileSource)
    assert "instead of the source's own" in inputs.notes[0]
    off = open_inputs(CBRA, str(scenes), YEARS, mask="none")
    assert off.absent == {"built"} and off.describe()["built"] == "none"


def _copy(scenes: Path, tmp_path: Path) -> Path:
    shutil.copytree(scenes.parent, tmp_path / "copy")
    return tmp_path / "copy" / "catalog.json"


@pytest.mark.parametrize("case, message", [
    ("empty", "the STAC catalog has no items"),
    ("year", "no sentinel-2-l2a scene with eo:cloud_cover < 20 % over .* in 2015"),
    ("band", "has no asset for band B8"),
    ("mask", "neither a scene classification \\(SCL\\) nor a QA60 asset"),
    ("broken", "not a readable STAC catalog"),
])
def test_bad_catalogs_are_refused_in_one_line(scenes, tmp_path, case, message):
    path = _copy(scenes, tmp_path)
    years = [2015, *YEARS] if case == "year" else YEARS
    items = sorted(path.parent.rglob("S2X_*_L2A.json"))
    if case == "empty":
        for item in items:
            item.unlink()
        collection = path.parent / "sentinel-2-l2a" / "collection.json"
        data = json.loads(collection.read_text())
        data["links"] = [link for link in data["links"] if link["rel"] != "item"]
        collection.write_text(json.dumps(data))
    elif case in ("band", "mask"):
        for item in items:
            data = json.loads(item.read_text())
            del data["assets"]["nir" if case == "band" else "scl"]
            item.write_text(json.dumps(data))
    elif case == "broken":
        path.write_text("{ not json")
    stac_module._static_items.cache_clear()
    with pytest.raises(SourceError, match=message) as info:
        inputs = open_inputs(CBRA, str(path), years, mask="none")
        inputs.source("s2").check(S2, years, BOUNDS)
    assert "\n" not in str(info.value)


def test_an_unreachable_stac_api_is_refused_in_one_line():
    src = open_inputs(CBRA, "http://127.0.0.1:9/v1", YEARS, mask="none").source("s2")
    with pytest.raises(SourceError, match=r"STAC http://127.0.0.1:9/v1: cannot be searched") as info:
        src.check(S2, YEARS, BOUNDS)
    assert "\n" not in str(info.value)
