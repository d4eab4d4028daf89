"""`mapgen stats`: zonal areas on the ellipsoid against a brute force that shares no code with it (exact
polygon-pixel intersections in the zones' own CRS, cell areas from the closed form of the authalic
latitude), on synthetic GeoTIFFs and on a real run, end to end through the command line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from conftest import SOUTH, WEST, YEARS, invoke
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS, Transformer
from rasterio.transform import from_origin

from mapgen.pipeline.export import write_vrt
from mapgen.pipeline.stats import (
    COLUMNS,
    NO_DATA,
    CellAreas,
    RunMaps,
    read_zones,
    value_areas,
    zonal_areas,
)
from mapgen.workflows import load_product, product_names

CBRA = load_product("cbra")
UTM = "EPSG:32650"  # the zones' CRS in these tests: projected, metres, other than the maps'
TOLERANCE = 1e-3  # the 0.1 %


# --------------------------------------------------------------------------------------------------
# The brute force


def cell_area_closed_form(south: float, north: float, width_deg: float, crs: CRS) -> float:
    """The area (m²) between two parallels and two meridians on the ellipsoid, by the authalic latitude:
    width × b² [f(φ) ] with f(φ) = sin φ / (2 (1 − e² sin² φ)) + atanh(e sin φ) / (2e)."""
    ellipsoid = crs.ellipsoid
    a, inv_f = ellipsoid.semi_major_metre, ellipsoid.inverse_flattening
    f = 1 / inv_f
    b = a * (1 - f)
    e = math.sqrt(f * (2 - f))

    def q(lat: float) -> float:
        s = math.sin(math.radians(lat))
        return s / (2 * (1 - e * e * s * s)) + math.atanh(e * s) / (2 * e)

    return math.radians(width_deg) * b * b * (q(north) - q(south))


def cell_weights(path: Path, zone, zone_crs: str) -> np.ndarray:
    """m² of each pixel of the raster at `path` inside `zone` (a polygon in `zone_crs`): the pixel's
    ellipsoidal area × the share of it the zone covers, that share from the exact intersection of the
    pixel (densified, carried into `zone_crs`) with the zone there. Pixels away from the zone's boundary
    are wholly in or out (by their centre), so only those along it are intersected."""
    from rasterio.features import rasterize

    with rasterio.open(path) as src:
        transform, crs, shape = src.transform, CRS.from_wkt(src.crs.wkt), src.shape
    to_map = Transformer.from_crs(zone_crs, crs, always_xy=True)
    to_zone = Transformer.from_crs(crs, zone_crs, always_xy=True)
    on_map = shapely.transform(shapely.segmentize(zone, 20.0), lambda xy: np.column_stack(to_map.transform(*xy.T)))
    near = rasterize([(on_map.boundary, 1)], out_shape=shape, transform=transform, all_touched=True, fill=0,
                     dtype="uint8").astype(bool)
    near = np.pad(near, 1)  # grown by a pixel: the densified curve may pass a hair beside the true one
    near = near[1:-1, 1:-1] | near[:-2, 1:-1] | near[2:, 1:-1] | near[1:-1, :-2] | near[1:-1, 2:]
    share = rasterize([(on_map, 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8").astype(float)
    rows, cols = np.nonzero(near)
    west, north = transform.c + cols * transform.a, transform.f + rows * transform.e
    east, south = west + transform.a, north + transform.e
    pixels = shapely.segmentize(shapely.box(west, south, east, north), transform.a / 16)
    in_zone = shapely.transform(pixels, lambda xy: np.column_stack(to_zone.transform(*xy.T)))
    share[rows, cols] = shapely.area(shapely.intersection(in_zone, zone)) / shapely.area(in_zone)
    row_area = np.array([cell_area_closed_form(transform.f + (r + 1) * transform.e, transform.f + r * transform.e,
                                               transform.a, crs) for r in range(shape[0])])
    return share * row_area[:, None]


def by_value(path: Path, weights: np.ndarray) -> dict[int, float]:
    """The brute force's m² per pixel value of the raster at `path`, from its `cell_weights`."""
    with rasterio.open(path) as src:
        values = src.read(1)
    sums = {int(v): float(weights[values == v].sum()) for v in np.unique(values)}
    return {v: a for v, a in sums.items() if a > 0}


