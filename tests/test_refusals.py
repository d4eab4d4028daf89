"""Invariant 8: bad input stops with one line that says what and where, before any work, losing nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from conftest import TEST_BLOCK, region_box, write_region

from mapgen.pipeline.cli import main


@pytest.fixture()
def out(tmp_path) -> Path:
    """An output folder that already holds a finished tile, which a refusal must leave alone."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "CBRA_2015_E115N40.tif").write_bytes(b"a tile from an earlier run")
    return folder


def invoke(args: list[str]) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()]


def run_args(region, source, out, checkpoint, years="2016-2018", product="cbra") -> list[str]:
    return ["run", "--product", product, "--years", years, "--region", str(region), "--source", str(source),
            "--out", str(out), "--checkpoint", str(checkpoint), "--block-size", TEST_BLOCK, "--no-progress"]


def assert_refused(args: list[str], out: Path, *phrases: str) -> None:
    before = sorted(p.name for p in out.iterdir())
    code, lines = invoke(args)
    assert code == 2, lines
    assert len(lines) == 1, lines
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert sorted(p.name for p in out.iterdir()) == before  # nothing started, nothing lost
    assert (out / "CBRA_2015_E115N40.tif").read_bytes() == b"a tile from an earlier run"


def test_invalid_region(tmp_path, scene, checkpoint, out):
    bowtie = tmp_path / "bowtie.geojson"
    bowtie.write_text(json.dumps({"type": "Polygon", "coordinates": [[[116, 39], [117, 40], [117, 39],
                                                                        [116, 40], [116, 39]]]}))
    assert_refused(run_args(bowtie, scene, out, checkpoint), out, "bowtie.geojson", "invalid geometry")


def test_empty_region(tmp_path, scene, checkpoint, out):
    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert_refused(run_args(empty, scene, out, checkpoint), out, "empty.geojson", "no features")


def test_region_outside_every_source(tmp_path, scene, checkpoint, out):
    far = write_region(tmp_path / "far.geojson", region_box(west=10.0, south=50.0))
    assert_refused(run_args(far, scene, out, checkpoint), out, "lies outside every 's2' raster")


def test_unknown_product(region_file, scene, checkpoint, out):
    assert_refused(run_args(region_file, scene, out, checkpoint, product="cbrx"), out,
                   "unknown product 'cbrx'", "cbra")


def test_years_the_source_lacks(region_file, scene, checkpoint, out):
    assert_refused(run_args(region_file, scene, out, checkpoint, years="2015-2017"), out,
                   "no 's2' raster for 2015", "2016–2018")


def copy_as_files(scene: Path, files: Path) -> str:
    """The scene's rasters as plain files, returned as a {year}/{layer} pattern source."""
    for year in (2016, 2017, 2018):
        (files / str(year)).mkdir(parents=True)
        for layer in ("s2", "built"):
            shutil.copy(scene / str(year) / f"{layer}.tif", files / str(year) / f"{layer}.tif")
    return f"{files}/{{year}}/{{layer}}.tif"


def test_raster_with_wrong_band_count(tmp_path, region_file, scene, checkpoint, out):
    files = tmp_path / "files"
    pattern = copy_as_files(scene, files)
    bad = files / "2017" / "s2.tif"
    with rasterio.open(scene / "2017" / "s2.tif") as src:
        profile, data = src.profile, src.read([1, 2, 3])
    profile.update(count=3, driver="GTiff")
    with rasterio.open(bad, "w", **profile) as dst:
        dst.write(data)
    assert_refused(run_args(region_file, pattern, out, checkpoint), out, "s2 2017", str(bad), "3 bands", "needs 4")


def test_unreadable_raster(tmp_path, region_file, scene, checkpoint, out):
    files = tmp_path / "files"
    pattern = copy_as_files(scene, files)
    (files / "2018" / "built.tif").write_bytes(b"not a raster")
    assert_refused(run_args(region_file, pattern, out, checkpoint), out, "built 2018", "cannot be opened")


def test_checkpoint_with_wrong_hash(tmp_path, region_file, scene, checkpoint, out):
    bad = tmp_path / "tampered.safetensors"
    shutil.copy(checkpoint, bad)
    shutil.copy(checkpoint.with_suffix(".json"), bad.with_suffix(".json"))
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    assert_refused(run_args(region_file, scene, out, bad), out, "tampered.safetensors", "sha256")


def test_unknown_source(tmp_path, region_file, checkpoint, out):
    assert_refused(run_args(region_file, tmp_path / "nowhere", out, checkpoint), out, "nowhere",
                   "no such file")


def test_bad_years(region_file, scene, checkpoint, out):
    code, lines = invoke(run_args(region_file, scene, out, checkpoint, years="2021-2016"))
    assert code == 2 and any("2021-2016" in line for line in lines)


def test_plan_prints_counts(region_file):
    result = CliRunner().invoke(main, ["plan", "--product", "cbra", "--years", "2016-2021", "--region",
                                       str(region_file), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["tiles"] == 1 and summary["blocks"] == 1 and summary["block_years"] == 6
    assert summary["tile_names"]["2016"] == ["CBRA_2016_E115N40.tif"]
    assert summary["output_pixels_per_year"] == 4452**2
    assert np.isclose(summary["area_km2"], 11.13 * 11.13 * np.cos(np.radians(39.55)), rtol=0.01)
