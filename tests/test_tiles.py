"""Tiles: name ⇄ bounds round trip, lattice arithmetic, planning and region refusals."""

from __future__ import annotations

import datetime as dt
import json
from fractions import Fraction

import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

from mapgen.tiles import Box, Grid, RegionError, TileScheme, TileSchemeError, load_region, plan_region

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


# ---- rectangular tiles and dated names

RECT = TileScheme.create(input_res="1/100800", scale=2, tile_size=("1/8", "1/12"), block_size="1/48",
                         naming="R_{date}_{lon_hemi}{lon}{lat_hemi}{lat}.tif")
_dates = st.builds(lambda d, n: d.isoformat()[:n], st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)),
                   st.sampled_from([4, 7, 10]))


def test_square_schemes_keep_their_sizes():
    assert CBRA.tile_size == CBRA.tile_width == CBRA.tile_height == Fraction(5, 2)
    assert CBRA.blocks_per_tile == 25 and CBRA.tile_blocks == (25, 25) and CBRA.is_square
    assert CBRA.with_block_size("1/30").tile_blocks == (75, 75)
    assert CBRA.tile_box(19, 118) == Box(19 * 27825, 118 * 27825, 27825, 27825)


def test_rectangular_scheme_shape():
    assert (RECT.tile_width, RECT.tile_height, RECT.tile_blocks) == (Fraction(1, 8), Fraction(1, 12), (4, 6))
    assert RECT.kind == "regular" and not RECT.is_square
    assert RECT.tile_bounds_exact(600, 2370) == (Fraction(465, 4), Fraction(479, 12), Fraction(931, 8), 40)
    assert RECT.tile_box(600, 2370) == Box(600 * 8400, 2370 * 12600, 8400, 12600)
    assert RECT.with_block_size("1/96").tile_blocks == (8, 12)
    assert RECT.tile_name(600, 2370, "2018-08") == "R_2018-08_E116.25N40.tif"
    assert RECT.tile_name(601, 2370, "2018-08") == "R_2018-08_E116.25N39.916667.tif"  # 39 11/12, to 6 places


@given(st.integers(0, 90 * 12 * 2 - 1), st.integers(0, 360 * 8 - 1), _dates)
def test_rectangular_name_round_trip(tile_row, tile_col, date):
    name = RECT.tile_name(tile_row, tile_col, date)
    parsed = RECT.parse_tile_name(name)
    assert (parsed.row, parsed.col, parsed.date, parsed.pair) == (tile_row, tile_col, date, None)
    assert RECT.tile_from_name(name) == (tile_row, tile_col, int(date[:4]))
    west, south, east, north = RECT.tile_bounds(tile_row, tile_col)
    assert east - west == pytest.approx(1 / 8) and north - south == pytest.approx(1 / 12)
    assert (f"_{'W' if west < 0 else 'E'}" in name) and (("S" in name[-15:]) == (north < 0))


@given(st.integers(0, 71), st.integers(0, 143), _dates, _dates)
def test_pair_name_round_trip(tile_row, tile_col, first, second):
    pairs = TileScheme.create(input_res="1/11130", scale=4, tile_size="2.5", block_size="0.1",
                              naming="CHG_{from}_{to}_{lon_hemi}{lon}{lat_hemi}{lat}.tif")
    name = pairs.tile_name(tile_row, tile_col, pair=(first, second))
    assert name.startswith(f"CHG_{first}_{second}_")
    parsed = pairs.parse_tile_name(name)
    assert (parsed.row, parsed.col, parsed.date, parsed.pair, parsed.year) == (tile_row, tile_col, None,
                                                                               (first, second), None)


def test_dates_in_cbra_names():
    # {year} renders the year of whichever date is given
    assert CBRA.tile_name(19, 118, "2019") == CBRA.tile_name(19, 118, "2019-08-15") == "CBRA_2019_E115N42.5.tif"
    assert CBRA.tile_name(19, 118, dt.date(2019, 8, 15)) == "CBRA_2019_E115N42.5.tif"
    parsed = CBRA.parse_tile_name("CBRA_2019_E115N42.5.tif")
    assert (parsed.row, parsed.col, parsed.date, parsed.year, parsed.pair) == (19, 118, "2019", 2019, None)
    both = TileScheme.create(input_res="1/11130", scale=4, tile_size="2.5", block_size="0.1",
                             naming="X_{year}/{date}_{lon}_{lat}.tif")
    assert both.tile_name(19, 118, "2019-08") == "X_2019/2019-08_115_42.5.tif"
    assert both.tile_from_name("X_2019/2019-08_115_42.5.tif") == (19, 118, 2019)
    with pytest.raises(ValueError, match="not the year of the date"):
        both.tile_from_name("X_2018/2019-08_115_42.5.tif")


