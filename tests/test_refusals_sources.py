"""Inputs that would make empty or wrong maps (invariant 8): refused in one line before any work, or warned
about (terminal and report) when legal but implausible. Coverage counts pixels with data, not footprints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from conftest import TEST_BLOCK, YEARS, assert_refused, region_box, run_args, write_region
from rasterio.enums import ColorInterp

from mapgen.pipeline.sources import BandMap, FileSource, SourceError, open_inputs
from mapgen.workflows import load_product

CBRA = load_product("cbra")
S2 = CBRA.input("s2")
RGBN_SCALE = 0.4 / 254  # reflectance 0–0.4 stretched over DN 1–255, as photo-like products do


def _copy(scene: Path, files: Path) -> str:
    """The scene's rasters as plain files, returned as a {year}/{layer} pattern source."""
    for year in YEARS:
        (files / str(year)).mkdir(parents=True, exist_ok=True)
        for layer in ("s2", "built"):
            shutil.copy(scene / str(year) / f"{layer}.tif", files / str(year) / f"{layer}.tif")
    return f"{files}/{{year}}/{{layer}}.tif"


def _rewrite(path: Path, edit=None, *, descriptions=None, photometric=None, dtype=None, nodata=None) -> Path:
    """Rewrite a raster in place as a plain GeoTIFF, its pixels through `edit`, with other band names."""
    with rasterio.open(path) as src:
        profile, data, own = src.profile, src.read(), src.descriptions
    data = edit(data) if edit else data
    profile.update(driver="GTiff", count=data.shape[0], dtype=dtype or data.dtype.name)
    if nodata is not None:
        profile.update(nodata=nodata)
    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
    if photometric:
        profile.update(photometric=photometric, alpha="UNSPECIFIED")
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype or data.dtype))
        for i, name in enumerate(descriptions or own, start=1):
            if name:
                dst.set_band_description(i, name)
    return path


def _nan(data):
    return np.full_like(data, np.nan)


def _left_half_nan(data):
    data = data.copy()
    data[:, :, : data.shape[2] * 2 // 3] = np.nan  # the region (2 of the scene's 3 block columns) included
    return data


def _truncate(path: Path, keep: float = 0.8) -> Path:
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])
    return path


