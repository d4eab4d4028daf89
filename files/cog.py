"""The one COG writer: an array wrapped as a GDAL in-memory dataset, copied once by GDAL's COG driver.

`array_dataset` wraps a NumPy array (no copy) as a MEM dataset with its georeferencing, nodata, colour
table, band descriptions and tags; `copy_to_cog` builds its overviews in memory and writes the COG with
the COG driver in one pass (the export's tiles, filled block by block); `write_cog` does both for a whole
array (the synthetic scenes) and publishes it by write-then-rename. No temporary file is written: the
overviews live beside the array (a third of its size), the COG is encoded in memory (/vsimem, its
compressed size) and then written to its destination in one piece.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.dtypes import dtype_rev, typename_fwd
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetWriter, MemoryFile
from rasterio.rio.overview import get_maximum_overview_level

from .atomic import replacing

# One GDAL thread per writer by default: tiles are written by many tasks at once, one core each.
SINGLE_THREADED: Mapping[str, str] = {"GDAL_NUM_THREADS": "1"}
BLOCKSIZE = 512

# rio-cogeo's profile names (the products' `compress`) → the COG driver's COMPRESS. GDAL only warns of a
# name it does not know, and writes the pixels uncompressed.
COMPRESSIONS = {"deflate": "DEFLATE", "zstd": "ZSTD", "lzw": "LZW", "packbits": "PACKBITS", "lzma": "LZMA",
                "lerc": "LERC", "lerc_deflate": "LERC_DEFLATE", "lerc_zstd": "LERC_ZSTD", "jpeg": "JPEG",
                "webp": "WEBP", "raw": "NONE"}
# GTiff's names of a compression level; the COG driver takes them all as LEVEL
LEVEL_OPTIONS = ("ZLEVEL", "ZSTD_LEVEL", "LZMA_PRESET")


def cog_options(compress: str, *, blocksize: int = BLOCKSIZE,
                creation_options: Mapping[str, object] | None = None) -> dict[str, str]:
    """The COG driver's creation options: `compress` (deflate, zstd, lzw, raw, …), square blocks of
    `blocksize`, BigTIFF if needed, the overviews given by the source, then `creation_options` (e.g.
    PREDICTOR, ZSTD_LEVEL, which becomes the driver's LEVEL). Refuses (ValueError) an unknown `compress`."""
    if compress.lower() not in COMPRESSIONS:
        raise ValueError(f"compress {compress!r}: not one of {', '.join(COMPRESSIONS)}")
    options: dict[str, str] = {"COMPRESS": COMPRESSIONS[compress.lower()],
                               "BLOCKSIZE": str(blocksize), "BIGTIFF": "IF_SAFER",
                               "OVERVIEWS": "FORCE_USE_EXISTING"}
    for key, value in (creation_options or {}).items():
        options["LEVEL" if key.upper() in LEVEL_OPTIONS else key.upper()] = str(value)
    return options


def overview_factors(width: int, height: int, blocksize: int = BLOCKSIZE) -> list[int]:
    """Decimation factors 2, 4, … of the overviews, as rio-cogeo chose them before (until the shorter
    side fits in a block)."""
    return [2 ** i for i in range(1, get_maximum_overview_level(width, height, minsize=blocksize) + 1)]


@contextmanager
def array_dataset(data: np.ndarray, *, crs: object, transform: object, nodata: float | None,
                  descriptions: Sequence[str] = (), colormap: Mapping[int, tuple[int, ...]] | None = None,
                  tags: Mapping[str, str] | None = None,
                  colorinterp: Sequence[ColorInterp] | None = None) -> Iterator[DatasetWriter]:
    """A GDAL in-memory (MEM) dataset over (bands, H, W) or (H, W) `data`, sharing its memory (no copy;
    `data` must stay alive and unchanged while the dataset is open), with its metadata set. A MEM band's
    colour interpretation is undefined (gray in the COG) unless `colorinterp` says, e.g. red, green, blue."""
    if data.ndim == 2:
        data = data[None]
    if not data.flags.c_contiguous:
        raise ValueError("an array dataset needs a C-contiguous array")
    count, height, width = data.shape
    name = (f"MEM:::DATAPOINTER={data.__array_interface__['data'][0]:#x},PIXELS={width},LINES={height},"
            f"BANDS={count},DATATYPE={typename_fwd[dtype_rev[data.dtype.name]]}")
    # GDAL ≥ 3.10 opens a MEM::: name only when asked to; its georeferencing is set just after opening
    with rasterio.Env(GDAL_MEM_ENABLE_OPEN="YES"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        dataset = rasterio.open(name, "r+")
    with dataset:
        dataset.crs, dataset.transform = crs, transform
        if nodata is not None:
            dataset.nodata = nodata
        for band, description in enumerate(descriptions, start=1):
            dataset.set_band_description(band, description)
        if colormap is not None:
            dataset.write_colormap(1, colormap)
        if tags:
            dataset.update_tags(**tags)
        if colorinterp is not None:
            dataset.colorinterp = list(colorinterp)
        yield dataset


def copy_to_cog(src: DatasetWriter, dest: str | os.PathLike[str], *, compress: str, overview_resampling: str,
                blocksize: int = BLOCKSIZE, creation_options: Mapping[str, object] | None = None,
                config: Mapping[str, str] = SINGLE_THREADED) -> None:
    """Write the in-memory dataset `src` (`array_dataset`) as a COG at `dest`, in place (give a temporary
    name and rename it, or use `write_cog`). Its overviews are built first, in memory, with
    `overview_resampling` (GDAL's BuildOverviews); the COG driver then encodes pixels and overviews once,
    in memory, and the file is written from there (a full disk is an OSError with errno ENOSPC). Nodata,
    colour table, band descriptions and tags are kept; the tag OVERVIEW_RESAMPLING is added (as rio-cogeo
    did)."""
    options = cog_options(compress, blocksize=blocksize, creation_options=creation_options)
    if "GDAL_NUM_THREADS" in config:
        options.setdefault("NUM_THREADS", config["GDAL_NUM_THREADS"])
    with rasterio.Env(**config):
        # the COG driver's own overviews go through a temporary file compressed with ZSTD level 9, a
        # quarter of a sparse tile's time; built in memory they cost one read of the pixels
        factors = overview_factors(src.width, src.height, blocksize)
        if factors and not src.overviews(1):
            src.build_overviews(factors, Resampling[overview_resampling])
        src.update_tags(OVERVIEW_RESAMPLING=Resampling[overview_resampling].name.upper())
        with MemoryFile() as encoded:
            # GDAL deletes a file it failed to write, and names a full disk in many words; Python's write
            # says ENOSPC, with the half-written file still there to show how much space was left
            rasterio.shutil.copy(src, encoded.name, driver="COG", **options)
            with open(dest, "wb") as out:
                out.write(encoded.getbuffer())


def write_cog(path: str | os.PathLike[str], data: np.ndarray, *, crs: object, transform: object,
              nodata: float | None, compress: str, overview_resampling: str,
              descriptions: Sequence[str] = (), colormap: Mapping[int, tuple[int, ...]] | None = None,
              tags: Mapping[str, str] | None = None, colorinterp: Sequence[ColorInterp] | None = None,
              blocksize: int = BLOCKSIZE, creation_options: Mapping[str, object] | None = None,
              config: Mapping[str, str] = SINGLE_THREADED, scratch_dir: str | os.PathLike[str] | None = None) -> None:
    """Write (bands, H, W) or (H, W) `data` as a COG at `path`: `copy_to_cog` to a partial name
    (`.{name}.{pid}.partial.tif` in `scratch_dir`, default beside `path`, on the same file system), then a
    rename, so a reader never sees half a file."""
    data = np.ascontiguousarray(data)
    with replacing(path, scratch_dir=scratch_dir, suffix=".partial.tif") as partial, \
            array_dataset(data, crs=crs, transform=transform, nodata=nodata, descriptions=descriptions,
                          colormap=colormap, tags=tags, colorinterp=colorinterp) as src:
        copy_to_cog(src, partial, compress=compress, overview_resampling=overview_resampling,
                    blocksize=blocksize, creation_options=creation_options, config=config)
