"""GB/T 13989 1:25,000 map frames: sheet number ⇄ frame bounds, exactly.

A 1:1,000,000 sheet spans 6° of longitude × 4° of latitude. Its number is the letter of its 4° row counted
from the equator (A = 0–4°N … J = 36–40°N … V = 84–88°N) and its 6° column counted east from 180°
(01 = 180–174°W … 50 = 114–120°E … 60 = 174–180°E). A 1:25,000 frame is 7′30″ × 5′00″ (1/8° × 1/12°),
48 × 48 of them to a 1:1,000,000 sheet, and its number is the sheet's, the scale letter F, then the frame's
row and column inside the sheet counted from its north-west corner, three digits each (001–048): the frame
whose upper-left corner is 116°15′E, 40°00′N is `J50F001019`.

Frames fall on the tile lattice of 1/8° × 1/12° anchored at (−180°, 90°): 90° and every 4° band edge are
whole multiples of 1/12°, so the sheet rows counted from the equator and the tile rows counted from 90°N
meet exactly (tile row = 1080 − 12 × north).

Only the northern hemisphere up to 88°N is numbered here: that is where the standard's letters A–V run
(China lies within 3–54°N). South of the equator and the polar cap above 88°N are refused.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from .grid import ORIGIN_X, ORIGIN_Y, as_fraction

FRAME_WIDTH = Fraction(1, 8)  # 7′30″ of longitude
FRAME_HEIGHT = Fraction(1, 12)  # 5′00″ of latitude
SHEET_WIDTH = 6  # degrees of a 1:1,000,000 sheet
SHEET_HEIGHT = 4
FRAMES_PER_SHEET = 48  # along each axis: 6 / (1/8) = 4 / (1/12) = 48
ROW_LETTERS = "ABCDEFGHIJKLMNOPQRSTUV"  # 4° bands from the equator to 88°N
SCALE_LETTER = "F"  # 1:25,000
NORTH_LIMIT = SHEET_HEIGHT * len(ROW_LETTERS)  # 88°N
SHEET_PATTERN = r"[A-V]\d{2}F\d{3}\d{3}"
_SHEET = re.compile(r"(?P<row>[A-V])(?P<col>\d{2})F(?P<frow>\d{3})(?P<fcol>\d{3})")


class SheetError(ValueError):
    """A sheet number or a frame that GB/T 13989 does not number: one line saying which and why."""


def _deg(value: Fraction) -> str:
    return f"{float(value):.6g}°"


def _frame_index(west: Fraction, north: Fraction) -> tuple[int, int]:
    """(columns of frames east of 180°W, rows of frames north of the equator) of a frame's upper-left corner;
    refuses corners off the frame lattice or outside the numbered range."""
    col = (west - ORIGIN_X) / FRAME_WIDTH
    row = north / FRAME_HEIGHT
    if col.denominator != 1 or row.denominator != 1:
        raise SheetError(f"{_deg(west)}, {_deg(north)} is not the upper-left corner of a 1:25,000 map frame "
                         "(7′30″ × 5′00″ from 180°W and the equator)")
    if not 0 <= col < 360 / FRAME_WIDTH:
        raise SheetError(f"a map frame at {_deg(west)} longitude is outside 180°W–180°E")
    if row < 1:  # the frame's north edge is at or south of the equator
        raise SheetError(f"the map frame with north edge {_deg(north)} lies south of the equator: GB/T 13989 "
                         "sheets are numbered here for the northern hemisphere only")
    if north > NORTH_LIMIT:
        raise SheetError(f"the map frame with north edge {_deg(north)} lies north of {NORTH_LIMIT}°N, "
                         "beyond the 1:1,000,000 rows A–V")
    return int(col), int(row)


def sheet_number(west: float | str | Fraction, north: float | str | Fraction) -> str:
    """The 1:25,000 sheet number of the frame whose upper-left corner is (west, north)."""
    col, row = _frame_index(as_fraction(west), as_fraction(north))
    band, frow = divmod(row - 1, FRAMES_PER_SHEET)  # row - 1: frames counted by their south edge
    sheet_col, fcol = divmod(col, FRAMES_PER_SHEET)
    return f"{ROW_LETTERS[band]}{sheet_col + 1:02d}{SCALE_LETTER}{FRAMES_PER_SHEET - frow:03d}{fcol + 1:03d}"


def sheet_corner(sheet: str) -> tuple[Fraction, Fraction]:
    """(west, north) of a 1:25,000 frame from its sheet number, e.g. `J50F001019` → (116¼°, 40°)."""
    match = _SHEET.fullmatch(sheet) if isinstance(sheet, str) else None
    if match is None:
        raise SheetError(f"{sheet!r} is not a GB/T 13989 1:25,000 sheet number (e.g. J50F001019)")
    col, frow, fcol = int(match["col"]), int(match["frow"]), int(match["fcol"])
    if not 1 <= col <= 360 // SHEET_WIDTH:
        raise SheetError(f"{sheet!r}: the 1:1,000,000 column {col:02d} is not one of 01–60")
    if not (1 <= frow <= FRAMES_PER_SHEET and 1 <= fcol <= FRAMES_PER_SHEET):
        raise SheetError(f"{sheet!r}: the frame row {frow:03d} and column {fcol:03d} must be 001–048")
    band = ROW_LETTERS.index(match["row"])
    west = ORIGIN_X + (col - 1) * SHEET_WIDTH + (fcol - 1) * FRAME_WIDTH
    north = (band + 1) * SHEET_HEIGHT - (frow - 1) * FRAME_HEIGHT
    return west, Fraction(north)


def sheet_bounds(sheet: str) -> tuple[Fraction, Fraction, Fraction, Fraction]:
    """(west, south, east, north) of a 1:25,000 frame from its sheet number, as exact Fractions."""
    west, north = sheet_corner(sheet)
    return west, north - FRAME_HEIGHT, west + FRAME_WIDTH, north


def sheet_at(lon: float | str | Fraction, lat: float | str | Fraction) -> str:
    """The sheet number of the frame holding the point: like the lattice's pixels, a frame holds its west and
    north edges, so a point on an edge belongs to the frame east or south of it."""
    lon, lat = as_fraction(lon), as_fraction(lat)
    col = math.floor((lon - ORIGIN_X) / FRAME_WIDTH)
    row = math.floor((ORIGIN_Y - lat) / FRAME_HEIGHT)
    return frame_sheet(row, col)


def frame_sheet(tile_row: int, tile_col: int) -> str:
    """The sheet number of the frame at (tile_row, tile_col) of the 1/12° × 1/8° lattice from (−180°, 90°)."""
    return sheet_number(ORIGIN_X + tile_col * FRAME_WIDTH, ORIGIN_Y - tile_row * FRAME_HEIGHT)


def sheet_frame(sheet: str) -> tuple[int, int]:
    """(tile_row, tile_col) of a sheet on the 1/12° × 1/8° lattice from (−180°, 90°); inverse of frame_sheet."""
    west, north = sheet_corner(sheet)
    return int((ORIGIN_Y - north) / FRAME_HEIGHT), int((west - ORIGIN_X) / FRAME_WIDTH)
