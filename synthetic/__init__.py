"""Procedural, georeferenced multi-year scenes with ground truth (after SynRS3D), so that the CBRA
pipeline runs end to end without the internet: Sentinel-2-like composites, Dynamic-World-like built
probability, rooftop and land-cover masks at res/scale, a parameter sidecar and a static STAC catalog.
"""

from .materials import LANDCOVER_CLASSES
from .scene import GENERATOR_VERSION, generate_scene

__all__ = ["GENERATOR_VERSION", "LANDCOVER_CLASSES", "generate_scene"]
