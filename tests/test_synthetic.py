"""The synthetic scene generator: valid, aligned, deterministic COGs with ground truth and change."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from mapgen.synthetic import GENERATOR_VERSION, LANDCOVER_CLASSES, generate_scene
from mapgen.synthetic.grid import snap_grid

BOUNDS = (116.30, 39.80, 116.33, 39.83)  # 0.03 deg: a town with its fringe, ~3 km
YEARS = [2016, 2017, 2018]
RES = 0.1 / 1113
FILES = ("s2.tif", "built.tif", "rooftops.tif", "landcover.tif")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("synthetic")
    messages: list[str] = []
    out = {
        "a": root / "a", "b": root / "b", "other": root / "other", "messages": messages,
        "meta": generate_scene(BOUNDS, YEARS, root / "a", seed=7, progress=messages.append),
    }
    generate_scene(BOUNDS, YEARS, root / "b", seed=7)
    generate_scene(BOUNDS, YEARS, root / "other", seed=8)
    return out


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def fractions(mask: np.ndarray, scale: int = 4) -> np.ndarray:
    """Share of each low-resolution pixel covered by a high-resolution mask."""
    h, w = mask.shape
    return mask.reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))


def test_files_exist_and_are_valid_cogs(scenes: dict) -> None:
    for year in YEARS:
        for name in FILES:
            path = scenes["a"] / str(year) / name
            assert path.is_file(), path
            valid, errors, _ = cog_validate(str(path))
            assert valid, (path, errors)
            with rasterio.open(path) as src:
                assert src.overviews(1), f"{path} has no overviews"
                assert src.block_shapes[0] == (512, 512)
    # the COG writer's temporaries are hidden (.NAME.PID.scratch.tif / .partial.tif), the translator's tmp*.tif
    left = [p for p in scenes["a"].rglob("*") if p.name.startswith((".", "tmp")) or p.name.endswith(".part")]
    assert not left, f"temporary files left behind: {left}"


def test_crs_and_grid_alignment(scenes: dict) -> None:
    lr_path, hr_path = scenes["a"] / "2016" / "s2.tif", scenes["a"] / "2016" / "rooftops.tif"
    with rasterio.open(lr_path) as lr, rasterio.open(hr_path) as hr:
        assert lr.crs.to_epsg() == 4326 and hr.crs.to_epsg() == 4326
        t = lr.transform
        assert t.a == pytest.approx(RES, rel=1e-12) and t.e == pytest.approx(-RES, rel=1e-12)
        assert t.b == 0 and t.d == 0
        # The origin sits exactly on the global lattice anchored at (-180, 90).
        kx, ky = (t.c + 180.0) / RES, (90.0 - t.f) / RES
        assert abs(kx - round(kx)) < 1e-6 and abs(ky - round(ky)) < 1e-6
        # Outward snapping plus a 128-pixel margin on every side.
        w, s, e, n = BOUNDS
        assert round(kx) == math.floor((w + 180) / RES + 1e-9) - 128
        assert round(ky) == math.floor((90 - n) / RES + 1e-9) - 128
        assert lr.width == math.ceil((e + 180) / RES - 1e-9) - math.floor((w + 180) / RES + 1e-9) + 256
        assert lr.height == math.ceil((90 - s) / RES - 1e-9) - math.floor((90 - n) / RES + 1e-9) + 256
        assert lr.bounds.left <= w - 127 * RES and lr.bounds.right >= e + 127 * RES
        # High resolution: same origin and extent, pixel size res / 4.
        th = hr.transform
        assert (th.c, th.f) == (t.c, t.f)
        assert th.a == pytest.approx(t.a / 4, rel=1e-12) and th.e == pytest.approx(t.e / 4, rel=1e-12)
        assert (hr.width, hr.height) == (4 * lr.width, 4 * lr.height)
        assert np.allclose(hr.bounds, lr.bounds, rtol=0, atol=1e-9)
    for name in FILES:  # every file of every year on the same grid as its resolution's twin
        for year in YEARS:
            with rasterio.open(scenes["a"] / str(year) / name) as src:
                ref = lr_path if src.width == lr.width else hr_path
                with rasterio.open(ref) as r:
                    assert src.transform == r.transform and src.shape == r.shape


def test_dtypes_descriptions_nodata_colours(scenes: dict) -> None:
    d = scenes["a"] / "2017"
    with rasterio.open(d / "s2.tif") as src:
        assert src.count == 4 and src.dtypes == ("float32",) * 4
        assert src.descriptions == ("B2", "B3", "B4", "B8")
        assert math.isnan(src.nodata)
    with rasterio.open(d / "built.tif") as src:
        assert src.count == 1 and src.dtypes[0] == "float32" and src.descriptions == ("built",)
        assert math.isnan(src.nodata)
    with rasterio.open(d / "rooftops.tif") as src:
        assert src.count == 1 and src.dtypes[0] == "uint8" and src.descriptions == ("rooftop",)
        assert src.nodata is None
        cmap = src.colormap(1)
        # TIFF palettes carry no alpha: 0 reads back as opaque black.
        assert cmap[255][:3] == (255, 0, 0) and cmap[0][:3] == (0, 0, 0)
        assert set(np.unique(src.read(1))) <= {0, 255}
    with rasterio.open(d / "landcover.tif") as src:
        assert src.dtypes[0] == "uint8" and src.descriptions == ("landcover",)
        values = set(np.unique(src.read(1)).tolist())
        assert values <= set(LANDCOVER_CLASSES) and len(values) >= 5
        assert src.colormap(1)[2][:3] == (255, 102, 102)


def test_reflectance_and_probability_ranges(scenes: dict) -> None:
    for year in YEARS:
        s2 = read(scenes["a"] / str(year) / "s2.tif")
        assert np.isfinite(s2).all()
        assert s2.min() > 0.0 and s2.max() < 0.7
        mean = s2.reshape(4, -1).mean(axis=1)
        # Ballpark of the CBRA normalisation mean (0.142, 0.126, 0.120, 0.180); NIR brightest here.
        assert np.all((mean > 0.06) & (mean < 0.3)), mean
        assert mean[3] > mean[2]
        built = read(scenes["a"] / str(year) / "built.tif")[0]
        assert np.isfinite(built).all() and built.min() >= 0.0 and built.max() <= 1.0


def test_same_seed_same_bytes_other_seed_other_scene(scenes: dict) -> None:
    a, b = hashes(scenes["a"]), hashes(scenes["b"])
    assert len(a) == 3 * len(FILES) + 2 + len(YEARS)  # rasters, synth.json, catalog, one item per year
    assert a == b
    for year in YEARS:
        ra = read(scenes["a"] / str(year) / "rooftops.tif")
        ro = read(scenes["other"] / str(year) / "rooftops.tif")
        assert ra.shape == ro.shape and not np.array_equal(ra, ro)


def test_construction_and_demolition(scenes: dict) -> None:
    roofs = [read(scenes["a"] / str(y) / "rooftops.tif")[0] > 0 for y in YEARS]
    for before, after in zip(roofs, roofs[1:], strict=False):
        assert (after & ~before).sum() > 100, "no construction"
        assert (before & ~after).sum() > 50, "no demolition"
    meta = scenes["meta"]
    for tr in meta["history"]["transitions"]:
        assert tr["constructed"] >= 1 and tr["demolished"] >= 1
    assert meta["history"]["buildings_standing"]["2016"] > 100


def test_built_probability_and_ndvi_follow_the_ground_truth(scenes: dict) -> None:
    d = scenes["a"] / "2018"
    s2, built = read(d / "s2.tif"), read(d / "built.tif")[0]
    lc = read(d / "landcover.tif")[0]
    roof = fractions(lc == 2)
    veg = fractions(lc == 3)
    dense, green = roof > 0.5, veg == 1.0
    assert dense.sum() > 20 and green.sum() > 1000
    assert built[dense].mean() > built[green].mean() + 0.3
    ndvi = (s2[3] - s2[2]) / (s2[3] + s2[2])
    assert ndvi[green].mean() > ndvi[dense].mean() + 0.2
    # Water is dark, darkest in NIR.
    water = fractions(lc == 4) == 1.0
    if water.sum() > 20:
        assert s2[3][water].mean() < s2[0][water].mean()


def test_synth_json(scenes: dict) -> None:
    path = scenes["a"] / "synth.json"
    text = path.read_text()
    meta = json.loads(text)
    assert meta == scenes["meta"]
    assert text == json.dumps(meta, sort_keys=True, indent=1) + "\n"
    assert meta["seed"] == 7 and meta["version"] == GENERATOR_VERSION and meta["years"] == YEARS
    assert meta["bounds"] == list(BOUNDS) and meta["scale"] == 4
    assert meta["grid"]["hr"]["width"] == 4 * meta["grid"]["lr"]["width"]
    assert set(meta["styles"]) == {str(y) for y in YEARS}
    styles = [meta["styles"][str(y)] for y in YEARS]
    assert styles[0]["gain"] != styles[1]["gain"]  # a different radiometric style each year
    town = meta["layout"]["towns"][0]
    assert BOUNDS[0] < town["lon"] < BOUNDS[2] and BOUNDS[1] < town["lat"] < BOUNDS[3]
    assert sum("year" in m for m in scenes["messages"]) == len(YEARS)


def test_stac_catalog(scenes: dict) -> None:
    cat = pystac.Catalog.from_file(str(scenes["a"] / "catalog.json"))
    items = sorted(cat.get_items(recursive=True), key=lambda i: i.id)
    assert [i.id for i in items] == [f"synthetic-{y}" for y in YEARS]
    with rasterio.open(scenes["a"] / "2016" / "s2.tif") as src:
        b = src.bounds
    for item, year in zip(items, YEARS, strict=True):
        assert item.datetime is None and item.properties["mapgen:year"] == year
        assert item.common_metadata.start_datetime.isoformat() == f"{year}-01-01T00:00:00+00:00"
        assert item.common_metadata.end_datetime.isoformat() == f"{year}-12-31T23:59:59+00:00"
        assert np.allclose(item.bbox, [b.left, b.bottom, b.right, b.top])
        assert set(item.assets) == {"s2", "built", "rooftops", "landcover"}
        for key, asset in item.assets.items():
            assert asset.media_type == pystac.MediaType.COG and asset.roles == ["data"] and asset.title
            assert not Path(asset.href).is_absolute()
            href = Path(asset.get_absolute_href())
            assert href.is_file() and href.parent.name == str(year) and href.name == f"{key}.tif"
        bands = item.assets["s2"].extra_fields["eo:bands"]
        assert [x["name"] for x in bands] == ["B2", "B3", "B4", "B8"]
        assert [x["common_name"] for x in bands] == ["blue", "green", "red", "nir"]


@pytest.mark.parametrize(("bounds", "years", "match"), [
    ((116.3, 39.8, 116.3, 39.83), YEARS, "empty"),
    ((116.33, 39.8, 116.3, 39.83), YEARS, "empty"),
    ((116.3, 39.8, 116.33), YEARS, "four numbers"),
    ((116.3, float("nan"), 116.33, 39.83), YEARS, "finite"),
    ((179.9, 39.8, 180.5, 39.83), YEARS, "longitude"),
    ((116.3, 89.9, 116.33, 90.5), YEARS, "latitude"),
    (BOUNDS, [], "no years"),
    (BOUNDS, [2017, 2016], "increasing"),
    (BOUNDS, [2016, 2016], "increasing"),
    (BOUNDS, ["2016"], "integers"),
])
def test_bad_input_is_refused(tmp_path: Path, bounds: tuple, years: list, match: str) -> None:
    with pytest.raises(ValueError, match=match) as exc:
        generate_scene(bounds, years, tmp_path / "out")
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "out").exists(), "refused before any work"


def test_grid_snapping_edges() -> None:
    # Bounds already on the lattice do not grow; the margin is clipped at the edge of the globe.
    g = snap_grid((-180.0 + 1000 * RES, 90.0 - 2000 * RES, -180.0 + 1010 * RES, 90.0 - 1990 * RES), RES, 4, 0)
    assert (g.col0, g.row0, g.width, g.height) == (1000, 1990, 10, 10)
    g = snap_grid((-180.0, 89.99, -179.99, 90.0), RES, 4, 128)
    assert g.col0 == 0 and g.row0 == 0 and g.west == -180.0 and g.north == 90.0
    with pytest.raises(ValueError, match="too large"):
        snap_grid((0.0, 0.0, 2.0, 2.0), RES, 4, 128)