def _rgbn(scene: Path, folder: Path, year: int, **kw) -> Path:
    """The scene's composite as an 8-bit red, green, blue, NIR GeoTIFF (photo-like), in EPSG:4326."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(scene / str(year) / "s2.tif") as src:
        profile, refl = src.profile, src.read()
    dn = np.where(np.isfinite(refl), np.clip(np.round(np.nan_to_num(refl) / RGBN_SCALE), 1, 255), 0)
    profile.update(driver="GTiff", dtype="uint8", nodata=0, **kw)
    path = folder / f"rgbn_{year}.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn[[2, 1, 0, 3]].astype(np.uint8))
    return path


# --- refused in one line, before work; OUT unchanged ---

NAMES_RGBN = ["red", "green", "blue", "nir"]


@pytest.mark.parametrize("case, phrases", [
    # no data anywhere over the region
    ("s2 all NaN", ["s2:", "no data over the region", "0.0 % of the region's sampled pixels", "empty"]),
    ("built all NaN", ["built:", "no data over the region"]),
    ("s2 NaN under the region", ["s2:", "no data over the region"]),
    ("s2 all nodata value", ["s2:", "no data over the region"]),
    ("s2 one band NaN everywhere", ["s2:", "no data over the region"]),
    ("built all nodata zero", ["built:", "no data over the region"]),
    # band names that contradict what the file is read as
    ("descriptions swir in band 4", ["s2 2016", "band 4 is 'swir16'", "read as B8 (nir)"]),
    ("descriptions coastal in band 1", ["s2 2016", "band 1 is 'coastal'", "read as B2"]),
    ("colour interpretation nir first", ["s2 2016", "band 1 is 'nir'", "read as B2",
                                         "--bands nir,green,red,blue"]),
    ("descriptions red green blue nir", ["s2 2016", "band 1 is 'red'", "read as B2 (blue)",
                                         "the product's order B2, B3, B4, B8", "--bands red,green,blue,nir"]),
    ("descriptions B4 B3 B2 B8", ["s2 2016", "band 1 is 'B4'", "read as B2", "--bands B4,B3,B2,B8"]),
    ("descriptions B08 first", ["s2 2016", "band 1 is 'B08'", "--bands B08,"]),
    ("descriptions NIR in band 2", ["s2 2016", "band 2 is 'NIR'", "read as B3"]),
    ("descriptions near-infrared in band 3", ["s2 2016", "band 3 is 'near-infrared'", "read as B4 (red)"]),
    ("one year described otherwise", ["s2 2017", "band 1 is 'red'"]),
    ("colour interpretation red green blue", ["s2 2016", "band 1 is 'red'", "read as B2"]),
    ("--bands contradicts descriptions", ["s2 2016", "band 1 is 'blue'", "read as red", "(--bands)",
                                          "--bands blue,green,red,nir"]),
    ("built described as red", ["built 2016", "band 1 is 'red'", "read as built"]),
    # broken rasters
    ("s2 truncated", ["s2 2017", "damaged or truncated", "s2.tif"]),
    ("s2 truncated a little", ["s2 2016", "damaged or truncated"]),
    ("built truncated", ["built 2018", "damaged or truncated", "built.tif"]),
    ("plain GeoTIFF truncated", ["s2 2017", "damaged or truncated"]),
    ("s2 cut after its header", ["s2 2018", "damaged or truncated"]),
    ("built truncated at 95 %", ["built 2016", "damaged or truncated"]),
    ("s2 pattern of text files", ["s2 2016", "not a raster GDAL can open", "s2.tif"]),
    ("s2 an HTML error page", ["s2 2017", "not a raster GDAL can open"]),
    ("s2 an empty file", ["s2 2018", "not a raster GDAL can open"]),
    ("built a JSON file", ["built 2016", "not a raster GDAL can open"]),
    ("built text file", ["built 2017", "not a raster GDAL can open"]),
])
def test_bad_file_input_is_refused(case, phrases, tmp_path, scene, region_file, checkpoint, out):
    source = _copy(scene, tmp_path / "files")
    s2 = {y: tmp_path / "files" / str(y) / "s2.tif" for y in YEARS}
    built = {y: tmp_path / "files" / str(y) / "built.tif" for y in YEARS}
    extra: list[str] = []
    if case == "s2 all NaN":
        for path in s2.values():
            _rewrite(path, _nan)
    elif case == "built all NaN":
        for path in built.values():
            _rewrite(path, _nan)
    elif case == "s2 NaN under the region":
        for path in s2.values():
            _rewrite(path, _left_half_nan)
    elif case == "s2 all nodata value":
        for path in s2.values():
            _rewrite(path, lambda d: np.full_like(d, 0.5))
        extra = ["--nodata", "0.5"]
    elif case == "s2 one band NaN everywhere":
        for path in s2.values():
            _rewrite(path, lambda d: np.concatenate([d[:3], np.full_like(d[3:], np.nan)]))
    elif case == "built all nodata zero":
        for path in built.values():
            _rewrite(path, lambda d: np.zeros_like(d), nodata=0)
    elif case == "colour interpretation nir first":
        for path in s2.values():
            _rewrite(path, descriptions=["", "", "", ""])
            with rasterio.open(path, "r+") as dst:
                dst.colorinterp = [ColorInterp.nir, ColorInterp.green, ColorInterp.red, ColorInterp.blue]
    elif case == "s2 cut after its header":
        _truncate(s2[2018], 0.02)
    elif case == "built truncated at 95 %":
        _truncate(built[2016], 0.95)
    elif case == "s2 an HTML error page":
        s2[2017].write_text("<!doctype html><title>503 Service Unavailable</title>")
    elif case == "s2 an empty file":
        s2[2018].write_bytes(b"")
    elif case == "built a JSON file":
        built[2016].write_text('{"type": "FeatureCollection", "features": []}')
    elif case.startswith("descriptions") or case == "one year described otherwise":
        names = {"descriptions red green blue nir": NAMES_RGBN, "descriptions B4 B3 B2 B8": ["B4", "B3", "B2", "B8"],
                 "descriptions B08 first": ["B08", "B03", "B04", "B02"],
                 "descriptions NIR in band 2": ["blue", "NIR", "red", "green"],
                 "descriptions near-infrared in band 3": ["B2", "B3", "near-infrared", "B4"],
                 "descriptions swir in band 4": ["B2", "B3", "B4", "swir16"],
                 "descriptions coastal in band 1": ["coastal", "blue", "green", "red"],
                 "one year described otherwise": NAMES_RGBN}[case]
        years = [2017] if case == "one year described otherwise" else YEARS
        for year in years:
            _rewrite(s2[year], descriptions=names)
    elif case == "colour interpretation red green blue":
        for path in s2.values():
            _rewrite(path, descriptions=["", "", "", ""], photometric="RGB")
            with rasterio.open(path, "r+") as dst:  # no descriptions: only the colour interpretation speaks
                for i in range(1, 5):
                    dst.set_band_description(i, "")
    elif case == "--bands contradicts descriptions":
        for path in s2.values():
            _rewrite(path, descriptions=["blue", "green", "red", "nir"])
        extra = ["--bands", "red,green,blue,nir"]
    elif case == "built described as red":
        for path in built.values():
            _rewrite(path, descriptions=["red"])
    elif case == "s2 truncated":
        _truncate(s2[2017])
    elif case == "s2 truncated a little":
        _truncate(s2[2016], 0.995)
    elif case == "built truncated":
        _truncate(built[2018], 0.7)
    elif case == "plain GeoTIFF truncated":
        _truncate(_rewrite(s2[2017]), 0.9)
    elif case == "s2 pattern of text files":
        for path in s2.values():
            path.write_text("B2,B3,B4,B8\n0.1,0.1,0.1,0.2\n")
    elif case == "built text file":
        built[2017].write_text("<html>404 Not Found</html>")
    assert_refused(run_args(region_file, source, out, checkpoint) + extra, out, *phrases)


def test_a_text_file_source_is_not_blamed_on_the_mask(tmp_path, region_file, checkpoint, out):
    notes = tmp_path / "notes.txt"
    notes.write_text("the scene is in /data/scene\n")
    assert_refused(run_args(region_file, notes, out, checkpoint), out, "source", "notes.txt",
                   "not a raster GDAL can open")


def test_a_year_pattern_of_text_files_is_refused(tmp_path, region_file, checkpoint, out):
    for year in YEARS:
        (tmp_path / f"rgbn_{year}.tif").write_text("not an image\n")
    pattern = tmp_path / "rgbn_{year}.tif"
    assert_refused(run_args(region_file, pattern, out, checkpoint) + ["--mask", "none"], out, "s2 2016",
                   "rgbn_2016.tif", "not a raster GDAL can open")


def test_uint8_described_rgbn_read_in_product_order_is_refused(tmp_path, scene, region_file, checkpoint, out):
    """An 8-bit file that says red, green, blue, nir (descriptions), given a scale but no --bands. Names that
    say nothing are no reason to refuse: GDAL's own red, green, blue, alpha tag of every 4-band 8-bit
    GeoTIFF, and descriptions such as 'band 1' or 'gray'."""
    source = FileSource("x", {2016: str(_rgbn(scene, tmp_path / "plain", 2016))}, BandMap(scale=RGBN_SCALE))
    with rasterio.open(source.files[2016]) as src:
        assert [c.name for c in src.colorinterp] == ["red", "green", "blue", "alpha"]
    source.check(S2, [2016], region_box().bounds)  # wrong order maybe, but nothing in the file says so
    vague = _rewrite(Path(shutil.copy(scene / "2016" / "s2.tif", tmp_path / "s2.tif")),
                     descriptions=["band 1", "Band_2", "gray", "undefined"])
    FileSource("x", {2016: str(vague)}).check(S2, [2016], region_box().bounds)

    for year in YEARS:
        path = _rgbn(scene, tmp_path / "img", year)
        with rasterio.open(path, "r+") as dst:
            for i, name in enumerate(NAMES_RGBN, start=1):
                dst.set_band_description(i, name)
    args = run_args(region_file, tmp_path / "img" / "rgbn_{year}.tif", out, checkpoint)
    assert_refused(args + ["--scale", str(RGBN_SCALE), "--mask", str(scene / "2016" / "built.tif")], out,
                   "band 1 is 'red'", "read as B2 (blue)", "--bands red,green,blue,nir")


def test_the_scale_hint_does_not_steer_8_bit_imagery_to_0_0001(tmp_path, scene):
    path = _rgbn(scene, tmp_path / "img", 2016)
    with pytest.raises(SourceError) as info:
        FileSource("x", {2016: str(path)}, BandMap(tuple(NAMES_RGBN))).check(S2, [2016], region_box().bounds)
    message = str(info.value)
    assert "holds uint8 numbers with no scale" in message and "k/255" in message and "not 0.0001" in message
    dn16 = _rewrite(Path(shutil.copy(scene / "2016" / "s2.tif", tmp_path / "s2.tif")),
                    lambda d: np.nan_to_num(d * 10000), dtype="uint16", nodata=0)
    with pytest.raises(SourceError, match=r"e\.g\. --scale 0\.0001 for Sentinel-2 DN"):
        FileSource("x", {2016: str(dn16)}).check(S2, [2016], region_box().bounds)


# --- warned about (terminal and report), not refused ---


def _prepare(tmp_path, inputs, checkpoint):
    """The run's context as `mapgen run` prepares it: its warnings are printed and recorded in the report."""
    from mapgen.pipeline.run import prepare

    return prepare(CBRA, region_box(), YEARS, inputs, tmp_path / "out", block_size=TEST_BLOCK,
                   checkpoint=str(checkpoint))[0]


