"""Output grids and naming schemes: region → tiles → blocks, and tile name ⇄ bounds."""

from .frames import SheetError, frame_sheet, sheet_at, sheet_bounds, sheet_corner, sheet_frame, sheet_number
from .grid import Box, Grid, as_fraction
from .naming import NameParts, NameScheme
from .plan import Block, Plan, Tile, plan_region
from .region import RegionError, check_region, load_region, region_name
from .scheme import TileName, TileScheme, TileSchemeError

__all__ = [
    "Block", "Box", "Grid", "NameParts", "NameScheme", "Plan", "RegionError", "SheetError", "Tile", "TileName",
    "TileScheme", "TileSchemeError", "as_fraction", "check_region", "frame_sheet", "load_region", "plan_region",
    "region_name",
    "sheet_at", "sheet_bounds", "sheet_corner", "sheet_frame", "sheet_number",
]
