"""Tiles: name ⇄ bounds round trip, lattice arithmetic, planning and region refusals."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

from mapgen.tiles import Box, Grid, RegionError, TileScheme, load_region, plan_region

CBRA = TileScheme.create(input_res="1/11130", scale=4, tile_size="2.5", block_size="0.1",
                         naming="CBRA_{year}_{lon_hemi}{lon}{lat_hemi}{lat}.tif")


def test_paper_example_name():
    row, col, year = CBRA.tile_from_name("CBRA_2019_E115N42.5.tif")
    assert year == 2019
    assert CBRA.tile_bounds(row, col) == (115.0, 40.0, 117.5, 42.5)
    assert CBRA.tile_name(row, col, 2019) == "CBRA_2019_E115N42.5.tif"


@given(st.integers(0, 71), st.integers(0, 143), st.integers(1900, 2100))
def test_name_bounds_round_trip(tile_row, tile_col, year):
    name = CBRA.tile_name(tile_row, tile_col, year)
    assert CBRA.tile_from_name(name) == (tile_row, tile_col, year)
    west, south, east, north = CBRA.tile_bounds(tile_row, tile_col)
    assert (name[10] == "W") == (west < 0)
    assert ("S" in name[10:]) == (north < 0)
    assert east - west == pytest.approx(2.5) and north - south == pytest.approx(2.5)


@pytest.mark.parametrize("name,bounds", [
    ("CBRA_2016_W72.5S2.5.tif", (-72.5, -5.0, -70.0, -2.5)),
    ("CBRA_2016_E0N0.tif", (0.0, -2.5, 2.5, 0.0)),
    ("CBRA_2016_W2.5N2.5.tif", (-2.5, 0.0, 0.0, 2.5)),
    ("CBRA_2021_W180N90.tif", (-180.0, 87.5, -177.5, 90.0)),
])
def test_names_west_and_south(name, bounds):
    row, col, year = CBRA.tile_from_name(name)
    assert CBRA.tile_bounds(row, col) == bounds
    assert CBRA.tile_name(row, col, year) == name


@pytest.mark.parametrize("bad", ["CBRA_2019_E115N42.tif", "CBRA_19_E115N42.5.tif", "foo.tif",
                                 "CBRA_2019_E115.3N42.5.tif"])
def test_bad_names_refused(bad):
    with pytest.raises(ValueError):
        CBRA.tile_from_name(bad)


def test_grid_is_exact():
    grid = CBRA.input_grid
    assert grid.res == Fraction(1, 11130)
    assert CBRA.block_px == 1113 and CBRA.output_grid.pixels("0.1") == 4452
    box = grid.box((116.3, 39.9, 116.4, 40.0))
    assert box.shape == (1113, 1113)
    assert grid.bounds(box) == pytest.approx((116.3, 39.9, 116.4, 40.0), abs=1e-12)
    assert grid.aligned_box(grid.transform(box), 1113, 1113) == box
    assert Grid(Fraction(1, 100)).aligned_box(grid.transform(box), 5, 5) is None


@given(st.floats(-179, 178), st.floats(-89, 88), st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_plan_blocks_touch_region_and_nest_in_tiles(west, south, dx, dy):
    region = shapely.box(west, south, west + dx, south + dy)
    plan = plan_region(region, CBRA, [2019])
    ids = [b.id for b in plan.blocks]
    assert len(ids) == len(set(ids))
    for tile in plan.tiles:
        tw, ts, te, tn = CBRA.tile_bounds(tile.row, tile.col)
        for block in tile.blocks:
            bw, bs, be, bn = block.bounds
            assert shapely.intersects(region, shapely.box(bw, bs, be, bn))
            assert tw - 1e-9 <= bw and be <= te + 1e-9 and ts - 1e-9 <= bs and bn <= tn + 1e-9
    # every point of the region lies in some block
    cx, cy = region.centroid.x, region.centroid.y
    assert any(b.bounds[0] <= cx <= b.bounds[2] and b.bounds[1] <= cy <= b.bounds[3] for b in plan.blocks)


def test_plan_only_blocks_touching_an_irregular_region():
    region = shapely.Polygon([(116.0, 40.0), (116.47, 40.0), (116.0, 40.47)])  # a triangle
    plan = plan_region(region, CBRA, [2016, 2017])
    expected = {(round(x, 1), round(y, 1)) for x in [116.0 + 0.1 * i for i in range(5)]
                for y in [40.0 + 0.1 * j for j in range(5)]
                if shapely.intersection(region, shapely.box(x, y, x + 0.1, y + 0.1)).area > 0}
    assert {(round(b.bounds[0], 1), round(b.bounds[1], 1)) for b in plan.blocks} == expected
    assert len(plan.blocks) < 25  # not the whole bounding box of 5 × 5 blocks
    summary = plan.summary()
    assert summary["block_years"] == 2 * len(expected)
    assert summary["output_pixels_per_year"] == len(expected) * 4452**2
    assert 0 < summary["region_area_km2"] < summary["area_km2"]


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_region_refusals(tmp_path):
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(RegionError, match="invalid geometry"):
        load_region(_write(tmp_path / "bowtie.geojson", bowtie))
    with pytest.raises(RegionError, match="no features"):
        load_region(_write(tmp_path / "empty.geojson", {"type": "FeatureCollection", "features": []}))
    with pytest.raises(RegionError, match="no such file"):
        load_region(tmp_path / "missing.geojson")
    far = {"type": "Polygon", "coordinates": [[[500000, 0], [500100, 0], [500100, 100], [500000, 0]]]}
    with pytest.raises(RegionError, match="outside"):
        load_region(_write(tmp_path / "far.geojson", far))
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    with pytest.raises(RegionError, match="no area"):
        load_region(_write(tmp_path / "line.geojson", line))


def test_box_slices():
    outer = Box(10, 20, 100, 100)
    inner = Box(15, 30, 10, 10)
    rows, cols = inner.slices_in(outer)
    assert (rows.start, cols.start) == (5, 10)
    with pytest.raises(ValueError):
        outer.slices_in(inner)


_boxes = st.builds(Box, st.integers(-20, 20), st.integers(-20, 20), st.integers(1, 15), st.integers(1, 15))


@given(a=_boxes, b=_boxes)
def test_box_intersection_is_the_shared_pixels(a, b):
    def pixels(box):
        return {(r, c) for r in range(box.row, box.row_stop) for c in range(box.col, box.col_stop)}

    inner = a.intersection(b)
    shared = pixels(a) & pixels(b)
    assert (pixels(inner) if inner is not None else set()) == shared
    assert inner is None or (a.contains(inner) and b.contains(inner))