def brute_force(path: Path, zone, zone_crs: str) -> dict[int, float]:
    return by_value(path, cell_weights(path, zone, zone_crs))


# --------------------------------------------------------------------------------------------------
# A small synthetic map: two GeoTIFF tiles and a VRT over them (the run's own VRT writer)

ORIGIN = (116.30, 40.20)  # west, north
RES = 0.01  # degrees: ~0.85 × 1.1 km cells at 40° N, large enough that latitude matters from row to row
SHAPE = (40, 50)  # rows, columns; two tiles of 25 columns


def utm(lon: float, lat: float) -> tuple[float, float]:
    return Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(lon, lat)


def utm_polygon(*lonlat, holes=()) -> shapely.Polygon:
    return shapely.Polygon([utm(*p) for p in lonlat], holes=[[utm(*p) for p in h] for h in holes])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stats-grid")
    values = np.random.default_rng(5).choice(np.array([0, 255, 1], np.uint8), size=SHAPE, p=[0.6, 0.3, 0.1])
    half = SHAPE[1] // 2
    tiles = []
    for i, cols in enumerate((slice(0, half), slice(half, None))):
        path = folder / f"tile{i}.tif"
        transform = from_origin(ORIGIN[0] + i * half * RES, ORIGIN[1], RES, RES)
        with rasterio.open(path, "w", driver="GTiff", width=half, height=SHAPE[0], count=1, dtype="uint8",
                           crs="EPSG:4326", transform=transform, nodata=CBRA.output.nodata) as dst:
            dst.write(values[:, cols], 1)
        tiles.append(path)
    write_vrt(folder / "map.vrt", tiles, CBRA.output)
    return folder / "map.vrt"


def zones_frame(geometries: dict[str, shapely.Polygon]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"name": list(geometries)}, geometry=list(geometries.values()), crs=UTM)


def computed(vrt: Path, frame: gpd.GeoDataFrame, tmp_path: Path) -> dict[str, tuple[float, dict[int, float]]]:
    path = tmp_path / "zones.geojson"
    frame.to_file(path)
    with rasterio.open(vrt) as src:
        zones = read_zones(path, None, CRS.from_wkt(src.crs.wkt))
    return value_areas([vrt], zones)[0]


def assert_close(found: dict[int, float], expected: dict[int, float]) -> None:
    assert set(found) == set(expected), (found, expected)
    for value, area in expected.items():
        assert found[value] == pytest.approx(area, rel=TOLERANCE), (value, found[value], area)


def test_areas_equal_the_brute_force(synthetic, tmp_path):
    """The acceptance criterion: within 0.1 % of the brute force, per pixel value, for zones in another
    CRS, one with a hole, one partly outside the map, one only a few cells wide."""
    zones = {
        "with a hole": utm_polygon((116.33, 40.17), (116.52, 40.16), (116.50, 39.86), (116.34, 39.88),
                                   holes=[[(116.38, 40.10), (116.45, 40.10), (116.45, 40.00), (116.38, 40.01)]]),
        "partly outside": utm_polygon((116.70, 40.12), (116.95, 40.15), (116.90, 39.95), (116.72, 39.90)),
        "thin": utm_polygon((116.55, 40.19), (116.57, 40.19), (116.58, 39.81), (116.555, 39.81)),
    }
    found = computed(synthetic, zones_frame(zones), tmp_path)
    for name, zone in zones.items():
        expected = brute_force(synthetic, zone, UTM)
        total, by_value = found[name]
        assert_close(by_value, expected)
        assert total == pytest.approx(sum(expected.values()), rel=TOLERANCE)
        # every value is counted, the nodata value (1) too: nothing is left out of the zone's total
        assert sum(by_value.values()) == pytest.approx(total, rel=1e-9)
        assert {1, 255, 0} <= set(by_value)
    # the part outside the map counts for nothing: the zone's whole area is more than its area in the map
    outside = zones["partly outside"]
    assert found["partly outside"][0] < 0.9 * outside.area


@settings(max_examples=20, deadline=None)
@given(lon=st.floats(116.25, 116.75), lat=st.floats(39.85, 40.25), w=st.floats(500, 30_000),
       h=st.floats(500, 30_000), angle=st.floats(0, 90))
