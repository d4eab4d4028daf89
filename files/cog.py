"""The one COG writer: a plain tiled GTiff translated by rio-cogeo into a Cloud-Optimized GeoTIFF.

`translate_to_cog` is the translation (the export's tiles, written block by block to a scratch GTiff);
`write_cog` writes a whole array that way (the synthetic scenes), published by write-then-rename. The
translator's own temporary (with overviews) goes beside its destination, compressed, so that a caller
who puts the destination in a scratch folder keeps every temporary there.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import rasterio
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from .atomic import replacing, scratch_file

# One GDAL thread per writer by default: tiles are written by many tasks at once, one core each.
SINGLE_THREADED: Mapping[str, str] = {"GDAL_NUM_THREADS": "1"}
BLOCKSIZE = 512


def cog_profile(compress: str, *, blocksize: int = BLOCKSIZE,
                creation_options: Mapping[str, object] | None = None) -> dict[str, object]:
    """The GTiff creation options of a COG: rio-cogeo's profile `compress` (deflate, zstd, lzw, raw, …),
    square blocks of `blocksize`, BigTIFF if needed, then `creation_options` (e.g. PREDICTOR, ZSTD_LEVEL)."""
    with warnings.catch_warnings():
        # rio-cogeo warns that readers built against an old libtiff may lack ZSTD, WEBP, LERC: known
        warnings.filterwarnings("ignore", message="Non-standard compression schema", category=UserWarning)
        profile = cog_profiles.get(compress.lower())
    profile.update(blockxsize=blocksize, blockysize=blocksize, BIGTIFF="IF_SAFER")
    profile.update(creation_options or {})
    return profile


def translate_to_cog(src: str | os.PathLike[str], dest: str | os.PathLike[str], *, compress: str,
                     overview_resampling: str, blocksize: int = BLOCKSIZE,
                     creation_options: Mapping[str, object] | None = None,
                     config: Mapping[str, str] = SINGLE_THREADED) -> None:
    """Translate the raster `src` into a COG at `dest` (written in place: give a temporary name and rename
    it, or use `write_cog`). Overviews down to one block, made with `overview_resampling`; nodata, colour
    table, band descriptions and tags are kept. The translator's temporary lies beside `dest`, compressed
    (about the COG's size instead of 1.5 × the raw pixels)."""
    cog_translate(str(src), str(dest), cog_profile(compress, blocksize=blocksize, creation_options=creation_options),
                  overview_resampling=overview_resampling, quiet=True, in_memory=False, config=dict(config),
                  use_cog_driver=False, allow_intermediate_compression=True)


def write_cog(path: str | os.PathLike[str], data: np.ndarray, *, crs: object, transform: object,
              nodata: float | None, compress: str, overview_resampling: str,
              descriptions: Sequence[str] = (), colormap: Mapping[int, tuple[int, ...]] | None = None,
              tags: Mapping[str, str] | None = None, blocksize: int = BLOCKSIZE,
              creation_options: Mapping[str, object] | None = None, config: Mapping[str, str] = SINGLE_THREADED,
              scratch_dir: str | os.PathLike[str] | None = None) -> None:
    """Write (bands, H, W) or (H, W) `data` as a COG at `path`: a scratch GTiff, `translate_to_cog` to a
    partial name, then a rename, so a reader never sees half a file. Temporaries (`.{name}.{pid}.scratch.tif`,
    `.partial.tif` and the translator's) go to `scratch_dir` (default: beside `path`), on the same file
    system."""
    if data.ndim == 2:
        data = data[None]
    count, height, width = data.shape
    profile = cog_profile(compress, blocksize=blocksize, creation_options=creation_options)
    scratch_profile = {
        "driver": "GTiff", "width": width, "height": height, "count": count, "dtype": data.dtype.name,
        "crs": crs, "transform": transform, "nodata": nodata, "tiled": True, "blockxsize": blocksize,
        "blockysize": blocksize, "BIGTIFF": "IF_SAFER", "interleave": profile.get("interleave", "pixel"),
        **({"compress": profile["compress"]} if "compress" in profile else {}),
    }
    with replacing(path, scratch_dir=scratch_dir, suffix=".partial.tif") as partial, \
            scratch_file(path, scratch_dir=scratch_dir, suffix=".scratch.tif") as scratch:
        with rasterio.Env(**config):
            with rasterio.open(scratch, "w", **scratch_profile) as dst:
                dst.write(data)
                for band, description in enumerate(descriptions, start=1):
                    dst.set_band_description(band, description)
                if colormap is not None:
                    dst.write_colormap(1, colormap)
                if tags:
                    dst.update_tags(**tags)
        translate_to_cog(scratch, partial, compress=compress, overview_resampling=overview_resampling,
                         blocksize=blocksize, creation_options=creation_options, config=config)
