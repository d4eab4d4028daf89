"""Files of any kind: declared band order, scale and offset; NaN and nodata; partial coverage; refusals."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import YEARS, region_box
from hypothesis import given, settings
from hypothesis import strategies as st

from mapgen.pipeline.sources import BandMap, FileSource, SourceError, coverage_warnings, open_inputs
from mapgen.tiles import Grid
from mapgen.workflows import load_product

CBRA = load_product("cbra")
S2 = CBRA.input("s2")
GRID = Grid(Fraction(1, 11130))


def _write(path: Path, data: np.ndarray, *, nodata=None, crs="EPSG:4326", transform=None, scales=None) -> Path:
    count, h, w = data.shape
    transform = transform or GRID.transform(GRID.box((116.3, 39.5, 116.3 + w / 11130, 39.5 + h / 11130)))
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=count, dtype=data.dtype.name,
                       crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data)
        if scales is not None:
            dst.scales, dst.offsets = scales, [0.0] * count
    return path


def _box(path: Path):
    with rasterio.open(path) as src:
        return GRID.aligned_box(src.transform, src.width, src.height)


@settings(max_examples=25, deadline=None)
@given(order=st.permutations(["blue", "green", "red", "nir"]), scale=st.floats(1e-4, 1e-2),
       offset=st.floats(-0.2, 0.2))
def test_declared_band_order_scale_and_offset(tmp_path_factory, order, scale, offset):
    """Whatever the file's band order, the product gets B2, B3, B4, B8 as DN × scale + offset."""
    rng = np.random.default_rng(0)
    dn = rng.integers(1, 255, size=(4, 20, 30), dtype=np.uint8)
    path = _write(tmp_path_factory.mktemp("bands") / "x.tif", dn, nodata=0)
    source = FileSource("x", {2020: str(path)}, BandMap(tuple(order), scale, offset))
    got = source.read(S2, 2020, GRID, _box(path))
    for i, band in enumerate(["blue", "green", "red", "nir"]):
        expect = dn[order.index(band)] * scale + offset
        np.testing.assert_allclose(got[i], expect, rtol=1e-5, atol=1e-6)


def test_nan_and_nodata_become_nan(tmp_path):
    data = np.full((4, 10, 10), 0.2, dtype=np.float32)
    data[:, 0, 0] = np.nan
    data[:, 1, 1] = -9
    path = _write(tmp_path / "f.tif", data, nodata=-9)
    got = FileSource("f", {2020: str(path)}).read(S2, 2020, GRID, _box(path))
    assert np.isnan(got[:, 0, 0]).all() and np.isnan(got[:, 1, 1]).all()
    assert np.isfinite(got).sum() == 4 * 98
    declared = FileSource("f", {2020: str(path)}, BandMap(nodata=0.2)).read(S2, 2020, GRID, _box(path))
    assert np.isnan(declared[:, 2:, 2:]).all()  # a declared no-data value overrides the file's


def test_the_files_own_gdal_scale_is_honoured(tmp_path):
    dn = np.full((4, 8, 8), 1234, dtype=np.uint16)
    path = _write(tmp_path / "dn.tif", dn, scales=[1e-4] * 4)
    source = FileSource("dn", {2020: str(path)})
    source.check(S2, [2020], GRID.bounds(_box(path)))  # integer data with its own scale is accepted
    np.testing.assert_allclose(source.read(S2, 2020, GRID, _box(path)), 0.1234, rtol=1e-6)


@pytest.mark.parametrize("case, message", [
    ("uint8", "holds uint8 numbers with no scale; declare"),
    ("complex", "holds complex64 values"),
    ("three", "has 3 bands; the product needs 4 (B2, B3, B4, B8)"),
    ("order", "has 4 bands but --bands names 3"),
    ("nonir", "lacks band B8"),
    ("garbage", "cannot be opened"),
    ("year", "no 's2' raster for 2021"),
])
def test_bad_files_are_refused_in_one_line(tmp_path, case, message):
    bands = BandMap()
    if case == "uint8":
        path = _write(tmp_path / "x.tif", np.ones((4, 8, 8), np.uint8))
    elif case == "complex":
        path = _write(tmp_path / "x.tif", np.ones((4, 8, 8), np.complex64))
    elif case == "three":
        path = _write(tmp_path / "x.tif", np.ones((3, 8, 8), np.float32))
    elif case == "order":
        path, bands = _write(tmp_path / "x.tif", np.ones((4, 8, 8), np.float32)), BandMap(("red", "green", "blue"))
    elif case == "nonir":
        path = _write(tmp_path / "x.tif", np.ones((4, 8, 8), np.float32))
        bands = BandMap(("red", "green", "blue", "swir"))
    elif case == "garbage":
        path = tmp_path / "x.tif"
        path.write_bytes(b"II*\x00 not really a tiff")
    else:  # a year the files lack
        path = _write(tmp_path / "x.tif", np.ones((4, 8, 8), np.float32))
    years = [2020, 2021] if case == "year" else [2020]
    source = FileSource(str(path), {2020: str(path)}, bands)
    with pytest.raises(SourceError, match=re.escape(message)) as info:
        source.check(S2, years, (116.3, 39.5, 116.31, 39.51))
    assert "\n" not in str(info.value)


def test_partial_coverage_is_reported_per_year(scene):
    """The scene covers 3 × 3 test blocks (+ margin); a region twice as wide is half covered."""
    inputs = open_inputs(CBRA, f"{scene}/{{year}}/{{layer}}.tif", YEARS)
    region = region_box(6, 3, west=116.3 - 3 / 30)
    coverage = {name: inputs.source(name).check(CBRA.input(name), YEARS, region.bounds) for name in ("s2", "built")}
    for year in YEARS:
        assert 0.5 < coverage["s2"][year] < 0.55  # half, plus the 80-pixel margin
    notes = coverage_warnings(coverage, inputs)
    assert len(notes) == 2 * len(YEARS) and notes[0].startswith("s2 2016: the source covers 5")


def test_one_raster_for_every_year_and_a_mask_given_apart(scene):
    inputs = open_inputs(CBRA, f"{scene}/{{year}}/s2.tif", YEARS, mask=str(scene / "2016" / "built.tif"))
    assert set(inputs.source("built").files) == set(YEARS)
    assert "instead of the source's own" in inputs.notes[0]
