"""Writing files safely: the one write-then-rename helper and the one COG writer of mapgen.

Layer 0: it imports nothing of ours (stdlib, numpy, rasterio), so every package may use it.
The COG writer lives in `mapgen.files.cog`, imported on its own, so that importing the atomic helpers
(models, markers) does not load GDAL.
"""

from .atomic import replacing, scratch_file, temporary_path, write_bytes, write_text

__all__ = ["replacing", "scratch_file", "temporary_path", "write_bytes", "write_text"]
