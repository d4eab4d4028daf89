"""The synthetic UGS city scenes: files on the product's lattice, truth values and the urban boundary,
determinism, styles, vegetation outside the boundary, the catalog as a source, and `mapgen synth`."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.enums import ColorInterp, Resampling
from rio_cogeo.cogeo import cog_validate

from mapgen.synthetic.ugs import UGS_GENERATOR_VERSION, generate_ugs_scene, rasterize_boundary

BOUNDS = (113.300, 23.100, 113.3045, 23.1042)  # ~460 x 420 m: a small town with its fringe
DATE = "2021"
MARGIN = 64
RES = Fraction(1, 100800)
RASTERS = (f"{DATE}/rgb.tif", f"{DATE}/ugs.tif", f"{DATE}/ugs_type.tif", "2018/gub.tif")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ugs")
    messages: list[str] = []
    out = {"root": root, "messages": messages}
    out["meta"] = generate_ugs_scene(BOUNDS, DATE, root / "a", seed=3, margin_px=MARGIN, progress=messages.append)
    generate_ugs_scene(BOUNDS, DATE, root / "b", seed=3, margin_px=MARGIN)
    out["other_meta"] = generate_ugs_scene(BOUNDS, DATE, root / "other", seed=4, margin_px=MARGIN)
    out["far_meta"] = generate_ugs_scene(BOUNDS, DATE, root / "far", seed=3, style="far", margin_px=MARGIN)
    for k in ("a", "b", "other", "far"):
        out[k] = root / k
    return out


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_files_are_valid_cogs(scenes: dict) -> None:
    for rel in RASTERS:
        path = scenes["a"] / rel
        valid, errors, _ = cog_validate(str(path))
        assert valid, (path, errors)
    for name in ("synth.json", "catalog.json", "gub.geojson"):
        assert (scenes["a"] / name).is_file()
    left = [p for p in scenes["a"].rglob("*") if p.name.startswith((".", "tmp")) or p.name.endswith(".part")]
    assert not left, f"temporary files left behind: {left}"
    assert scenes["messages"], "no progress reported"


def test_lattice_alignment(scenes: dict) -> None:
    res = float(RES)
    shapes, transforms = set(), set()
    for rel in RASTERS:
        with rasterio.open(scenes["a"] / rel) as src:
            assert src.crs.to_epsg() == 4326
            t = src.transform
            assert t.a == res and t.e == -res and t.b == 0 and t.d == 0
            # the origin is a whole number of 1/100800° pixels from lon 0 / lat 0
            for v in (t.c, t.f):
                k = v * 100800
                assert abs(k - round(k)) < 1e-6, v
            shapes.add(src.shape)
            transforms.add(tuple(t))
            w, s, e, n = BOUNDS
            # the requested bounds plus the margin lie inside the raster
            assert src.bounds.left <= w - (MARGIN - 1) * res and src.bounds.right >= e + (MARGIN - 1) * res
            assert src.bounds.bottom <= s - (MARGIN - 1) * res and src.bounds.top >= n + (MARGIN - 1) * res
            assert src.width * src.height <= 620 * 620  # a small scene, as the tests need
    assert len(shapes) == 1 and len(transforms) == 1


def test_the_engine_reads_the_rgb_without_resampling(scenes: dict) -> None:
    from mapgen.pipeline.sources.read import read_box
    from mapgen.tiles import Box, Grid

    path = scenes["a"] / DATE / "rgb.tif"
    with rasterio.open(path) as src:
        t, raw = src.transform, src.read()
    col0, row0 = round((t.c + 180) * 100800), round((90 - t.f) * 100800)
    got = read_box(str(path), Grid(RES), Box(row0 + 30, col0 + 20, 100, 150), Resampling.bilinear)
    assert np.array_equal(got, raw[:, 30:130, 20:170].astype(np.float32))


def test_dtypes_values_and_truth(scenes: dict) -> None:
    d = scenes["a"]
    with rasterio.open(d / DATE / "rgb.tif") as src:
        assert src.count == 3 and src.dtypes == ("uint8",) * 3
        assert src.descriptions == ("red", "green", "blue")
        assert tuple(src.colorinterp) == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        rgb = src.read()
    assert rgb.std() > 10  # a picture, not a flat field
    ugs, kind, gub = (read(d / rel)[0] for rel in RASTERS[1:])
    assert set(np.unique(ugs).tolist()) == {0, 255}
    assert set(np.unique(kind).tolist()) <= {0, 1, 2, 3, 4, 5} and len(np.unique(kind)) >= 3
    assert set(np.unique(gub).tolist()) == {0, 1}
    assert np.array_equal(ugs == 255, kind > 0)
    assert not (ugs[gub == 0]).any(), "UGS outside the urban boundary"
    share = float((ugs == 255).sum() / (gub == 1).sum())
    assert share == pytest.approx(scenes["meta"]["ugs_share"])
    assert 0.1 < share < 0.6


def test_boundary_raster_is_the_rasterised_vector(scenes: dict) -> None:
    d = scenes["a"]
    fc = json.loads((d / "gub.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and fc["features"]
    for f in fc["features"]:
        assert f["geometry"]["type"] == "Polygon" and f["properties"]["year"] == 2018
        ring = np.asarray(f["geometry"]["coordinates"][0])
        assert (ring[:, 0] > 113.2).all() and (ring[:, 0] < 113.4).all()  # lon, lat in degrees
        assert (ring[:, 1] > 23.0).all() and (ring[:, 1] < 23.2).all()
    with rasterio.open(d / "2018" / "gub.tif") as src:
        gub = src.read(1)
        again = rasterize_boundary(fc, src.shape, src.transform)
        from rasterio.features import rasterize

        plain = rasterize(((f["geometry"], 1) for f in fc["features"]), out_shape=src.shape, transform=src.transform,
                          dtype="uint8")
    assert np.array_equal(gub, again) and np.array_equal(gub, plain)
    inside = gub.mean()
    assert 0.02 < inside < 0.8  # a boundary round the town, with country outside


def test_vegetation_outside_the_boundary(scenes: dict) -> None:
    d = scenes["a"]
    rgb = read(d / DATE / "rgb.tif").astype(np.float32)
    ugs = read(d / DATE / "ugs.tif")[0]
    gub = read(d / "2018" / "gub.tif")[0]
    r, g, b = rgb
    exg = (2 * g - r - b) / np.maximum(r + g + b, 1)  # excess green: high on vegetation
    outside = gub == 0
    assert not ugs[outside].any()
    green = exg > 0.08
    assert green[outside].mean() > 0.4, "the country round the town should be mostly vegetated"
    # and UGS looks like vegetation too: the boundary, not the colour, tells them apart
    assert exg[ugs == 255].mean() > 0.05
    assert abs(float(exg[ugs == 255].mean()) - float(exg[outside & green].mean())) < 0.12


def test_same_seed_same_bytes_other_seed_other_city_and_style(scenes: dict) -> None:
    a, b, other = hashes(scenes["a"]), hashes(scenes["b"]), hashes(scenes["other"])
    assert a == b
    assert len(a) == 4 + 3 + 2  # rasters, synth/catalog/geojson, two items
    for rel in RASTERS[:2]:
        assert a[rel] != other[rel]
    assert scenes["meta"]["style"] != scenes["other_meta"]["style"]
    assert scenes["meta"]["layout"]["cities"] != scenes["other_meta"]["layout"]["cities"]


def test_named_style_changes_the_look_not_the_truth(scenes: dict) -> None:
    a, far = hashes(scenes["a"]), hashes(scenes["far"])
    assert a[f"{DATE}/ugs.tif"] == far[f"{DATE}/ugs.tif"] and a["2018/gub.tif"] == far["2018/gub.tif"]
    assert a[f"{DATE}/rgb.tif"] != far[f"{DATE}/rgb.tif"]
    assert scenes["far_meta"]["style"]["name"] == "far" and scenes["meta"]["style"]["name"] == "auto"
    x = read(scenes["a"] / DATE / "rgb.tif").astype(np.float32)
    y = read(scenes["far"] / DATE / "rgb.tif").astype(np.float32)
    assert (y.reshape(3, -1).std(axis=1) < 0.8 * x.reshape(3, -1).std(axis=1)).all()  # hazy, flat
    assert y[0].mean() / y[2].mean() > 1.1 * x[0].mean() / x[2].mean()  # warm
    assert y.min() >= 0 and y.max() <= 255


def test_synth_json(scenes: dict) -> None:
    meta = json.loads((scenes["a"] / "synth.json").read_text())
    assert meta == scenes["meta"]
    assert meta["product"] == "ugs" and meta["generator"] == UGS_GENERATOR_VERSION and meta["seed"] == 3
    assert meta["resolution"] == "1/100800" and meta["dates"] == [DATE]
    assert meta["bounds"] == list(BOUNDS)
    assert meta["truth"]["ugs"] == {DATE: f"{DATE}/ugs.tif"}
    assert meta["boundary"]["raster"] == "2018/gub.tif" and meta["boundary"]["vector"] == "gub.geojson"
    assert {"name", "white_balance", "haze", "noise", "saturation", "contrast"} <= set(meta["style"])
    assert meta["layout"]["cities"] and meta["layout"]["rural"]["forests"]


def test_catalog_is_a_source_for_rgb_and_gub(scenes: dict) -> None:
    from mapgen.pipeline.sources.resolve import layer_sources
    from mapgen.workflows import load_product

    product = load_product("ugs")
    sources = layer_sources(str(scenes["a"] / "catalog.json"), product, [DATE])
    assert {"rgb", "gub"} <= set(sources)
    assert Path(sources["rgb"].files[2021]) == scenes["a"] / DATE / "rgb.tif"
    assert Path(sources["gub"].files[2018]) == scenes["a"] / "2018" / "gub.tif"
    rgb_spec = next(s for s in product.inputs if s.name == "rgb")
    assert sources["rgb"].check(rgb_spec, [2021], BOUNDS)[2021] == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"bounds": (113.3, 23.1, 113.2, 23.2)}, "inverted"),
    ({"bounds": (113.3, 95.0, 113.31, 95.01)}, "latitude"),
    ({"bounds": (190.0, 23.1, 191.0, 23.2)}, "longitude"),
    ({"date": "2021-13"}, "calendar"),
    ({"date": "someday"}, "not a date"),
    ({"style": "pink"}, "unknown style"),
    ({"bounds": (113.0, 23.0, 113.5, 23.5)}, "too large"),
])
def test_bad_input_is_refused(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"bounds": BOUNDS, "date": DATE, "style": "auto"} | kwargs
    with pytest.raises(ValueError, match=match):
        generate_ugs_scene(args["bounds"], args["date"], tmp_path / "x", style=args["style"])
    assert not (tmp_path / "x").exists()


def _region(tmp_path: Path) -> Path:
    w, s, e, n = 113.31, 23.11, 113.3135, 23.1132
    path = tmp_path / "town.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "test-town"},
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}]}))
    return path


def test_cli_happy_path_and_refusals(tmp_path: Path) -> None:
    from mapgen.cli import main

    region = _region(tmp_path)
    out = tmp_path / "scene"
    runner = CliRunner()
    result = runner.invoke(main, ["synth", "--product", "ugs", "--region", str(region), "--years", "2020",
                                  "--out", str(out), "--seed", "5", "--style", "gf2"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "synth.json").read_text())
    assert meta["dates"] == ["2020"] and meta["style"]["name"] == "gf2" and meta["seed"] == 5
    assert (out / "2020" / "rgb.tif").is_file() and (out / "2018" / "gub.tif").is_file()
    for args, match in ((["--years", "2020-2021"], "one year"), (["--years", "2020", "--style", "pink"],
                                                                   "unknown style")):
        bad = runner.invoke(main, ["synth", "--product", "ugs", "--region", str(region), "--out",
                                   str(tmp_path / "bad"), *args])
        assert bad.exit_code == 2
        lines = [ln for ln in bad.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("mapgen: error:") and match in lines[0], bad.output


def test_example_region_is_one_map_frame() -> None:
    from mapgen.tiles import load_region, sheet_at

    root = Path(__file__).resolve().parent.parent
    region = load_region(root / "examples" / "ugs-demo.geojson")
    w, s, e, n = region.bounds
    assert 0.02 <= e - w <= 0.05 and 0.02 <= n - s <= 0.05
    assert len({sheet_at(x, y) for x in (w, e) for y in (s, n)}) == 1
