"""Region × dates → output tiles → processing blocks.

A block is the unit of work and of restart: a box of the input lattice, its bounds, and the years to
run. A tile is an output cell of the tiling; it is written once all of its blocks are done. A plan's dates
are years (2019) or ISO dates ("2018-08", "2018-08-15"); `years` are their years, as ints.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry.base import BaseGeometry

from .grid import Box, Grid
from .naming import Date, Pair, format_date
from .region import RegionError, check_region
from .scheme import TileScheme

_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class Block:
    """A processing block: bounds + grid + years, and where it sits in the block and tile lattices."""

    row: int  # in the block lattice
    col: int
    box: Box  # on the input grid
    grid: Grid  # the input grid
    years: tuple[int, ...]
    tile: tuple[int, int]  # (tile_row, tile_col)

    @property
    def id(self) -> str:
        return f"r{self.row}c{self.col}"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.grid.bounds(self.box)


@dataclass(frozen=True, eq=False)
class Tile:
    """An output tile and the blocks of the plan inside it, kept as two small integer arrays (a national
    plan has ~10^5 blocks; Block objects are made only while a tile is worked on). Its written extent is the
    bounding box of those blocks (a national run fills whole cells; a small region writes only the part it
    touches)."""

    row: int
    col: int
    block_rows: np.ndarray  # int32, in the block lattice, in plan order
    block_cols: np.ndarray
    scheme: TileScheme
    years: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"t{self.row}c{self.col}"

    def __len__(self) -> int:
        return len(self.block_rows)

    @property
    def blocks(self) -> tuple[Block, ...]:
        grid, tile = self.scheme.input_grid, (self.row, self.col)
        return tuple(Block(int(r), int(c), self.scheme.block_box(int(r), int(c)), grid, self.years, tile)
                     for r, c in zip(self.block_rows, self.block_cols, strict=True))

    @property
    def extent(self) -> Box:
        """Input-grid box of the written part of the tile."""
        n = self.scheme.block_px
        top, left = int(self.block_rows.min()), int(self.block_cols.min())
        return Box(top * n, left * n, (int(self.block_rows.max()) - top + 1) * n,
                   (int(self.block_cols.max()) - left + 1) * n)


@dataclass
class Plan:
    scheme: TileScheme
    years: tuple[int, ...]  # the distinct years of `dates`
    region: BaseGeometry
    tiles: list[Tile] = field(default_factory=list)
    dates: tuple[str, ...] = ()  # as names hold them: "2019", "2018-08", …; () → the years

    def __post_init__(self) -> None:
        if not self.dates:
            self.dates = tuple(str(y) for y in self.years)

    @property
    def block_count(self) -> int:
        return sum(len(t) for t in self.tiles)

    def iter_blocks(self) -> Iterator[Block]:
        """Every block, tile by tile, made as it is asked for."""
        for tile in self.tiles:
            yield from tile.blocks

    @property
    def blocks(self) -> list[Block]:
        """Every block as a list (small plans; a national one should use `iter_blocks`)."""
        return list(self.iter_blocks())

    def tile_names(self, date: Date, pair: Pair | None = None) -> list[str]:
        """The file names of the plan's tiles at `date` (a year, or "2018-08", …), or for the pair of dates."""
        return [self.scheme.tile_name(t.row, t.col, date, pair) for t in self.tiles]

    def _names_by_date(self) -> dict[str, list[str]]:
        """Tile names per date ("2019"), or, for a pair naming, per pair of successive dates ("2018_2019", as
        the engine keys pairs)."""
        dates = self.dates
        if self.scheme.naming.paired:
            return {f"{a}_{b}": self.tile_names(b, (a, b)) for a, b in zip(dates, dates[1:], strict=False)}
        return {d: self.tile_names(d) for d in dates}

    def extent(self) -> Box:
        """Input-grid bounding box of every planned block."""
        box = self.tiles[0].extent
        for tile in self.tiles[1:]:
            box = box.union(tile.extent)
        return box

    def area_km2(self) -> float:
        """Geodesic area of the planned blocks (one area per block row)."""
        rows = np.concatenate([t.block_rows for t in self.tiles])
        return sum(_block_area_km2(self.scheme, int(r)) * int(n)
                   for r, n in zip(*np.unique(rows, return_counts=True), strict=True))

    def summary(self) -> dict:
        """Counts, areas and pixel numbers, as printed by `mapgen plan`."""
        blocks = self.block_count
        block_px = self.scheme.block_px
        out_px = block_px * self.scheme.scale
        area_km2 = self.area_km2()
        return {
            "years": list(self.years),
            "dates": list(self.dates),
            "tiles": len(self.tiles),
            "tile_names": self._names_by_date(),
            "blocks": blocks,
            "block_years": blocks * len(self.dates),
            "block_size_deg": float(self.scheme.block_size),
            # one number for square tiles, as ever; [lon, lat] for rectangular ones
            "tile_size_deg": (float(self.scheme.tile_width) if self.scheme.is_square
                              else [float(self.scheme.tile_width), float(self.scheme.tile_height)]),
            "tile_width_deg": float(self.scheme.tile_width),
            "tile_height_deg": float(self.scheme.tile_height),
            "tile_blocks": list(self.scheme.tile_blocks),
            "grid_kind": self.scheme.kind,
            "area_km2": round(area_km2, 3),
            "region_area_km2": round(abs(_GEOD.geometry_area_perimeter(self.region)[0]) / 1e6, 3),
            "input_resolution_deg": float(self.scheme.input_grid.res),
            "output_resolution_deg": float(self.scheme.output_grid.res),
            "input_pixels_per_year": blocks * block_px**2,
            "output_pixels_per_year": blocks * out_px**2,
            "output_pixels": blocks * out_px**2 * len(self.dates),
            "bounds": list(self.region.bounds),
        }