@pytest.mark.parametrize("date", ["2018-8", "2018-02-30", "2018-13", "18", "2019.5", "", 19, True, 2019.0, None])
def test_bad_dates_refused(date):
    with pytest.raises(ValueError) as info:
        CBRA.tile_name(19, 118, date)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("template, phrase", [
    ("X_{year}_{lon}.tif", r"must contain \{lon\} and \{lat\}, or \{sheet\}"),
    ("X_{yaer}_{lon}_{lat}.tif", r"unknown field\(s\) \['yaer'\]"),
    ("X_{from}_{lon}_{lat}.tif", r"needs both \{from\} and \{to\}"),
    ("X_{year}_{sheet}.tif", r"\{sheet\} numbers map frames"),
])
def test_bad_templates_refused(template, phrase):
    with pytest.raises(TileSchemeError, match=phrase):
        TileScheme.create(input_res="1/11130", scale=4, tile_size="2.5", block_size="0.1", naming=template)


def test_names_need_their_dates():
    pairs = TileScheme.create(input_res="1/11130", scale=4, tile_size="2.5", block_size="0.1",
                              naming="CHG_{from}_{to}_{lon}_{lat}.tif")
    with pytest.raises(ValueError, match="needs a pair of dates"):
        pairs.tile_name(19, 118, "2019")
    with pytest.raises(ValueError, match="needs a date"):
        CBRA.tile_name(19, 118, pair=("2018", "2019"))


@pytest.mark.parametrize("kw, phrase", [
    (dict(tile_size=("1/8", "1/12"), block_size="1/36"), "tile width 0.125° is not a whole number of 1/36° blocks"),
    (dict(tile_size=("1/8", "1/12"), block_size="1/10"), r"larger than the 0.125° × 1/12° tile"),
    (dict(tile_size=("1/8", "1/12"), block_size="1/48", kind="map-frame"), "grid kind 'map-frame' is not one of"),
    (dict(tile_size="2.5", block_size="0.3"), "tile size 2.5° is not a whole number of 0.3° blocks"),
    (dict(tile_size=("0", "1/12"), block_size="1/48"), "the tile width must be more than 0°"),
])
def test_rectangular_refusals(kw, phrase):
    with pytest.raises(TileSchemeError, match=phrase) as info:
        TileScheme.create(input_res="1/100800", scale=1, naming="R_{year}_{lon}_{lat}.tif", **kw)
    assert "\n" not in str(info.value)


@given(st.floats(-179, 178), st.floats(-89, 88), st.floats(0.005, 0.3), st.floats(0.005, 0.3))
def test_plan_on_rectangular_tiles(west, south, dx, dy):
    region = shapely.box(west, south, west + dx, south + dy)
    plan = plan_region(region, RECT, ["2019"])
    for tile in plan.tiles:
        whole = RECT.tile_box(tile.row, tile.col)
        assert whole.shape == (4 * RECT.block_px, 6 * RECT.block_px) and whole.contains(tile.extent)
        tw, ts, te, tn = RECT.tile_bounds(tile.row, tile.col)
        for block in tile.blocks:
            bw, bs, be, bn = block.bounds
            assert tw - 1e-9 <= bw and be <= te + 1e-9 and ts - 1e-9 <= bs and bn <= tn + 1e-9
    names = plan.tile_names("2019-06")
    assert [RECT.tile_from_name(n)[:2] for n in names] == [(t.row, t.col) for t in plan.tiles]
    assert plan.summary()["tile_size_deg"] == [0.125, 1 / 12]


def test_pair_plan_summary_names_pairs_of_years():
    pairs = TileScheme.create(input_res="1/11130", scale=4, tile_size="2.5", block_size="0.1",
                              naming="CHG_{from}_{to}_{lon_hemi}{lon}{lat_hemi}{lat}.tif")
    plan = plan_region(shapely.box(116.01, 40.01, 116.05, 40.05), pairs, [2018, 2019, 2020])
    assert plan.summary()["tile_names"] == {"2018_2019": ["CHG_2018_2019_E115N42.5.tif"],
                                            "2019_2020": ["CHG_2019_2020_E115N42.5.tif"]}


def test_plan_with_dates():
    region = shapely.box(116.01, 40.01, 116.05, 40.05)
    monthly = CBRA.with_naming("CBRA_{date}_{lon_hemi}{lon}{lat_hemi}{lat}.tif")
    plan = plan_region(region, monthly, ["2020-08", "2018-08", "2018-08"])
    assert plan.dates == ("2018-08", "2020-08") and plan.years == (2018, 2020)
    summary = plan.summary()
    assert summary["tile_names"] == {"2018-08": ["CBRA_2018-08_E115N42.5.tif"],
                                     "2020-08": ["CBRA_2020-08_E115N42.5.tif"]}
    assert summary["block_years"] == 2 * plan.block_count
    # years stay ints, as ever, and name as they did
    annual = plan_region(region, CBRA, ["2019", 2018])
    assert annual.years == (2018, 2019) and annual.dates == ("2018", "2019")
    assert annual.tile_names(2019) == ["CBRA_2019_E115N42.5.tif"]
    with pytest.raises(TileSchemeError, match="unknown field"):
        CBRA.with_naming("CBRA_{month}_{lon}_{lat}.tif")
