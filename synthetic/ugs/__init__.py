"""Synthetic ~1 m city scenes for the UGS product: clear RGB mosaics like Google Earth's, with the five UGS
types of Table 1 as ground truth, vegetation outside the city that is not UGS, and a GUB-like urban
boundary (raster and polygons), in a radiometric style of their own (`generate_ugs_scene`)."""

from .scene import UGS_GENERATOR_VERSION, generate_ugs_scene, rasterize_boundary

__all__ = ["UGS_GENERATOR_VERSION", "generate_ugs_scene", "rasterize_boundary"]
