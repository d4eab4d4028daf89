"""Writing output tiles as Cloud-Optimized GeoTIFFs, and one VRT per year over them.

Pixels without input data carry the product's nodata value (not an internal mask: QGIS 3.22 shows a
GDAL mask as a second band and then renders the tile as RGB instead of with its colour table).

A tile's pixel values are filled block by block into one array in memory, which GDAL's COG driver encodes
once, with overviews built in memory by GDAL, and which is written under a partial name; only then is it
renamed to its final name: a final name never holds a partial tile. The partial file lives in the run's
scratch folder (inside the run folder, on the output's file system), never beside the tiles; free space
is checked before it. Memory per tile being written is bounded by the tile's size, whatever the region's:
one byte per pixel, a third more for the overviews, plus the compressed COG (a CBRA tile of 13,356² px:
178 + 59 MB, and a few MB for a sparse map).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from html import escape
from pathlib import Path

import numba
import numpy as np
import rasterio

from mapgen.files import replacing, write_text
from mapgen.files.cog import array_dataset, copy_to_cog
from mapgen.tiles import Box, Grid
from mapgen.workflows import OutputSpec

from .classes import lookup_table
from .disk import ensure_space, free_bytes, full_disk

TIFF_ENV = {"GDAL_NUM_THREADS": "1"}


def colormap(spec: OutputSpec) -> dict[int, tuple[int, int, int, int]]:
    return {spec.nodata: (0, 0, 0, 0), **{c.value: c.rgba for c in spec.classes}}


# A tile's only temporary is its COG under a partial name (pixels and overviews: ≈ 4/3 of the compressed
# pixels); twice the estimate below leaves room for a tile that compresses worse than it assumes.
TEMPORARIES_FACTOR = 2


def tile_space_needed(extent: Box) -> int:
    """Bytes a tile's temporaries need before its pixels are known: those of a tile that compresses 16:1
    (sparse binary maps do far better)."""
    return TEMPORARIES_FACTOR * extent.width * extent.height // 16


@numba.njit(cache=True, nogil=True)
def _encode_into(out: np.ndarray, codes: np.ndarray, table: np.ndarray) -> None:
    # `classes.encode` without its temporary: NumPy's table[codes] takes ~5× as long as this loop
    for i in range(codes.shape[0]):
        for j in range(codes.shape[1]):
            out[i, j] = table[codes[i, j]]


def tile_pixels(extent: Box, parts: Iterable[tuple[Box, np.ndarray]], table: np.ndarray, nodata: int) -> np.ndarray:
    """The (H, W) uint8 pixel values of the tile covering `extent`: each part's class codes mapped by
    `table` (a `lookup_table`), `nodata` where no part lies. Parts must lie inside `extent`."""
    table = np.asarray(table)
    if table.dtype != np.uint8 or table.shape != (256,):
        raise ValueError(f"a lookup table is 256 uint8 values, not {table.shape} {table.dtype}")
    pixels = np.full(extent.shape, nodata, np.uint8)
    for box, codes in parts:
        codes = np.asarray(codes)
        # any other dtype could hold codes the table has no entry for, or be silently wrapped
        if codes.dtype != np.uint8:
            raise TypeError(f"class codes must be uint8, not {codes.dtype}")
        row, col = box.row - extent.row, box.col - extent.col
        if codes.shape != box.shape or row < 0 or col < 0 or row + box.height > extent.height \
                or col + box.width > extent.width:
            raise ValueError(f"part {box} ({codes.shape}) does not lie inside the tile {extent}")
        _encode_into(pixels[row:row + box.height, col:col + box.width], codes, table)
    return pixels


def write_tile(path: Path, grid: Grid, extent: Box, parts: Iterable[tuple[Box, np.ndarray]],
               spec: OutputSpec, tags: dict[str, str], *, scratch_dir: Path | None = None,
               table: np.ndarray | None = None) -> None:
    """Write the COG at `path` covering `extent` (output grid) from (box, class codes) parts, the codes
    mapped to values by `table` (default: the output's `lookup_table`). The tile is held in memory (one
    byte per pixel) and written once; its partial file goes to `scratch_dir` (default: beside `path`,
    hidden), which must be on the same file system."""
    table = lookup_table(spec.values, spec.nodata) if table is None else table
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(scratch_dir) if scratch_dir is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    need = tile_space_needed(extent)
    ensure_space(folder, need, f"the temporaries of {path}")
    pixels = tile_pixels(extent, parts, table, spec.nodata)
    # reading the blocks took a while, and other tiles are being written: look again before writing
    ensure_space(folder, need, f"the COG of {path}")
    # the COG is written under its partial name in `folder` and renamed onto `path` once complete
    with replacing(path, scratch_dir=folder, suffix=".partial.tif") as partial:
        try:
            with array_dataset(pixels, crs=grid.crs, transform=grid.transform(extent), nodata=spec.nodata,
                               descriptions=[spec.band_description], colormap=colormap(spec), tags=tags) as src:
                copy_to_cog(src, partial, compress=spec.compress, overview_resampling=spec.overview_resampling,
                            config=TIFF_ENV)
        except OSError as exc:
            # the COG is encoded in memory and then written by Python: a full disk says ENOSPC; by the space
            # left, before the partial goes, in case a file system says it otherwise
            if exc.errno == errno.ENOSPC or free_bytes(folder) < need:
                raise full_disk(folder, need, str(path)) from None
            raise


def write_vrt(path: Path, tiles: list[Path], spec: OutputSpec, *, scratch_dir: Path | None = None) -> None:
    """A mosaic VRT over tiles that share one output lattice, keeping their nodata and colours; written in
    `scratch_dir` (default: beside `path`, hidden) and renamed."""
    path = Path(path)
    infos = []
    for tile in sorted(tiles):
        with rasterio.open(tile) as src:
            infos.append((tile, src.transform, src.width, src.height, src.crs))
    res_x, res_y = infos[0][1].a, infos[0][1].e
    west = min(t.c for _, t, _, _, _ in infos)
    north = max(t.f for _, t, _, _, _ in infos)
    east = max(t.c + w * res_x for _, t, w, _, _ in infos)
    south = min(t.f + h * res_y for _, t, _, h, _ in infos)
    width, height = round((east - west) / res_x), round((south - north) / res_y)

    def sources(band: str) -> str:
        out = []
        for tile, t, w, h, _ in infos:
            xoff, yoff = round((t.c - west) / res_x), round((t.f - north) / res_y)
            name = escape(os.path.relpath(tile, path.parent))
            out.append(
                f'      <SimpleSource>\n'
                f'        <SourceFilename relativeToVRT="1">{name}</SourceFilename>\n'
                f'        <SourceBand>{band}</SourceBand>\n'
                f'        <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>\n'
                f'        <DstRect xOff="{xoff}" yOff="{yoff}" xSize="{w}" ySize="{h}"/>\n'
                f'      </SimpleSource>')
        return "\n".join(out)

    cmap = colormap(spec)
    entries = "\n".join(
        '        <Entry c1="{}" c2="{}" c3="{}" c4="{}"/>'.format(*cmap.get(i, (0, 0, 0, 0))) for i in range(256))
    gt = (west, res_x, 0.0, north, 0.0, res_y)
    xml = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
        f'  <SRS dataAxisToSRSAxisMapping="2,1">{escape(infos[0][4].to_wkt())}</SRS>\n'
        f'  <GeoTransform>{", ".join(repr(v) for v in gt)}</GeoTransform>\n'
        f'  <VRTRasterBand dataType="Byte" band="1">\n'
        f'    <Description>{escape(spec.band_description)}</Description>\n'
        f'    <NoDataValue>{spec.nodata}</NoDataValue>\n'
        f'    <ColorInterp>Palette</ColorInterp>\n'
        f'    <ColorTable>\n{entries}\n    </ColorTable>\n'
        f'{sources("1")}\n'
        f'  </VRTRasterBand>\n'
        f'</VRTDataset>\n'
    )
    folder = Path(scratch_dir) if scratch_dir is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    write_text(path, xml, scratch_dir=folder, suffix=".partial")
