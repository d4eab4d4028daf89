"""pipeline/export.py: a tile's COG from its blocks' class codes, against a plain NumPy expectation."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import MaskFlags
from rio_cogeo.cogeo import cog_validate

from mapgen.pipeline.classes import NODATA, lookup_table
from mapgen.pipeline.context import tile_scheme
from mapgen.pipeline.export import tile_pixels, write_tile
from mapgen.tiles import Box
from mapgen.workflows import load_product

PRODUCT = load_product("cbra")
SPEC = PRODUCT.output
GRID = tile_scheme(PRODUCT).output_grid
TAGS = {"PRODUCT": "CBRA", "YEAR": "2016", "NODATA": "1 = no input data"}
EXTENT = Box(60_000, 3_940_000, 1300, 1100)  # not a multiple of the 512 blocks nor of the overviews' factors
STEP = 400


def codes_of(extent: Box, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = (rng.random(extent.shape) < 0.1).astype(np.uint8)  # background, a little rooftop
    codes[:, :37] = NODATA  # and a margin without input data
    return codes


def blocks(extent: Box, codes: np.ndarray, missing: set[tuple[int, int]] = frozenset()):
    for r in range(0, extent.height, STEP):
        for c in range(0, extent.width, STEP):
            if (r // STEP, c // STEP) not in missing:
                box = Box(extent.row + r, extent.col + c, min(STEP, extent.height - r), min(STEP, extent.width - c))
                yield box, codes[r:r + box.height, c:c + box.width]


def test_a_tile_is_its_codes_through_the_table_and_nodata_where_no_block_lies(tmp_path):
    codes, missing = codes_of(EXTENT), {(0, 0), (1, 2), (3, 1)}
    table = lookup_table(SPEC.values, SPEC.nodata)
    expected = table[codes]
    for r, c in missing:
        expected[r * STEP:(r + 1) * STEP, c * STEP:(c + 1) * STEP] = SPEC.nodata
    scratch, path = tmp_path / "run" / "tmp", tmp_path / "out" / "CBRA_2016_E115N40.tif"

    def parts():
        for part in blocks(EXTENT, codes, missing):
            assert not path.exists() and not list(scratch.iterdir())  # nothing is written before the pixels
            yield part

    write_tile(path, GRID, EXTENT, parts(), SPEC, TAGS, scratch_dir=scratch)
    assert cog_validate(str(path), quiet=True)[0]
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), expected)
        assert (src.crs, src.transform, src.shape) == (GRID.crs, GRID.transform(EXTENT), EXTENT.shape)
        assert src.dtypes == ("uint8",) and src.nodata == SPEC.nodata
        assert src.mask_flag_enums == ([MaskFlags.nodata],)  # nodata as a value, no internal mask (QGIS)
        assert src.descriptions == (SPEC.band_description,)
        assert src.colormap(1)[255] == (228, 38, 44, 255) and src.colormap(1)[SPEC.nodata] == (0, 0, 0, 0)
        assert src.tags() == {**TAGS, "OVERVIEW_RESAMPLING": "NEAREST", "AREA_OR_POINT": "Area"}
        assert src.compression.name == SPEC.compress and src.block_shapes == [(512, 512)]
        assert src.overviews(1) == [2, 4]  # until the shorter side fits in a block
    with rasterio.open(path, OVERVIEW_LEVEL=0) as ovr:
        np.testing.assert_array_equal(ovr.read(1), expected[::2, ::2])  # nearest: the first of each 2 × 2
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [path.name]


def test_tile_pixels_is_encode_of_each_part():
    codes = np.arange(256, dtype=np.uint8).reshape(16, 16)
    extent = Box(10, 20, 20, 16)
    table = lookup_table((3, 7, 9), 200)
    pixels = tile_pixels(extent, [(Box(12, 20, 16, 16), codes)], table, 200)
    assert pixels.shape == (20, 16) and (pixels[:2] == 200).all() and (pixels[18:] == 200).all()
    np.testing.assert_array_equal(pixels[2:18], table[codes])


@pytest.mark.parametrize("part, error", [
    ((Box(0, 0, 4, 4), np.zeros((4, 4), np.int16)), TypeError),  # codes are uint8, nothing else
    ((Box(8, 0, 4, 4), np.zeros((4, 4), np.uint8)), ValueError),  # beyond the tile
    ((Box(0, 0, 4, 4), np.zeros((4, 5), np.uint8)), ValueError),  # not the box's shape
])
def test_tile_pixels_refuses_a_part_that_does_not_fit(part, error):
    with pytest.raises(error):
        tile_pixels(Box(0, 0, 10, 10), [part], lookup_table(SPEC.values, SPEC.nodata), SPEC.nodata)


def test_a_tile_that_fails_midway_leaves_the_earlier_tile_and_no_temporary(tmp_path):
    path, scratch = tmp_path / "CBRA_2016_E115N40.tif", tmp_path / "tmp"
    path.write_bytes(b"an earlier tile")

    def parts():
        yield next(blocks(EXTENT, codes_of(EXTENT)))
        raise RuntimeError("block 3: the stored map does not match its marker")

    with pytest.raises(RuntimeError, match="marker"):
        write_tile(path, GRID, EXTENT, parts(), SPEC, TAGS, scratch_dir=scratch)
    assert path.read_bytes() == b"an earlier tile" and not list(scratch.iterdir())
