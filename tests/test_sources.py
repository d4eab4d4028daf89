"""Sources: STAC catalogs and file patterns, exact reads on the lattice, reprojection, lazy xarray."""

from __future__ import annotations

from fractions import Fraction

import dask
import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

from mapgen.pipeline.sources import FileSource, SourceError, open_box, read_box
from mapgen.pipeline.sources.resolve import layer_sources
from mapgen.tiles import Box, Grid
from mapgen.workflows import load_product

GRID = Grid(Fraction(1, 11130))
CBRA = load_product("cbra")


def scene_box(path) -> Box:
    with rasterio.open(path) as src:
        return GRID.aligned_box(src.transform, src.width, src.height)


def test_stac_catalog_and_pattern_resolve_the_same_files(scene):
    stac = layer_sources(str(scene), CBRA, [2016])
    pattern = layer_sources(f"{scene}/{{year}}/{{layer}}.tif", CBRA, [2016])
    for layer in ("s2", "built"):
        assert sorted(stac[layer].files) == sorted(pattern[layer].files) == [2016, 2017, 2018]
        assert stac[layer].files == pattern[layer].files
    with pytest.raises(SourceError, match="no 's2' raster for 2015"):
        stac["s2"].check(CBRA.input("s2"), [2015, 2016], (116.3, 39.5, 116.4, 39.6))


def test_aligned_read_is_exact_and_nan_outside(scene):
    path = str(scene / "2017" / "s2.tif")
    src_box = scene_box(path)
    box = Box(src_box.row + 5, src_box.col - 7, 40, 50)  # hangs over the western edge
    data = read_box(path, GRID, box)
    with rasterio.open(path) as src:
        expect = src.read(window=((5, 45), (0, 43)))
    np.testing.assert_array_equal(data[:, :, 7:], expect)
    assert np.isnan(data[:, :, :7]).all()


def test_lazy_xarray_equals_direct_read(scene):
    path = str(scene / "2016" / "s2.tif")
    src_box = scene_box(path)
    box = Box(src_box.row - 20, src_box.col + 30, 300, 260)
    source = FileSource("s2", {2016: path})
    array = open_box(source, CBRA.input("s2"), 2016, GRID, box, chunks=128)
    assert array.chunks is not None and array.shape == (4, 300, 260)
    assert array.rio.crs.to_epsg() == 4326 and array.rio.transform() == GRID.transform(box)
    assert list(array.band.values) == ["B2", "B3", "B4", "B8"]
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(array.values, read_box(path, GRID, box))


def test_a_raster_in_utm_is_reprojected_onto_the_lattice(scene, tmp_path):
    path = str(scene / "2018" / "built.tif")
    utm = tmp_path / "built_utm.tif"
    with rasterio.open(path) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:32650", src.width, src.height,
                                                               *src.bounds, resolution=10)
        profile = src.profile | {"driver": "GTiff", "crs": "EPSG:32650", "transform": transform,
                                 "width": width, "height": height}
        with rasterio.open(utm, "w", **profile) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.bilinear)
        original = src.read(1)
    src_box = scene_box(path)
    inner = Box(src_box.row + 50, src_box.col + 50, src_box.height - 100, src_box.width - 100)
    back = read_box(str(utm), GRID, inner)[0]
    rows, cols = inner.slices_in(src_box)
    assert np.isfinite(back).all()
    # two bilinear resamplings smooth the field a little, nothing more
    assert np.median(np.abs(back - original[rows, cols])) < 0.02
    assert np.corrcoef(back.ravel(), original[rows, cols].ravel())[0, 1] > 0.95


def test_a_scene_written_to_a_relative_folder_is_a_valid_source(tmp_path, monkeypatch):
    from mapgen.synthetic import generate_scene

    monkeypatch.chdir(tmp_path)
    generate_scene((100.001, 30.001, 100.02, 30.02), [2020], "rel/scene", seed=1, margin_px=8)
    sources = layer_sources("rel/scene", CBRA, [2020])
    for layer in ("s2", "built"):
        path = sources[layer].files[2020]
        assert path == str(tmp_path / "rel" / "scene" / "2020" / f"{layer}.tif")
        with rasterio.open(path) as src:
            assert src.count == (4 if layer == "s2" else 1)
