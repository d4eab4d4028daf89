"""An output tiling: input lattice, output scale, tile and block sizes, and how tiles are named.

Tiles are `tile_width`° × `tile_height`° (square for CBRA's 2.5°, 7′30″ × 5′00″ for the GB/T 13989 1:25,000
map frames of UGS); blocks are square, and each tile axis is a whole number of blocks. Both lattices are
anchored at (−180°, 90°), tile rows counted south from 90°N and columns east from 180°W.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from . import frames
from .grid import ORIGIN_X, ORIGIN_Y, Box, Grid, as_fraction
from .naming import Date, Dated, NameParts, NameScheme, Pair

Size = float | str | Fraction
KINDS = ("regular", "map_frame")
# Names give corners to 6 decimals: tiles closer than this could share a name.
_NAME_RESOLUTION = Fraction(1, 100_000)


class TileSchemeError(ValueError):
    """A tile, block or pixel size that cannot cut the lattice: one line saying which and why."""


def parse_size(value: Size, what: str) -> Fraction:
    """A size in degrees (0.1, "0.1", "1/30" or a Fraction), exactly; refuses anything not more than 0°."""
    try:
        size = as_fraction(value)
    except (ValueError, TypeError, ZeroDivisionError):
        raise TileSchemeError(f"the {what} {value!r} is not a number of degrees (e.g. 0.1 or 1/30)") from None
    if size <= 0:  # a zero divides by zero, a negative one cuts no block
        raise TileSchemeError(f"the {what} must be more than 0° (e.g. 0.1 or 1/30), not {value}")
    return size


def parse_tile_size(value: Size | Sequence[Size]) -> tuple[Fraction, Fraction]:
    """(width, height) in degrees from one size (square tiles) or a [lon, lat] pair such as ["1/8", "1/12"]."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise TileSchemeError(f"the tile size {list(value)!r} must be one size or two, [lon, lat] "
                                  "(e.g. [\"1/8\", \"1/12\"])")
        return parse_size(value[0], "tile width"), parse_size(value[1], "tile height")
    size = parse_size(value, "tile size")
    return size, size


def _deg(value: Fraction) -> str:
    """A size as messages give it: a short decimal where exact ("2.5"), else a fraction ("1/12")."""
    text = str(float(value))
    return text if Fraction(text) == value else f"{value.numerator}/{value.denominator}"


@dataclass(frozen=True)
class TileName(Dated):
    """What a tile name says, on the tile lattice: the tile, and its date and pair (None where the template
    has no field for them)."""

    row: int
    col: int
    date: str | None = None
    pair: tuple[str, str] | None = None