def test_scale_0_0001_on_float_reflectance_is_warned_about(tmp_path, scene, checkpoint):
    inputs = open_inputs(CBRA, f"{scene}/{{year}}/{{layer}}.tif", YEARS, bands=BandMap(scale=1e-4))
    ctx = _prepare(tmp_path, inputs, checkpoint)
    line = next(w for w in ctx.warnings if "training distribution" in w)
    for phrase in ("s2 (", "band B2 median 1.", "e-05 in 2016–2018", "training mean 0.1417 ± 0.03957",
                   "a scale too small", "scale now 0.0001", "--scale 1 would bring the median to the mean",
                   "the file may hold reflectance already"):
        assert phrase in line, line
    assert "\n" not in line


def test_scale_0_0001_on_8_bit_imagery_is_warned_about(tmp_path, scene, checkpoint):
    for year in YEARS:
        _rgbn(scene, tmp_path / "img", year)
    inputs = open_inputs(CBRA, str(tmp_path / "img" / "rgbn_{year}.tif"), YEARS,
                         bands=BandMap(tuple(NAMES_RGBN), scale=1e-4), mask=str(scene / "2016" / "built.tif"))
    ctx = _prepare(tmp_path, inputs, checkpoint)
    line = next(w for w in ctx.warnings if "training distribution" in w)
    assert "band B2 median 0.00" in line and "a scale too small" in line and "8-bit imagery" in line, line
    suggested = float(line.split("--scale ")[1].split()[0])
    assert 0.5 * RGBN_SCALE < suggested < 2 * RGBN_SCALE, line  # the scale that brings the median to the mean


