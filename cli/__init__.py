"""The `mapgen` command line over the library (as rasterio's `rio` over rasterio): it parses and calls
mapgen.pipeline, mapgen.synthetic, mapgen.training and the rest; no map is made here.

`mapgen = "mapgen.cli:main"`; `python -m mapgen.cli` is the same command.
"""

from .commands import main

__all__ = ["main"]
