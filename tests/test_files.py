"""mapgen.files: the one write-then-rename helper and the one COG writer."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from mapgen.files import replacing, scratch_file, temporary_path, write_bytes, write_text
from mapgen.files.cog import write_cog

TRANSFORM = Affine(1e-4, 0, 116.0, 0, -1e-4, 40.0)


def test_the_temporary_is_hidden_beside_the_file_or_in_the_scratch_folder(tmp_path):
    target = tmp_path / "out" / "a.json"
    assert temporary_path(target) == target.parent / f".a.json.{os.getpid()}.tmp"
    assert temporary_path(target, scratch_dir=tmp_path / "s", suffix=".partial") == \
        tmp_path / "s" / f".a.json.{os.getpid()}.partial"


def test_replacing_publishes_on_success_only(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]
    with replacing(target, scratch_dir=tmp_path / "s", suffix=".partial") as tmp:
        (tmp_path / "s").mkdir()
        tmp.write_text("new")
        assert tmp.parent == tmp_path / "s" and target.read_text() == "old"  # not before the block ends
    assert target.read_text() == "new" and not list((tmp_path / "s").iterdir())


def test_write_text_bytes_and_scratch_files(tmp_path):
    write_text(tmp_path / "a.json", "{}\n")
    write_bytes(tmp_path / "b.bin", b"\0\1", fsync=True)
    assert (tmp_path / "a.json").read_text() == "{}\n" and (tmp_path / "b.bin").read_bytes() == b"\0\1"
    with scratch_file(tmp_path / "c.tif", suffix=".scratch.tif") as scratch:
        scratch.write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


@pytest.mark.parametrize("dtype, nodata, resampling", [("uint8", None, "nearest"), ("float32", np.nan, "average")])
def test_write_cog_is_a_valid_cog_of_the_same_pixels(tmp_path, dtype, nodata, resampling):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4, (2, 700, 600)).astype(dtype)
    path = tmp_path / "a.tif"
    colormap = {0: (0, 0, 0, 255), 1: (255, 0, 0, 255)} if dtype == "uint8" else None
    write_cog(path, data[:1] if colormap else data, crs="EPSG:4326", transform=TRANSFORM, nodata=nodata,
              compress="zstd", overview_resampling=resampling, descriptions=["a", "b"][:1 if colormap else 2],
              colormap=colormap, tags={"source": "test"}, creation_options={"ZSTD_LEVEL": 1})
    assert cog_validate(str(path), quiet=True)[0]
    with rasterio.open(path) as src:
        assert np.array_equal(src.read(), data[:1] if colormap else data)
        assert src.block_shapes[0] == (512, 512) and src.overviews(1) == [2]
        assert src.tags()["source"] == "test" and src.compression.name == "zstd"
        assert src.descriptions == (("a",) if colormap else ("a", "b"))
        if colormap:
            assert src.colormap(1)[1] == (255, 0, 0, 255)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


def test_a_failed_cog_write_leaves_the_earlier_file(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"an earlier file")
    data = np.zeros((600, 600), np.uint8)
    with pytest.raises(Exception, match="No such file or directory"):  # the partial's folder does not exist
        write_cog(tmp_path / "a.tif", data, crs="EPSG:4326", transform=TRANSFORM, nodata=None, compress="deflate",
                  overview_resampling="nearest", scratch_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match="no-such-codec"):  # GDAL itself would write it uncompressed
        write_cog(tmp_path / "a.tif", data, crs="EPSG:4326", transform=TRANSFORM, nodata=None,
                  compress="no-such-codec", overview_resampling="nearest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]
    assert (tmp_path / "a.tif").read_bytes() == b"an earlier file"
