"""Writing output tiles as Cloud-Optimized GeoTIFFs, and one VRT per year over them.

Pixels without input data carry the product's nodata value (not an internal mask: QGIS 3.22 shows a
GDAL mask as a second band and then renders the tile as RGB instead of with its colour table).

A tile is first written block by block to a scratch GTiff, translated to a COG under a partial name,
and only then renamed to its final name: a final name never holds a partial tile. The scratch, the COG
translator's own temporary and the partial file live in the run's scratch folder (inside the run folder,
on the output's file system), never beside the tiles; free space is checked before each of them.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from html import escape
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from mapgen.files import replacing, scratch_file, write_text
from mapgen.files.cog import translate_to_cog
from mapgen.tiles import Box, Grid
from mapgen.workflows import OutputSpec

from .classes import encode, lookup_table
from .disk import DiskFull, ensure_space, free_bytes, full_disk

TIFF_ENV = {"GDAL_NUM_THREADS": "1"}


def colormap(spec: OutputSpec) -> dict[int, tuple[int, int, int, int]]:
    return {spec.nodata: (0, 0, 0, 0), **{c.value: c.rgba for c in spec.classes}}


# The COG translator keeps a temporary copy with overviews (compressed, ≈ the tile's size) beside the
# scratch GTiff; a tile's temporaries then take about this many times its compressed size.
TEMPORARIES_FACTOR = 3


def tile_space_needed(extent: Box) -> int:
    """Bytes a tile's temporaries need before its pixels are known: those of a tile that compresses 16:1
    (sparse binary maps do far better; the real size is checked again once the scratch file is written)."""
    return TEMPORARIES_FACTOR * extent.width * extent.height // 16


def write_tile(path: Path, grid: Grid, extent: Box, parts: Iterable[tuple[Box, np.ndarray]],
               spec: OutputSpec, tags: dict[str, str], *, scratch_dir: Path | None = None,
               table: np.ndarray | None = None) -> None:
    """Write the COG at `path` covering `extent` (output grid) from (box, class codes) parts, the codes
    mapped to values by `table` (default: the output's `lookup_table`). Temporaries go to `scratch_dir`
    (default: beside `path`, hidden), which must be on the same file system."""
    table = lookup_table(spec.values, spec.nodata) if table is None else table
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(scratch_dir) if scratch_dir is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "width": extent.width, "height": extent.height, "count": 1, "dtype": "uint8",
        "crs": grid.crs, "transform": grid.transform(extent), "tiled": True, "blockxsize": 512,
        "blockysize": 512, "compress": "deflate", "BIGTIFF": "IF_SAFER", "nodata": spec.nodata,
    }
    need = tile_space_needed(extent)
    ensure_space(folder, need, f"the temporaries of {path}")
    # the scratch GTiff, the COG under its partial name and the translator's temporary (beside the partial)
    # all lie in `folder`; the partial is renamed onto `path` only once the COG is complete
    with replacing(path, scratch_dir=folder, suffix=".partial.tif") as partial, \
            scratch_file(path, scratch_dir=folder, suffix=".scratch.tif") as scratch:
        try:
            with rasterio.Env(**TIFF_ENV):
                with rasterio.open(scratch, "w", **profile) as dst:
                    # a tile's extent is a rectangle; parts of it no block covers stay nodata
                    for window in (w for _, w in dst.block_windows(1)):
                        dst.write(np.full((int(window.height), int(window.width)), spec.nodata, np.uint8), 1,
                                  window=window)
                    for box, codes in parts:
                        window = Window(box.col - extent.col, box.row - extent.row, box.width, box.height)
                        dst.write(encode(codes, table), 1, window=window)
                    dst.write_colormap(1, colormap(spec))
                    dst.set_band_description(1, spec.band_description)
                    dst.update_tags(**tags)
                need = (TEMPORARIES_FACTOR - 1) * scratch.stat().st_size + (1 << 20)
                ensure_space(folder, need, f"the COG of {path}")
                translate_to_cog(scratch, partial, compress=spec.compress,
                                 overview_resampling=spec.overview_resampling, config=TIFF_ENV)
        except DiskFull:
            raise
        except Exception as exc:
            # GDAL reports a full disk in many words ("TIFFRewriteDirectory", "Write failed", "not recognized
            # as being in a supported file format"): tell it by the space left, before the temporaries go
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or free_bytes(folder) < need:
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