def test_dn_without_a_scale_is_warned_about(tmp_path, scene, checkpoint):
    pattern = _copy(scene, tmp_path / "files")
    for year in YEARS:
        _rewrite(tmp_path / "files" / str(year) / "s2.tif", lambda d: d * 10000)  # float DN, no scale
    ctx = _prepare(tmp_path, open_inputs(CBRA, pattern, YEARS), checkpoint)
    line = next(w for w in ctx.warnings if "training distribution" in w)
    assert "look like digital numbers" in line and "--scale 0.0001" in line, line


def test_bands_in_a_surprising_order_are_warned_about(tmp_path, scene, checkpoint):
    """NIR read as blue and blue as NIR: far from the training mean, and the swapped order fits much better."""
    pattern = _copy(scene, tmp_path / "files")
    for year in YEARS:
        _rewrite(tmp_path / "files" / str(year) / "s2.tif", lambda d: d[[3, 1, 2, 0]] * [[[1.4]], [[1]], [[1]],
                                                                                            [[0.6]]],
                 descriptions=["", "", "", ""])
    ctx = _prepare(tmp_path, open_inputs(CBRA, pattern, YEARS), checkpoint)
    line = next(w for w in ctx.warnings if "training distribution" in w)
    assert "bands in a surprising order" in line and "--bands nir,green,red,blue" in line, line


def test_a_year_without_data_is_warned_about_loudly(tmp_path, scene, checkpoint):
    pattern = _copy(scene, tmp_path / "files")
    _rewrite(tmp_path / "files" / "2017" / "s2.tif", _nan)
    ctx = _prepare(tmp_path, open_inputs(CBRA, pattern, YEARS), checkpoint)
    assert ctx.coverage["s2"] == {2016: 1.0, 2017: 0.0, 2018: 1.0}
    line = next(w for w in ctx.warnings if w.startswith("s2 2017"))
    assert "NO DATA over the region (0.0 % of the region's sampled pixels)" in line and "2016, 2018" in line