@lru_cache(maxsize=4096)
def _row_area_km2(lat_north: float, lat_south: float, width_deg: float) -> float:
    lons = [0.0, width_deg, width_deg, 0.0]
    lats = [lat_south, lat_south, lat_north, lat_north]
    return abs(_GEOD.polygon_area_perimeter(lons, lats)[0]) / 1e6


def _block_area_km2(scheme: TileScheme, block_row: int) -> float:
    west, south, east, north = scheme.input_grid.bounds(scheme.block_box(block_row, 0))
    return _row_area_km2(north, south, east - west)


def _check_sheets(scheme: TileScheme, tiles: list[Tile]) -> None:
    """Refuse, in one line, a map_frame plan with a frame that has no sheet number (south of the equator)."""
    for tile in tiles:
        try:
            scheme.sheet(tile.row, tile.col)
        except ValueError as exc:
            raise RegionError(f"the region reaches a map frame with no GB/T 13989 sheet number: {exc}") from None


def plan_region(region: BaseGeometry, scheme: TileScheme, years: Sequence[Date]) -> Plan:
    """The tiles that meet the region and, inside them, the blocks that touch it, in a fixed order. `years`
    are the run's dates: years (2019 or "2019") or ISO dates ("2018-08", "2018-08-15")."""
    region = check_region(region)  # split at ±180° when it crosses the antimeridian
    dates = tuple(sorted({format_date(d) for d in years}))  # ISO strings of one precision sort in time order
    if not dates:
        raise RegionError("no years to plan")
    years = tuple(sorted({int(d[:4]) for d in dates}))
    rows, cols = scheme.block_range(region.bounds)
    grid = scheme.input_grid
    size = float(scheme.block_size)
    shapely.prepare(region)
    per_tile: dict[tuple[int, int], list[tuple[int, int]]] = {}
    west0, _, _, north0 = grid.bounds(scheme.block_box(rows.start, cols.start))
    col_idx = np.arange(cols.start, cols.stop)
    for row in rows:
        north = north0 - (row - rows.start) * size
        wests = west0 + (col_idx - cols.start) * size
        cells = shapely.box(wests, north - size, wests + size, north)
        # a block that only shares an edge or a corner with the region has none of it inside
        hits = col_idx[shapely.intersects(region, cells) & ~shapely.touches(region, cells)]
        for col in hits:
            per_tile.setdefault(scheme.tile_of_block(row, int(col)), []).append((row, int(col)))
    tiles = [Tile(r, c, *np.asarray(cells, dtype=np.int32).T, scheme, years)
             for (r, c), cells in sorted(per_tile.items())]
    if not tiles:
        raise RegionError("the region touches no block")
    if scheme.kind == "map_frame":
        _check_sheets(scheme, tiles)
    return Plan(scheme, years, region, tiles, dates)