@dataclass(frozen=True)
class TileScheme:
    """Tiles of `tile_width`° × `tile_height`° cut into square processing blocks of `block_size`°, on the
    lattice of `input_grid`; outputs are `scale`× finer than inputs. Tiles and blocks are anchored at
    (-180°, 90°). `kind` is "regular", or "map_frame" for the GB/T 13989 1:25,000 sheets."""

    input_grid: Grid
    scale: int
    tile_width: Fraction  # degrees of longitude
    tile_height: Fraction  # degrees of latitude
    block_size: Fraction
    naming: NameScheme
    kind: str = "regular"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TileSchemeError(f"the grid kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "map_frame" and (self.tile_width, self.tile_height) != (frames.FRAME_WIDTH,
                                                                              frames.FRAME_HEIGHT):
            raise TileSchemeError(f"a map_frame grid has 1:25,000 frames of 7′30″ × 5′00″: tile_size = "
                                  f"[\"1/8\", \"1/12\"], not {self._size_text}")
        if "sheet" in self.naming.fields and self.kind != "map_frame":
            raise TileSchemeError(f"the naming field {{sheet}} numbers map frames: it needs kind = \"map_frame\", "
                                  f"not {self.kind!r}")
        if self.block_size > min(self.tile_width, self.tile_height):
            raise TileSchemeError(f"the block size {_deg(self.block_size)}° is larger than the "
                                  f"{self._size_text} tile")
        try:
            self.input_grid.pixels(self.block_size)  # raises unless a block is whole pixels
        except ValueError as exc:
            raise TileSchemeError(str(exc)) from None
        for what, size in (("tile width", self.tile_width), ("tile height", self.tile_height)):
            if (size / self.block_size).denominator != 1:
                # square tiles keep the message they always had
                what = "tile size" if self.is_square else what
                raise TileSchemeError(f"{what} {_deg(size)}° is not a whole number of {_deg(self.block_size)}° blocks")
        if {"lon", "lat"} & set(self.naming.fields) and min(self.tile_width, self.tile_height) < _NAME_RESOLUTION:
            raise TileSchemeError(f"tiles of {self._size_text} are too small to be told apart by their corners "
                                  "in 6 decimals")

    @classmethod
    def create(cls, *, input_res: Size, scale: int, tile_size: Size | Sequence[Size], block_size: Size,
               naming: str, kind: str = "regular") -> TileScheme:
        """A scheme from a product's [grid]: `tile_size` is one size (square tiles, "2.5") or [lon, lat]
        (["1/8", "1/12"]); refuses in one line (TileSchemeError) what cannot cut the lattice."""
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise TileSchemeError(f"the scale {scale!r} must be a whole number of output pixels per input pixel, "
                                  "at least 1")
        width, height = parse_tile_size(tile_size)
        try:
            names = NameScheme(naming)
        except ValueError as exc:
            raise TileSchemeError(str(exc)) from None
        return cls(Grid(parse_size(input_res, "input resolution")), scale, width, height,
                   parse_size(block_size, "block size"), names, kind)

    # ---- sizes

    @property
    def is_square(self) -> bool:
        return self.tile_width == self.tile_height

    @property
    def _size_text(self) -> str:
        if self.is_square:
            return f"{_deg(self.tile_width)}°"
        return f"{_deg(self.tile_width)}° × {_deg(self.tile_height)}°"

    @property
    def tile_size(self) -> Fraction:
        """The side of a square tile; rectangular tiles have `tile_width` and `tile_height` instead."""
        if not self.is_square:
            raise TileSchemeError(f"tiles of {self._size_text} are not square: use tile_width and tile_height")
        return self.tile_width

    @property
    def output_grid(self) -> Grid:
        return self.input_grid.scaled(self.scale)

    @property
    def block_px(self) -> int:
        """Input pixels along one side of a block."""
        return self.input_grid.pixels(self.block_size)

    @property
    def tile_blocks(self) -> tuple[int, int]:
        """(rows, cols) of blocks in a tile: (25, 25) for CBRA, (4, 6) for a 1:25,000 frame of 1/48° blocks."""
        return int(self.tile_height / self.block_size), int(self.tile_width / self.block_size)

    @property
    def blocks_per_tile(self) -> int:
        """Blocks along one side of a square tile; rectangular tiles have `tile_blocks`."""
        rows, cols = self.tile_blocks
        if rows != cols:
            raise TileSchemeError(f"tiles of {self._size_text} are {rows} × {cols} blocks, not square: "
                                  "use tile_blocks")
        return rows

    def with_block_size(self, block_size: Size) -> TileScheme:
        return TileScheme(self.input_grid, self.scale, self.tile_width, self.tile_height,
                          parse_size(block_size, "block size"), self.naming, self.kind)

    def with_naming(self, naming: str) -> TileScheme:
        """The same tiles under another naming template (e.g. an output's own)."""
        try:
            names = NameScheme(naming)
        except ValueError as exc:
            raise TileSchemeError(str(exc)) from None
        return replace(self, naming=names)

    # ---- tiles

    def tile_corner(self, tile_row: int, tile_col: int) -> tuple[Fraction, Fraction]:
        """(west, north) of a tile of the tile lattice."""
        return ORIGIN_X + tile_col * self.tile_width, ORIGIN_Y - tile_row * self.tile_height

    def tile_bounds(self, tile_row: int, tile_col: int) -> tuple[float, float, float, float]:
        """(west, south, east, north) of a tile, in degrees."""
        west, south, east, north = self.tile_bounds_exact(tile_row, tile_col)
        return float(west), float(south), float(east), float(north)

    def tile_bounds_exact(self, tile_row: int, tile_col: int) -> tuple[Fraction, Fraction, Fraction, Fraction]:
        """(west, south, east, north) of a tile, as exact Fractions."""
        west, north = self.tile_corner(tile_row, tile_col)
        return west, north - self.tile_height, west + self.tile_width, north

    def tile_box(self, tile_row: int, tile_col: int) -> Box:
        """The input-lattice box of a whole tile."""
        rows, cols = self.tile_blocks
        n = self.block_px
        return Box(tile_row * rows * n, tile_col * cols * n, rows * n, cols * n)

    def tile_of_block(self, block_row: int, block_col: int) -> tuple[int, int]:
        """(tile_row, tile_col) of the tile a block of the block lattice lies in."""
        rows, cols = self.tile_blocks
        return block_row // rows, block_col // cols

    def sheet(self, tile_row: int, tile_col: int) -> str:
        """The GB/T 13989 sheet number of a tile of a map_frame scheme (e.g. J50F001019)."""
        if self.kind != "map_frame":
            raise TileSchemeError(f"tiles of a {self.kind!r} grid have no sheet number: it needs kind = "
                                  "\"map_frame\"")
        return frames.frame_sheet(tile_row, tile_col)

    def tile_name(self, tile_row: int, tile_col: int, date: Date | None = None, pair: Pair | None = None) -> str:
        """The file name of a tile at `date` (a year such as 2019, or "2018-08", "2018-08-15") or for the pair
        of dates `pair` = (from, to)."""
        west, north = self.tile_corner(tile_row, tile_col)
        return self.naming.name(west, north, date, pair)

    def parse_tile_name(self, name: str) -> TileName:
        """The tile, date and pair of a tile name; refuses names of no tile of this lattice."""
        parts: NameParts = self.naming.read(name)
        # corners are named to 6 decimals (39 11/12° → 39.916667): take the nearest tile, then require that
        # its name is this name, so only the names this scheme writes parse back
        row = round((ORIGIN_Y - parts.north) / self.tile_height)
        col = round((parts.west - ORIGIN_X) / self.tile_width)
        try:
            again = self.tile_name(row, col, parts.date, parts.pair)
        except ValueError as exc:  # e.g. a corner-named map frame south of the equator
            raise ValueError(f"{name!r}: {exc}") from None
        if again != name:
            raise ValueError(f"{name!r}: corner {float(parts.west)}, {float(parts.north)} is not on the "
                             f"{self._size_text} tile lattice")
        return TileName(row, col, parts.date, parts.pair)

    def tile_from_name(self, name: str) -> tuple[int, int, int | None]:
        """(tile_row, tile_col, year) of a tile name; refuses corners off the tile lattice."""
        parsed = self.parse_tile_name(name)
        return parsed.row, parsed.col, parsed.year

    # ---- blocks

    def block_box(self, block_row: int, block_col: int) -> Box:
        """The input-lattice box of a block of the block lattice."""
        n = self.block_px
        return Box(block_row * n, block_col * n, n, n)

    def block_range(self, bounds: tuple[float, float, float, float]) -> tuple[range, range]:
        """Rows and columns of the block lattice whose cells meet (west, south, east, north)."""
        west, south, east, north = (as_fraction(v) for v in bounds)
        size = self.block_size
        rows = range(math.floor((ORIGIN_Y - north) / size), math.ceil((ORIGIN_Y - south) / size))
        cols = range(math.floor((west - ORIGIN_X) / size), math.ceil((east - ORIGIN_X) / size))
        return rows, cols