def test_any_rotated_rectangle_equals_the_brute_force(synthetic, tmp_path_factory, lon, lat, w, h, angle):
    x, y = utm(lon, lat)
    zone = shapely.affinity.rotate(shapely.box(x - w / 2, y - h / 2, x + w / 2, y + h / 2), angle)
    expected = brute_force(synthetic, zone, UTM)
    found = computed(synthetic, zones_frame({"z": zone}), tmp_path_factory.mktemp("z"))
    if not expected:
        assert found.get("z", (0.0, {}))[0] == pytest.approx(0.0, abs=1.0)
        return
    total, by_value = found["z"]
    # a value on a sliver of a cell: compare its area to the zone's, not to itself
    for value, area in expected.items():
        assert by_value.get(value, 0.0) == pytest.approx(area, rel=TOLERANCE, abs=TOLERANCE * total)
    assert total == pytest.approx(sum(expected.values()), rel=TOLERANCE)


def test_cell_areas_are_the_ellipsoids(tmp_path):
    """A whole-world 1° grid's cell areas add up to the ellipsoid's surface (WGS 84: 510,065,621.7 km²),
    and each row's is the closed form's, for WGS 84 and CGCS2000."""
    for crs in ("EPSG:4326", "EPSG:4490"):
        path = tmp_path / f"world-{crs[5:]}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=360, height=180, count=1, dtype="uint8", crs=crs,
                           transform=from_origin(-180, 90, 1, 1)) as dst:
            dst.write(np.zeros((180, 360), np.uint8), 1)
        with rasterio.open(path) as src:
            areas = CellAreas(src).read_window(0, 0, 360, 180)
        assert areas.shape == (180, 360) and (areas == areas[:, :1]).all()
        expected = [cell_area_closed_form(89 - r, 90 - r, 1, CRS(crs)) for r in range(180)]
        np.testing.assert_allclose(areas[:, 0], expected, rtol=1e-6)
        if crs == "EPSG:4326":
            assert areas.sum() / 1e6 == pytest.approx(510_065_621.7, rel=1e-6)


def test_zones_of_one_name_are_one_zone(synthetic, tmp_path):
    """Features sharing a name are dissolved: two halves of a square give the square's areas."""
    a, b = utm(116.35, 39.90), utm(116.55, 40.10)
    square = shapely.box(a[0], a[1], b[0], b[1])
    left, right = (square.intersection(shapely.box(a[0] - 1, a[1] - 1, (a[0] + b[0]) / 2, b[1] + 1)),
                   square.intersection(shapely.box((a[0] + b[0]) / 2, a[1] - 1, b[0] + 1, b[1] + 1)))
    frame = gpd.GeoDataFrame({"name": ["S", "S"]}, geometry=[left, right], crs=UTM)
    found = computed(synthetic, frame, tmp_path)
    assert list(found) == ["S"]
    assert_close(found["S"][1], brute_force(synthetic, square, UTM))


def test_the_manifest_definition_is_the_product():
    """A run's product is read back from its manifest, equal to the product it was made with."""
    from mapgen.pipeline.identity import definition_product, product_definition

    for name in product_names():
        product = load_product(name)
        rebuilt = definition_product(product_definition(product))
        assert product_definition(rebuilt) == product_definition(product)
        assert [o.values for o in rebuilt.outputs] == [o.values for o in product.outputs]


# --------------------------------------------------------------------------------------------------
# A real run, end to end


@pytest.fixture(scope="module")
def finished(client, scene, checkpoint, tmp_path_factory) -> Path:
    from test_run import run

    out = tmp_path_factory.mktemp("stats-run")
    run(client, scene, out, checkpoint)
    return out


def run_zones() -> dict[str, shapely.Polygon]:
    """Zones over the run's 2 × 2 blocks (WEST, SOUTH + 1/15°), in UTM: one with a hole, one partly outside."""
    e, n = WEST + 2 / 30, SOUTH + 2 / 30
    return {
        "Hole": utm_polygon((WEST + 0.005, n - 0.003), (WEST + 0.035, n - 0.005), (WEST + 0.03, SOUTH + 0.033),
                            (WEST + 0.004, SOUTH + 0.035),
                            holes=[[(WEST + 0.012, n - 0.012), (WEST + 0.022, n - 0.012), (WEST + 0.02, n - 0.022)]]),
        "Edge": utm_polygon((e - 0.02, n - 0.01), (e + 0.03, n - 0.008), (e + 0.03, SOUTH + 0.01),
                            (e - 0.025, SOUTH + 0.012)),
        "South": utm_polygon((WEST + 0.004, SOUTH + 0.002), (WEST + 0.04, SOUTH + 0.004), (WEST + 0.02, SOUTH + 0.03)),
    }


