"""ESA WorldCover's built-up class as the mask input (`--mask worldcover`): a static catalog on disk in
Planetary Computer's `esa-worldcover` layout (3° tiles, asset `map`, versions 2020 v100 and 2021 v200),
read by pystac + odc-stac onto the product's lattice."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_BLOCK, YEARS, assert_refused, region_box, run_args

from mapgen.pipeline.run import prepare
from mapgen.pipeline.sources import SourceError, WorldCoverSource, check_inputs, coverage_warnings, open_inputs
from mapgen.pipeline.sources import stac as stac_module
from mapgen.pipeline.sources.planetary import PC_STAC
from mapgen.synthetic.scenes import write_scene_catalog
from mapgen.synthetic.worldcover import BUILT_UP, NO_DATA, PIXELS_PER_DEGREE, classes_at, write_worldcover_catalog
from mapgen.tiles import Box, Grid
from mapgen.workflows import load_product

CBRA = load_product("cbra")
BUILT = CBRA.input("built")
GRID = Grid(Fraction(1, 11130))
SEAM = (116.985, 38.985, 117.015, 39.015)  # where four WorldCover tiles meet (N36E114 … N39E117)


@pytest.fixture(scope="session")
def seam(tmp_path_factory) -> Path:
    return write_worldcover_catalog(tmp_path_factory.mktemp("worldcover-seam"), SEAM)


@pytest.fixture(scope="session")
def worldcover(tmp_path_factory) -> Path:
    """Over the test scene's region."""
    return write_worldcover_catalog(tmp_path_factory.mktemp("worldcover"), region_box(3, 3).bounds)


def _expected(box, year: int) -> tuple[np.ndarray, np.ndarray]:
    """Built-up (1.0 / 0.0 / NaN) under each pixel centre of `box`, and where the centre is clear of a
    WorldCover pixel edge (on an edge, which neighbour nearest resampling picks is GDAL's rounding)."""
    t = GRID.transform(box)
    xs = t.c + t.a * (np.arange(box.width) + 0.5)
    ys = t.f + t.e * (np.arange(box.height) + 0.5)
    lon, lat = np.meshgrid(xs, ys)
    cls = classes_at(lon, lat, year)
    expect = np.where(cls == NO_DATA, np.nan, (cls == BUILT_UP).astype(np.float32))
    frac = lambda v: np.abs(v * PIXELS_PER_DEGREE - np.round(v * PIXELS_PER_DEGREE))  # noqa: E731
    clear = (frac(lon + 180) > 1e-3) & (frac(90 - lat) > 1e-3)
    return expect, clear


def test_the_built_up_class_lands_on_the_lattice_across_tiles(seam):
    src = WorldCoverSource.parse(f"worldcover:{seam}")
    box = GRID.box((116.99, 38.99, 117.01, 39.01))
    assert len(src.search(GRID.bounds(box), 2021)) == 4  # the box meets four tiles
    maps = {}
    for year in (2020, 2021):
        got = src.read(BUILT, year, GRID, box)
        assert got.shape == (1, *box.shape) and got.dtype == np.float32
        expect, clear = _expected(box, year)
        assert clear.mean() > 0.99
        np.testing.assert_array_equal(got[0][clear], expect[clear])
        assert {0.0, 1.0} <= set(np.unique(got[np.isfinite(got)])) and np.isnan(got).any()
        maps[year] = got
    assert (np.nan_to_num(maps[2020], nan=-1) != np.nan_to_num(maps[2021], nan=-1)).mean() > 0.3


def test_other_years_use_the_nearest_version_and_say_so(seam):
    src = WorldCoverSource.parse(f"worldcover:{seam}")
    box = GRID.box((116.99, 38.99, 117.01, 39.01))
    np.testing.assert_array_equal(src.read(BUILT, 2016, GRID, box), src.read(BUILT, 2020, GRID, box))
    np.testing.assert_array_equal(src.read(BUILT, 2023, GRID, box), src.read(BUILT, 2021, GRID, box))
    coverage = src.check(BUILT, [2019, 2020, 2021, 2022], SEAM)
    assert dict(coverage) == {2019: 1.0, 2020: 1.0, 2021: 1.0, 2022: 1.0}
    assert len(coverage.notes) == 2
    assert "ESA WorldCover has 2020–2021 only; 2019 uses WorldCover 2020" in coverage.notes[0]
    assert "2022 uses WorldCover 2021" in coverage.notes[1]


def test_mask_worldcover_resolves_and_its_note_reaches_the_run(scene, worldcover, checkpoint, tmp_path):
    default = open_inputs(CBRA, f"{scene}/{{year}}/s2.tif", YEARS, mask="worldcover").source("built")
    assert isinstance(default, WorldCoverSource) and default.href == PC_STAC and default.signed
    inputs = open_inputs(CBRA, f"{scene}/{{year}}/s2.tif", YEARS, mask=f"worldcover:{worldcover.parent}")
    src = inputs.source("built")
    assert isinstance(src, WorldCoverSource) and src.href == str(worldcover) and not src.signed
    coverage = check_inputs(inputs, CBRA, YEARS, region_box())
    assert coverage["built"] == {2016: 1.0, 2017: 1.0, 2018: 1.0}
    notes = coverage_warnings(coverage, inputs)
    assert any("ESA WorldCover built-up (class 50)" in n and "instead of the source's own" in n for n in notes)
    assert any("2016–2018 use WorldCover 2020" in n for n in notes), notes
    ctx = prepare(CBRA, region_box(), YEARS, inputs, tmp_path / "out", block_size=TEST_BLOCK,
                  checkpoint=str(checkpoint))[0]
    assert any("2016–2018 use WorldCover 2020" in w for w in ctx.warnings), ctx.warnings
    manifest = json.loads((tmp_path / "out" / "mapgen-run" / "manifest.json").read_text())
    assert "worldcover" in json.dumps(manifest)


