"""A mask input given as polygons (an urban boundary): rasterised onto the lattice by rasterio, refused in
one line when it is empty or misses the region."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import shapely

from mapgen.pipeline.sources import SourceError
from mapgen.pipeline.sources.resolve import layer_sources
from mapgen.pipeline.sources.vector import VectorSource, is_vector_file
from mapgen.tiles import Box, Grid
from mapgen.workflows import load_product

RES = Fraction(1, 100800)


def _geojson(path, geometries) -> str:
    features = [{"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(g)} for g in geometries]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return str(path)


def _gub():
    return next(s for s in load_product("ugs").inputs if s.name == "gub")


def test_polygons_become_1_inside_0_outside_by_pixel_centre(tmp_path):
    grid = Grid(RES)
    box = Box(6_700_000, 29_600_000, 40, 60)  # near 23.5 N, 113.6 E
    west, south, east, north = grid.bounds(box)
    # a polygon covering the left half of the box exactly on pixel edges, and a sliver that holds no centre
    half = west + 30 * float(RES)
    path = _geojson(tmp_path / "gub.geojson", [shapely.box(west, south, half, north),
                                               shapely.box(east - 0.4 * float(RES), south, east, north)])
    source = VectorSource(path)
    assert source.check(_gub(), [2018], shapely.box(west, south, east, north)) == {2018: 1.0}
    values = source.read(_gub(), 2018, grid, box)
    assert values.shape == (1, 40, 60) and values.dtype == np.float32
    expected = np.zeros((40, 60), np.float32)
    expected[:, :30] = 1
    np.testing.assert_array_equal(values[0], expected)


def test_a_vector_file_is_told_from_a_stac_catalog(tmp_path):
    vector = _geojson(tmp_path / "b.json", [shapely.box(0, 0, 1, 1)])
    (tmp_path / "catalog.json").write_text(json.dumps({"type": "Catalog", "id": "x", "links": []}))
    assert is_vector_file(vector) and is_vector_file(_geojson(tmp_path / "b.geojson", []))
    assert not is_vector_file(str(tmp_path / "catalog.json"))
    sources = layer_sources(vector, load_product("ugs"), ["2021"])
    assert isinstance(sources["rgb"], VectorSource)  # a mask given alone fills the image slot, as for rasters


@pytest.mark.parametrize("geometries, phrase", [
    ([], "holds no polygons"),
    ([shapely.box(100.0, 30.0, 100.1, 30.1)], "meets the region"),
])
def test_an_empty_boundary_or_one_that_misses_the_region_is_refused(tmp_path, geometries, phrase):
    source = VectorSource(_geojson(tmp_path / "gub.geojson", geometries))
    with pytest.raises(SourceError, match=phrase) as info:
        source.check(_gub(), [2018], shapely.box(113.3, 23.1, 113.34, 23.13))
    assert "\n" not in str(info.value)
