"""An output tiling: input lattice, output scale, tile and block sizes, and how tiles are named."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .grid import ORIGIN_X, ORIGIN_Y, Box, Grid, as_fraction
from .naming import NameScheme


class TileSchemeError(ValueError):
    """A tile, block or pixel size that cannot cut the lattice: one line saying which and why."""


def parse_size(value: float | str | Fraction, what: str) -> Fraction:
    """A size in degrees (0.1, "0.1", "1/30" or a Fraction), exactly; refuses anything not more than 0°."""
    try:
        size = as_fraction(value)
    except (ValueError, TypeError, ZeroDivisionError):
        raise TileSchemeError(f"the {what} {value!r} is not a number of degrees (e.g. 0.1 or 1/30)") from None
    if size <= 0:  # a zero divides by zero, a negative one cuts no block
        raise TileSchemeError(f"the {what} must be more than 0° (e.g. 0.1 or 1/30), not {value}")
    return size


@dataclass(frozen=True)
class TileScheme:
    """Tiles of `tile_size`° cut into processing blocks of `block_size`°, on the lattice of `input_grid`;
    outputs are `scale`× finer than inputs. Tiles and blocks are anchored at (-180°, 90°)."""

    input_grid: Grid
    scale: int
    tile_size: Fraction
    block_size: Fraction
    naming: NameScheme

    def __post_init__(self) -> None:
        if self.block_size > self.tile_size:
            raise TileSchemeError(f"the block size {float(self.block_size)}° is larger than the "
                                  f"{float(self.tile_size)}° tile")
        self.input_grid.pixels(self.block_size)  # raises unless a block is whole pixels
        ratio = self.tile_size / self.block_size
        if ratio.denominator != 1:
            raise ValueError(f"tile size {float(self.tile_size)}° is not a whole number of "
                             f"{float(self.block_size)}° blocks")

    @classmethod
    def create(cls, *, input_res: float | str | Fraction, scale: int, tile_size: float | str | Fraction,
               block_size: float | str | Fraction, naming: str) -> TileScheme:
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise TileSchemeError(f"the scale {scale!r} must be a whole number of output pixels per input pixel, "
                                  "at least 1")
        return cls(Grid(parse_size(input_res, "input resolution")), scale, parse_size(tile_size, "tile size"),
                   parse_size(block_size, "block size"), NameScheme(naming))

    @property
    def output_grid(self) -> Grid:
        return self.input_grid.scaled(self.scale)

    @property
    def block_px(self) -> int:
        """Input pixels along one side of a block."""
        return self.input_grid.pixels(self.block_size)

    @property
    def blocks_per_tile(self) -> int:
        return int(self.tile_size / self.block_size)

    def with_block_size(self, block_size: float | str | Fraction) -> TileScheme:
        return TileScheme(self.input_grid, self.scale, self.tile_size, parse_size(block_size, "block size"),
                          self.naming)

    def tile_corner(self, tile_row: int, tile_col: int) -> tuple[Fraction, Fraction]:
        """(west, north) of a tile of the tile lattice."""
        return ORIGIN_X + tile_col * self.tile_size, ORIGIN_Y - tile_row * self.tile_size

    def tile_name(self, tile_row: int, tile_col: int, year: int | None = None) -> str:
        west, north = self.tile_corner(tile_row, tile_col)
        return self.naming.name(west, north, year)

    def tile_from_name(self, name: str) -> tuple[int, int, int | None]:
        """(tile_row, tile_col, year) of a tile name; refuses corners off the tile lattice."""
        west, north, year = self.naming.parse(name)
        col = (west - ORIGIN_X) / self.tile_size
        row = (ORIGIN_Y - north) / self.tile_size
        if col.denominator != 1 or row.denominator != 1:
            raise ValueError(f"{name!r}: corner {float(west)}, {float(north)} is not on the "
                             f"{float(self.tile_size)}° tile lattice")
        return int(row), int(col), year

    def tile_bounds(self, tile_row: int, tile_col: int) -> tuple[float, float, float, float]:
        west, north = self.tile_corner(tile_row, tile_col)
        return float(west), float(north - self.tile_size), float(west + self.tile_size), float(north)

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