def _copy(catalog: Path, tmp_path: Path) -> Path:
    shutil.copytree(catalog.parent, tmp_path / "copy")
    stac_module._static_items.cache_clear()
    return tmp_path / "copy" / "catalog.json"


def test_a_catalog_without_the_map_asset_is_refused_in_one_line(worldcover, scene, region_file, checkpoint, out,
                                                                tmp_path):
    path = _copy(worldcover, tmp_path)
    for item in path.parent.rglob("ESA_WorldCover_*.json"):
        data = json.loads(item.read_text())
        data["assets"]["input_quality"] = data["assets"].pop("map")
        item.write_text(json.dumps(data))
    args = run_args(region_file, f"{scene}/{{year}}/s2.tif", out, checkpoint) + ["--mask", f"worldcover:{path}"]
    assert_refused(args, out, f"WorldCover {path}", "has no 'map' asset", "the WorldCover class map",
                   "its assets: input_quality")


@pytest.mark.parametrize("case, phrases", [
    ("scenes", ("no item of collection esa-worldcover", "the catalog has sentinel-2-l2a",
                "give an ESA WorldCover catalog")),
    ("far", ("no esa-worldcover tile over the region",)),
    ("missing", ("no such STAC catalog",)),
])
def test_other_bad_worldcover_masks_are_refused_in_one_line(case, phrases, worldcover, scene, region_file, checkpoint,
                                                            out, tmp_path):
    if case == "scenes":
        where = str(write_scene_catalog(scene, tmp_path / "scenes", YEARS[:1], per_year=1))
    elif case == "far":
        where = str(write_worldcover_catalog(tmp_path / "far", (10.01, 40.01, 10.02, 40.02)))
    else:
        where = str(tmp_path / "nowhere" / "catalog.json")
    args = run_args(region_file, f"{scene}/{{year}}/s2.tif", out, checkpoint) + ["--mask", f"worldcover:{where}"]
    assert_refused(args, out, *phrases)


def test_a_worldcover_source_with_the_wrong_band_count_is_refused(seam):
    two = BUILT.__class__(**{**BUILT.__dict__, "bands": ("a", "b")})
    with pytest.raises(SourceError, match="WorldCover gives one band"):
        WorldCoverSource.parse(f"worldcover:{seam}").check(two, [2020], SEAM)


def test_a_run_masked_by_worldcover_keeps_rooftops_only_near_built_up(client, scene, worldcover, checkpoint, tmp_path):
    """End to end on the cluster: the source travels to the workers, and the unchanged mask step keeps a rooftop
    only where the bilinear built-up layer reaches 0.2, i.e. next to a built-up WorldCover pixel, and writes no
    data where WorldCover has none."""
    import rasterio

    from mapgen.pipeline.run import execute

    inputs = open_inputs(CBRA, f"{scene}/{{year}}/s2.tif", YEARS[:1], mask=f"worldcover:{worldcover}")
    ctx, plan = prepare(CBRA, region_box(), YEARS[:1], inputs, tmp_path / "out", block_size=TEST_BLOCK,
                        checkpoint=str(checkpoint))
    report = execute(client, ctx, plan)
    assert not report.failed, report.failed
    assert report.inputs["built"].startswith("ESA WorldCover built-up")
    assert any("2016 uses WorldCover 2020" in w for w in report.warnings), report.warnings
    (tile,) = sorted((tmp_path / "out").glob("CBRA_2016_*.tif"))
    with rasterio.open(tile) as src:
        codes, bounds = src.read(1), src.bounds
    height, width = codes.shape[0] // 4, codes.shape[1] // 4  # the tile's input pixels (4 × 4 output px each)
    # with a one-pixel halo: the mask step reads its neighbours past the tile's edge too
    halo = Box(round((90 - bounds.top) * 11130) - 1, round((bounds.left + 180) * 11130) - 1, height + 2, width + 2)
    with_halo = inputs.source("built").read(BUILT, 2016, GRID, halo)[0]
    built = with_halo[1:-1, 1:-1]
    # an input pixel next to (or on) a built-up one: where the upsampled layer can reach 0.2
    near = np.zeros_like(built, bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            near |= np.nan_to_num(with_halo[dy:dy + height, dx:dx + width]) == 1
    per_output = lambda a: np.repeat(np.repeat(a, 4, axis=0), 4, axis=1)  # noqa: E731
    rooftop = codes == 255
    assert rooftop.any() and (codes == 0).any()
    assert not (rooftop & ~per_output(near)).any()
    assert (codes[per_output(np.isnan(built))] == 1).all()  # WorldCover's no data is the tile's no data