def test_coverage_counts_pixels_with_data(tmp_path, scene, checkpoint):
    """Half of the region's pixels are NaN: the footprint covers it all (1.0 before), the pixels half."""
    pattern = _copy(scene, tmp_path / "files")
    for year in YEARS:
        _rewrite(tmp_path / "files" / str(year) / "s2.tif",
                 lambda d: np.where(np.arange(d.shape[2]) < 80 + 371, np.nan, d).astype(d.dtype))
    ctx = _prepare(tmp_path, open_inputs(CBRA, pattern, YEARS), checkpoint)
    for year in YEARS:
        assert 0.45 < ctx.coverage["s2"][year] < 0.55, ctx.coverage
        assert ctx.coverage["built"][year] == 1.0
    line = next(w for w in ctx.warnings if w.startswith("s2 2016"))
    assert "the source covers 5" in line and "% of the region's sampled pixels" in line, line
    assert json.loads(json.dumps(ctx.coverage))["s2"]["2016"] < 0.55  # as the report records it


def test_the_cache_counts_pixels_with_data(tmp_path):
    from fractions import Fraction

    from mapgen.pipeline.sources.cache import CachedSource, InputCache
    from mapgen.tiles import Grid

    grid, region = Grid(Fraction(1, 11130)), region_box(2, 1)
    extent = grid.box(region.bounds)
    cache = InputCache.create(tmp_path / "cache", product="cbra", grid=grid, extent=extent, years=YEARS,
                              chunk=371, inputs={"s2": S2.bands}, sources={"s2": "x"}, region=region.bounds, cells=1)
    data = np.full((4, extent.height, extent.width), 0.15, dtype=np.float32)
    data[:, :, extent.width // 2:] = np.nan
    cache.write("s2", 2016, extent, data)
    cache.marker("done").parent.mkdir(parents=True)
    cache.marker("done").write_text("")
    source = CachedSource.open(tmp_path / "cache")["s2"]
    coverage = source.check(S2, YEARS, region)
    assert 0.45 < coverage[2016] < 0.55 and coverage[2017] == coverage[2018] == 0.0


# --- regions across the antimeridian ---


def _plan(region: Path) -> dict:
    from mapgen.cli import main

    result = CliRunner().invoke(main, ["plan", "--product", "cbra", "--years", "2020", "--region", str(region),
                                       "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_region_across_the_antimeridian_is_split(tmp_path):
    ring = [[179.97, -17.0], [-179.97, -17.0], [-179.97, -16.9], [179.97, -16.9], [179.97, -17.0]]
    region = tmp_path / "fiji.geojson"
    region.write_text(json.dumps({"type": "Feature", "properties": {},
                                  "geometry": {"type": "Polygon", "coordinates": [ring]}}))
    plan = _plan(region)
    assert plan["blocks"] == 2 and plan["tiles"] == 2, plan["blocks"]  # was 3,600 blocks: a 360° band
    assert plan["tile_names"]["2020"] == ["CBRA_2020_W180S15.tif", "CBRA_2020_E177.5S15.tif"]
    assert 60 < plan["region_area_km2"] < 80  # 0.06° × 0.1° at 17° S, not the whole band
    # a region wider than 180° whose every edge is shorter than 180°: a real wide region, not a crossing
    wide = [[-100, 0], [0, 0], [100, 0], [100, 0.05], [0, 0.05], [-100, 0.05], [-100, 0]]
    plan = _plan(write_region(tmp_path / "wide.geojson", shapely.Polygon(wide)))
    assert plan["bounds"] == [-100, 0, 100, 0.05] and plan["blocks"] == 2000


def test_sources_are_checked_on_both_sides_of_the_antimeridian(tmp_path):
    """A file on each side; the split region is sampled per side (its bounding box is the whole band)."""
    from mapgen.tiles import load_region

    ring = [[179.97, -17.0], [-179.97, -17.0], [-179.97, -16.9], [179.97, -16.9], [179.97, -17.0]]
    path = tmp_path / "fiji.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    region = load_region(path)
    east = tmp_path / "east.tif"
    with rasterio.open(east, "w", driver="GTiff", width=40, height=120, count=4, dtype="float32", crs="EPSG:4326",
                       transform=rasterio.transform.from_origin(179.96, -16.89, 0.001, 0.001)) as dst:
        dst.write(np.full((4, 120, 40), 0.15, dtype=np.float32))
    coverage = FileSource("east", {2020: str(east)}).check(S2, [2020], region)
    assert 0.4 < coverage[2020] < 0.6  # the east half has data, the west half none
