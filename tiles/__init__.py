"""Output grids and naming schemes: region → tiles → blocks, and tile name ⇄ bounds."""

from .grid import Box, Grid, as_fraction
from .naming import NameScheme
from .plan import Block, Plan, Tile, plan_region
from .region import RegionError, check_region, load_region
from .scheme import TileScheme

__all__ = [
    "Block", "Box", "Grid", "NameScheme", "Plan", "RegionError", "Tile", "TileScheme",
    "as_fraction", "check_region", "load_region", "plan_region",
]
