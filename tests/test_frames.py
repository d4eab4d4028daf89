"""GB/T 13989 1:25,000 map frames: sheet number ⇄ bounds, map_frame schemes, their names and plans."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

from mapgen.tiles import (
    RegionError,
    SheetError,
    TileScheme,
    TileSchemeError,
    frame_sheet,
    plan_region,
    sheet_at,
    sheet_bounds,
    sheet_corner,
    sheet_frame,
    sheet_number,
)
from mapgen.tiles.frames import FRAME_HEIGHT, FRAME_WIDTH, ROW_LETTERS

F = Fraction


def ugs(naming: str = "UGS_{year}_{sheet}.tif", **kw) -> TileScheme:
    """The UGS grid of docs/products.md: 1/28″ pixels, frames of 6 × 4 blocks of 1/48°."""
    args = dict(input_res="1/100800", scale=1, tile_size=["1/8", "1/12"], block_size="1/48", naming=naming,
                kind="map_frame")
    return TileScheme.create(**(args | kw))


UGS = ugs()


# Worked by hand (west, south, east, north):
# - J50F001019 (the spec's example): J is the 10th letter, the band 36–40°N; column 50 starts at
#   −180 + 49·6 = 114°E; frame row 001 has its north edge on the sheet's, 40°N; frame column 019 starts
#   18 · 7′30″ = 2°15′ east of 114°, at 116°15′E.
# - H51F010012 holds Shanghai (121.47°E, 31.23°N): band ⌊31.23 / 4⌋ = 7 → H (28–32°N); column
#   ⌊(121.47 + 180) / 6⌋ + 1 = 51 (120–126°E); (32 − 31.23) · 12 = 9.24 → row 010, north 32 − 9/12 = 31.25;
#   (121.47 − 120) · 8 = 11.76 → column 012, west 120 + 11/8 = 121.375.
# - K45F003029 holds Urumqi (87.6°E, 43.8°N): band 10 → K (40–44°N); column ⌊267.6 / 6⌋ + 1 = 45 (84–90°E);
#   (44 − 43.8) · 12 = 2.4 → row 003, north 44 − 2/12 = 43⅚; (87.6 − 84) · 8 = 28.8 → column 029, west 87.5.
# - A01F001001: the first frame of the first sheet, upper-left at 180°W, 4°N.
# - A50F048001: the south-west frame of sheet A50, on the equator: 114–114⅛°E, 0–1/12°N.
# - V60F001048: the north-east frame of the last sheet: 179⅞–180°E, 87 11/12–88°N.
HAND_CHECKED = [
    ("J50F001019", (F(465, 4), F(479, 12), F(931, 8), F(40))),
    ("H51F010012", (F(971, 8), F(187, 6), F(243, 2), F(125, 4))),
    ("K45F003029", (F(175, 2), F(175, 4), F(701, 8), F(263, 6))),
    ("A01F001001", (F(-180), F(4) - F(1, 12), F(-1439, 8), F(4))),
    ("A50F048001", (F(114), F(0), F(913, 8), F(1, 12))),
    ("V60F001048", (F(1439, 8), F(88) - F(1, 12), F(180), F(88))),
]


@pytest.mark.parametrize("sheet, bounds", HAND_CHECKED)
def test_hand_checked_sheets(sheet, bounds):
    assert sheet_bounds(sheet) == bounds
    west, _, _, north = bounds
    assert sheet_number(west, north) == sheet
    if F(float(north)) == north:  # a float that is exact names the same corner
        assert sheet_number(float(west), float(north)) == sheet


@pytest.mark.parametrize("lon, lat, sheet", [(121.47, 31.23, "H51F010012"), (87.6, 43.8, "K45F003029"),
                                             (116.3, 39.95, "J50F001019")])
def test_sheet_at_a_city(lon, lat, sheet):
    assert sheet_at(lon, lat) == sheet


def test_the_spec_example_on_the_tile_lattice():
    row, col = sheet_frame("J50F001019")
    assert (row, col) == (600, 2370)  # (90 − 40) · 12, (116.25 + 180) · 8
    assert UGS.tile_corner(row, col) == (F(465, 4), F(40))
    assert UGS.tile_name(row, col, 2019) == "UGS_2019_J50F001019.tif"
    assert UGS.tile_from_name("UGS_2019_J50F001019.tif") == (row, col, 2019)
    assert UGS.tile_bounds(row, col) == pytest.approx((116.25, 39 + 11 / 12, 116.375, 40.0), abs=1e-12)


def test_sheet_rows_meet_tile_rows():
    # the equator and every 4° band edge are whole tile rows from 90°N, so a sheet's frames are whole tiles
    assert UGS.tile_corner(1080, 0) == (F(-180), F(0))
    for band in range(len(ROW_LETTERS) + 1):
        assert ((90 - 4 * band) / FRAME_HEIGHT).denominator == 1
    for sheet_col in range(61):
        assert ((6 * sheet_col) / FRAME_WIDTH).denominator == 1


_sheets = st.builds(lambda letter, col, row, fcol: f"{letter}{col:02d}F{row:03d}{fcol:03d}",
                    st.sampled_from(ROW_LETTERS), st.integers(1, 60), st.integers(1, 48), st.integers(1, 48))


@given(_sheets)
def test_sheet_bounds_round_trip(sheet):
    west, south, east, north = sheet_bounds(sheet)
    assert (east - west, north - south) == (F(1, 8), F(1, 12))
    assert 0 <= south < north <= 88 and -180 <= west < east <= 180
    assert sheet_number(west, north) == sheet
    assert sheet_corner(sheet) == (west, north)
    row, col = sheet_frame(sheet)
    assert frame_sheet(row, col) == sheet
    assert UGS.tile_bounds_exact(row, col) == (west, south, east, north)
    # the 1:1,000,000 sheet of the frame, counted from the equator and from 180°W
    assert ROW_LETTERS[int(south // 4)] == sheet[0] and int((west + 180) // 6) + 1 == int(sheet[1:3])


# every frame of China's extent (73–135°E, 3–54°N), then the whole numbered range
_china = st.tuples(st.integers(int((73 + 180) * 8), int((135 + 180) * 8) - 1), st.integers(36, 54 * 12))
_anywhere = st.tuples(st.integers(0, 360 * 8 - 1), st.integers(1, 88 * 12))


@given(st.one_of(_china, _anywhere))
def test_every_frame_round_trips(frame):
    col, rows_north = frame  # frames east of 180°W, and the frame's north edge in frames from the equator
    tile_row = 1080 - rows_north
    sheet = frame_sheet(tile_row, col)
    assert sheet_frame(sheet) == (tile_row, col)
    assert sheet_bounds(sheet) == UGS.tile_bounds_exact(tile_row, col)
    assert UGS.parse_tile_name(UGS.tile_name(tile_row, col, 2020)).row == tile_row


@given(st.fractions(-180, 180, max_denominator=10_000).filter(lambda x: x < 180),
       st.fractions(0, 88, max_denominator=10_000).filter(lambda y: y > 0))
def test_sheet_at_holds_the_point(lon, lat):
    west, south, east, north = sheet_bounds(sheet_at(lon, lat))
    assert west <= lon < east and south < lat <= north  # a frame holds its west and north edges


@pytest.mark.parametrize("bad", ["J50F001019x", "j50f001019", "J50G001019", "W50F001001", "J61F001001",
                                 "J00F001001", "J50F000001", "J50F049001", "J50F001049", "J5F001019", ""])
def test_bad_sheet_numbers_refused(bad):
    with pytest.raises(SheetError) as info:
        sheet_bounds(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("west, north, phrase", [
    (116, 0, "south of the equator"),
    (116, F(-1, 12), "south of the equator"),
    (116, F(88) + F(1, 12), "north of 88°N"),
    (F(1161, 10), 40, "not the upper-left corner"),
    (116, F(399, 10), "not the upper-left corner"),
    (180, 40, "outside 180°W–180°E"),
])
def test_frames_without_a_number_refused(west, north, phrase):
    with pytest.raises(SheetError, match=phrase) as info:
        sheet_number(west, north)
    assert "\n" not in str(info.value)


def test_south_of_the_equator_refused_in_names_and_plans():
    with pytest.raises(SheetError, match="south of the equator"):
        UGS.tile_name(1080, 2370, 2019)  # the frame just south of 0°
    with pytest.raises(RegionError, match="no GB/T 13989 sheet number.*south of the equator") as info:
        plan_region(shapely.box(116.01, -0.05, 116.1, 0.05), UGS, [2019])
    assert "\n" not in str(info.value)
    # a region north of the equator plans, even one whose blocks end exactly on it
    assert len(plan_region(shapely.box(116.01, 0.0, 116.1, 0.05), UGS, [2019]).tiles) == 1


@pytest.mark.parametrize("kw, phrase", [
    (dict(tile_size="2.5", block_size="0.1"), r'map_frame grid has 1:25,000 frames .* not 2.5°'),
    (dict(tile_size=["1/12", "1/8"]), r'tile_size = \["1/8", "1/12"\], not 1/12° × 0.125°'),
    (dict(tile_size=["1/8", "1/12"], kind="regular"), r"\{sheet\} numbers map frames: it needs kind"),
    (dict(kind="frames"), "grid kind 'frames' is not one of regular, map_frame"),
    (dict(block_size="1/32"), r"tile height 1/12° is not a whole number of 0.03125° blocks"),
    (dict(block_size="1/10"), r"block size 0.1° is larger than the 0.125° × 1/12° tile"),
    (dict(tile_size=["1/8"]), "must be one size or two"),
    (dict(tile_size=["1/8", "x"]), "the tile height 'x' is not a number of degrees"),
    (dict(naming="UGS_{year}_{sheet}_{to}.tif"), r"needs both \{from\} and \{to\}"),
    (dict(naming="UGS_{year}.tif"), r"must contain \{lon\} and \{lat\}, or \{sheet\}"),
])
def test_map_frame_scheme_refusals(kw, phrase):
    with pytest.raises(TileSchemeError, match=phrase) as info:
        ugs(**kw)
    assert "\n" not in str(info.value)


def test_map_frame_scheme_shape():
    assert (UGS.tile_width, UGS.tile_height) == (F(1, 8), F(1, 12))
    assert UGS.tile_blocks == (4, 6) and UGS.block_px == 2100
    assert UGS.tile_box(600, 2370).shape == (8400, 12600)
    for name in ("tile_size", "blocks_per_tile"):  # square-only: refused, not a wrong number
        with pytest.raises(TileSchemeError, match="not square"):
            getattr(UGS, name)


def test_plan_region_on_map_frames():
    # a region inside J50F001019's east half and the three frames east and south of it
    region = shapely.box(116.3, 39.9, 116.4, 39.99)
    plan = plan_region(region, UGS, [2018, 2019])
    names = plan.tile_names(2019)
    assert names == ["UGS_2019_J50F001019.tif", "UGS_2019_J50F001020.tif", "UGS_2019_J50F002019.tif",
                     "UGS_2019_J50F002020.tif"]
    bp = UGS.block_px
    for tile, name in zip(plan.tiles, names, strict=True):
        row, col, _ = UGS.tile_from_name(name)
        assert (tile.row, tile.col) == (row, col)
        whole = UGS.tile_box(row, col)
        assert whole.shape == (4 * bp, 6 * bp)  # 6 × 4 blocks of 1/48° a frame
        assert whole.contains(tile.extent)
        assert len(tile) <= 24
        west, south, east, north = (F(v) for v in sheet_bounds(UGS.sheet(row, col)))
        for block in tile.blocks:
            assert UGS.tile_of_block(block.row, block.col) == (row, col)
            bw, bs, be, bn = block.bounds
            assert west <= F(bw) + F(1, 10**9) and F(be) <= east + F(1, 10**9)
            assert south <= F(bs) + F(1, 10**9) and F(bn) <= north + F(1, 10**9)
            assert shapely.intersects(region, shapely.box(bw, bs, be, bn))
    # J50F001019 spans 116.25–116.375°E, 39 11/12–40°N in 1/48° blocks: 116.3 lies in the third column
    # (116.2917–116.3125), 39.99 in the first row (39.9792–40) and 39.9 south of the frame
    first = plan.tiles[0]
    assert (int(first.block_cols.min()) - 2370 * 6, int(first.block_rows.min()) - 600 * 4) == (2, 0)
    assert first.extent.shape == (4 * bp, 4 * bp)  # columns 3–6 and all 4 rows of the frame
    assert plan.tiles[1].extent.shape == (4 * bp, 2 * bp)  # 116.375–116.4167: 2 of 6 columns
    assert plan.tiles[2].extent.shape == (1 * bp, 4 * bp)  # 39.9 is in the top row of J50F002019
    assert plan.block_count == 16 + 8 + 4 + 2
    summary = plan.summary()
    assert summary["tile_size_deg"] == [0.125, 1 / 12] and summary["tile_blocks"] == [4, 6]
    assert summary["grid_kind"] == "map_frame"
    assert summary["tile_names"]["2019"] == names
    assert summary["input_pixels_per_year"] == plan.block_count * bp**2


_dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31))
_date_texts = st.builds(lambda d, n: d.isoformat()[:n], _dates, st.sampled_from([4, 7, 10]))


@given(st.one_of(_china, _anywhere), _date_texts, _date_texts)
def test_map_frame_names_round_trip(frame, date, other):
    col, rows_north = frame
    row = 1080 - rows_north
    by_date = ugs("UGS_{date}_{sheet}.tif")
    parsed = by_date.parse_tile_name(by_date.tile_name(row, col, date))
    assert (parsed.row, parsed.col, parsed.date, parsed.pair, parsed.year) == (row, col, date, None, int(date[:4]))
    pairs = ugs("UGSCHG_{from}_{to}_{sheet}.tif")
    name = pairs.tile_name(row, col, pair=(date, other))
    assert name == f"UGSCHG_{date}_{other}_{frame_sheet(row, col)}.tif"
    parsed = pairs.parse_tile_name(name)
    assert (parsed.row, parsed.col, parsed.date, parsed.pair) == (row, col, None, (date, other))
    # a frame may be named by its corner instead: 1/12° corners are named to 6 decimals and still parse back
    corners = ugs("F_{date}_{lon_hemi}{lon}{lat_hemi}{lat}.tif")
    parsed = corners.parse_tile_name(corners.tile_name(row, col, date))
    assert (parsed.row, parsed.col, parsed.date) == (row, col, date)


def test_sheet_and_corner_in_one_name_must_agree():
    both = ugs("UGS_{year}_{sheet}_{lon}_{lat}.tif")
    name = both.tile_name(600, 2370, 2019)
    assert name == "UGS_2019_J50F001019_116.25_40.tif"
    assert both.tile_from_name(name) == (600, 2370, 2019)
    with pytest.raises(ValueError, match="disagree"):
        both.tile_from_name("UGS_2019_J50F001019_116.25_41.tif")


@pytest.mark.parametrize("bad", ["UGS_2019_J50F049019.tif", "UGS_19_J50F001019.tif", "UGS_2019_J50F001019",
                                 "UGS_2019_J50F001019.tif.tif", "UGS_2019_E116.25N40.tif"])
def test_bad_map_frame_names_refused(bad):
    with pytest.raises(ValueError):
        UGS.tile_from_name(bad)