@pytest.fixture(scope="module")
def zones_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("zones") / "districts.geojson"
    zones = run_zones()
    gpd.GeoDataFrame({"district": list(zones), "name": ["a", "b", "c"]}, geometry=list(zones.values()),
                     crs=UTM).to_file(path)
    return path


def test_stats_command_end_to_end(finished, zones_file, tmp_path):
    """`mapgen stats OUT --zones Z` prints the table and writes the CSV, the Parquet and the charts; the
    areas equal the brute force on the run's own VRTs within 0.1 %."""
    from click.testing import CliRunner

    from mapgen.cli import main

    folder = tmp_path / "stats"
    result = CliRunner().invoke(main, ["stats", str(finished), "--zones", str(zones_file), "--field", "district",
                                       "--to", str(folder)])
    assert result.exit_code == 0, result.output
    assert "building rooftop (km²)" in result.stdout
    for zone in run_zones():
        assert zone in result.stdout
    for year in YEARS:
        assert str(year) in result.stdout

    table = pd.read_csv(folder / "areas.csv", dtype={"date": str})
    parquet = pd.read_parquet(folder / "areas.parquet")
    assert list(table.columns) == COLUMNS == list(parquet.columns)
    pd.testing.assert_frame_equal(table, parquet, check_dtype=False)
    # every zone × date × class (background, rooftop, no data) has its row, zero or not
    assert len(table) == len(run_zones()) * len(YEARS) * 3
    assert set(table["class"]) == {"background", "building rooftop", NO_DATA}
    for zone in run_zones():
        for kind in ("png", "svg"):
            chart = folder / "charts" / f"{zone}.{kind}"
            assert chart.is_file()
        assert (folder / "charts" / f"{zone}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (folder / "charts" / f"{zone}.svg").read_bytes()[:500]
    # nothing left behind: no temporaries beside the files
    assert not [p for p in folder.rglob(".*")]

    maps = RunMaps.open(finished)
    weights = {}
    for _output, label, vrt in maps.mosaics():
        for name, zone in run_zones().items():
            if name not in weights:  # the run's VRTs share one grid
                weights[name] = cell_weights(vrt, zone, UTM)
            expected = by_value(vrt, weights[name])
            rows = table[(table["zone"] == name) & (table["date"] == label)].set_index("value")
            for value, area in expected.items():
                assert rows.loc[value, "area_km2"] * 1e6 == pytest.approx(area, rel=TOLERANCE), (name, label, value)
            assert rows["share"].sum() == pytest.approx(1.0)
            mapped = rows["area_km2"].sum()
            assert mapped * 1e6 == pytest.approx(sum(expected.values()), rel=TOLERANCE)
            if name == "Edge":  # a third of it lies east of the map: its whole area is more than its mapped
                assert rows["zone_km2"].iloc[0] > 1.3 * mapped
            else:
                assert rows["zone_km2"].iloc[0] == pytest.approx(mapped, rel=TOLERANCE)
    # the run has rooftops in these zones, and the table is the library's
    assert (table[table["class"] == "building rooftop"]["area_km2"] > 0).any()
    library = zonal_areas(finished, zones_file, field="district")
    pd.testing.assert_frame_equal(library, parquet)


def test_stats_default_folder_and_name_field(finished, zones_file):
    """Without --to the files go to OUT/stats/{zones stem}/ (temporaries through the run's scratch); the
    zones are named by their `name` field without --field."""
    code, _ = invoke(["stats", str(finished), "--zones", str(zones_file)])
    assert code == 0
    folder = finished / "stats" / "districts"
    table = pd.read_parquet(folder / "areas.parquet")
    assert sorted(set(table["zone"])) == ["a", "b", "c"]
    assert {p.name for p in (folder / "charts").iterdir()} == {f"{z}.{k}" for z in "abc" for k in ("png", "svg")}
    assert not list((finished / "mapgen-run" / "tmp").glob(".*areas*"))


# --------------------------------------------------------------------------------------------------
# Refusals: one line, exit 2


def refused(args: list[str], *phrases: str) -> str:
    code, lines = invoke(["stats", *args])
    assert code == 2, lines
    assert len(lines) == 1, lines
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def copy_of_run(finished, tmp_path) -> Path:
    """The finished run's maps and run folder (without its store, which stats does not read)."""
    out = tmp_path / "copy"
    shutil.copytree(finished, out, ignore=shutil.ignore_patterns("store.zarr", "stats"))
    return out


def test_refusals(finished, zones_file, copy_of_run, tmp_path):
    refused([str(tmp_path), "--zones", str(zones_file)], "not a mapgen run folder", "manifest.json")
    report = copy_of_run / "mapgen-run" / "report.json"
    data = json.loads(report.read_text())
    report.write_text(json.dumps({**data, "status": "failed"}))
    refused([str(copy_of_run), "--zones", str(zones_file)], "not finished", "failed")
    report.unlink()
    refused([str(copy_of_run), "--zones", str(zones_file)], "not finished", "report.json")
    report.write_text(json.dumps(data))
    next(copy_of_run.glob("CBRA_2017.vrt")).unlink()
    refused([str(copy_of_run), "--zones", str(zones_file)], "not finished", "CBRA_2017.vrt")
    manifest = copy_of_run / "mapgen-run" / "manifest.json"
    edited = json.loads(manifest.read_text())
    edited["product"]["definition"]["output"]["nodata"] = 0  # a definition its sha256 does not vouch for
    manifest.write_text(json.dumps(edited))
    refused([str(copy_of_run), "--zones", str(zones_file)], "not a mapgen run manifest", "sha256")
    manifest.write_text("{")
    refused([str(copy_of_run), "--zones", str(zones_file)], "not a mapgen run manifest")

    refused([str(finished), "--zones", str(tmp_path / "none.geojson")], "no such file")
    broken = tmp_path / "broken.geojson"
    broken.write_text("{not json")
    refused([str(finished), "--zones", str(broken)], "broken.geojson", "cannot be read")
    refused([str(finished), "--zones", str(zones_file), "--field", "province"], "no field 'province'", "district")
    far = tmp_path / "far.geojson"
    gpd.GeoDataFrame({"name": ["far"]}, geometry=[shapely.box(100, 20, 101, 21)], crs="EPSG:4326").to_file(far)
    refused([str(finished), "--zones", str(far)], "meets the maps")
    points = tmp_path / "points.geojson"
    gpd.GeoDataFrame({"name": ["p"]}, geometry=[shapely.Point(116.31, 39.51)], crs="EPSG:4326").to_file(points)
    refused([str(finished), "--zones", str(points)], "no polygons")
    bowtie = tmp_path / "bowtie.geojson"
    bowtie.write_text(json.dumps({"type": "Feature", "properties": {"name": "x"}, "geometry": {
        "type": "Polygon", "coordinates": [[[116.31, 39.51], [116.35, 39.55], [116.35, 39.51], [116.31, 39.55],
                                            [116.31, 39.51]]]}}))
    refused([str(finished), "--zones", str(bowtie)], "feature 0", "invalid geometry")


def test_demo_zones_cover_the_demo_region():
    """examples/demo-zones.geojson: three made-up districts in UTM 50N over the README's demo region."""
    from mapgen.tiles import load_region

    root = Path(__file__).resolve().parents[1] / "examples"
    zones = read_zones(root / "demo-zones.geojson", None, CRS("EPSG:4326"))
    assert list(zones["zone"]) == ["Riverside", "Lakeview", "Old Town"]
    assert gpd.read_file(root / "demo-zones.geojson").crs == CRS(UTM)
    region = load_region(root / "demo.geojson")
    covered = shapely.union_all(zones.geometry).intersection(region).area / region.area
    assert 0.95 < covered < 1.0  # all of it but the enclave, Lakeview's hole
    assert any(len(g.interiors) for g in zones.geometry if g.geom_type == "Polygon")
