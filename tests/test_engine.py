"""The engine speaks every product: several inputs on their own lattices, series, heads, outputs per date and
per pair, argmax with an offset, the multi-class vote, every stitch method; each set-up run on a real
LocalCluster over real GeoTIFFs into a real Zarr store and COG tiles, and cut into blocks or not, pixel
for pixel the same (invariant 1).

The networks are the test networks of `engine_nets.py`, whose outputs are known functions of their inputs.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from engine_nets import FusionConfig, PerDateConfig, RegisterTestNets, register_test_nets

from mapgen.models import init_checkpoint
from mapgen.pipeline.run import execute, prepare
from mapgen.pipeline.tasks import chip_origins
from mapgen.tiles import Box, Grid
from mapgen.workflows import parse_product

register_test_nets()

RES = Fraction(1, 1200)  # the primary lattice: 1/1200° (≈ 90 m); tiles of 1/30° = 40 px, blocks 1/60° = 20 px
# one tile of the 1/30° tile lattice, 2 × 2 blocks of 1/60° (inset a hair so that neighbours only touch it)
REGION = shapely.box(116 + 1e-6, 40 - 1 / 30 + 1e-6, 116 + 1 / 30 - 1e-6, 40 - 1e-6)
GRID = Grid(RES)
BOX = GRID.box(REGION.bounds)  # the tile: 40 × 40 px


def _write(path: Path, grid: Grid, box: Box, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=box.width, height=box.height, count=len(data), dtype="float32",
                   crs="EPSG:4326", transform=grid.transform(box), nodata=float("nan"), tiled=True,
                   blockxsize=16, blockysize=16)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32))


def _image(rng, bands: int, box: Box, holes: bool = True) -> np.ndarray:
    data = rng.normal(0, 1, (bands, box.height, box.width)).astype(np.float32)
    if holes:  # without data inside the region (which is inset 40 px): a patch, and rows across it, which cut
        data[:, 41:46, -53:-44] = np.nan  # windows short (where `reflect` pads); both must come out as no data
        data[:, 56:66, :] = np.nan  # global rows 60016–60025: the top of the windows at 60016
    return data


@pytest.fixture(scope="module")
def nets(client):
    client.register_plugin(RegisterTestNets())
    return client


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """data/{date}/{layer}.tif: `image` for 2016–2019, `hr` at two months, a monthly `sentinel` series on a 5×
    coarser lattice, and a fixed-date `urban` mask for 2018."""
    root = tmp_path_factory.mktemp("engine") / "data"
    rng = np.random.default_rng(5)
    wide = BOX.grown(40)  # the region and every window's halo
    for year in range(2016, 2020):
        _write(root / str(year) / "image.tif", GRID, wide, _image(rng, 3, wide))
    for date in ("2018-08", "2020-08"):
        _write(root / date / "hr.tif", GRID, wide, _image(rng, 3, wide))
    coarse = Grid(RES * 5)
    chips = Box(wide.row // 5 - 4, wide.col // 5 - 4, wide.height // 5 + 8, wide.width // 5 + 8)
    for date in ("2018-08", "2018-09", "2018-10"):
        _write(root / date / "sentinel.tif", coarse, chips, rng.uniform(0, 0.5, (2, chips.height, chips.width)))
    urban = (rng.uniform(0, 1, (1, wide.height, wide.width)) > 0.3).astype(np.float32)
    _write(root / "2018" / "urban.tif", GRID, wide, urban)
    return root


PER_DATE = """
name = "perdate"
[grid]
crs = "EPSG:4326"
input_resolution = "1/1200"
scale = 2
tile_size = "1/30"
block_size = "1/60"
naming = "PD_{year}_{lon_hemi}{lon}{lat_hemi}{lat}.tif"
[[inputs]]
name = "image"
role = "image"
bands = ["a", "b", "c"]
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
[model]
architecture = "test-per-date"
checkpoint = "unused"
heads = { p = "sigmoid", cls = "softmax" }
[window]
size = 16
overlap = OVERLAP
padding = "PADDING"
batch = 8
[stitch]
STITCH
[[outputs]]
name = "fore"
head = "p"
naming = "FORE_{year}_{lon_hemi}{lon}{lat_hemi}{lat}.tif"
band_description = "foreground"
nodata = 1
post = [{ kernel = "threshold", threshold = 0.5 }]
temporal = [{ kernel = "majority_vote" }]
classes = [{ value = 0, name = "background", color = "#000000" }, { value = 255, name = "fore", color = "#ff0000" }]
[[outputs]]
name = "kind"
head = "cls"
naming = "KIND_{year}_{lon_hemi}{lon}{lat_hemi}{lat}.tif"
band_description = "kind"
nodata = 255
post = [{ kernel = "argmax", offset = 1 }]
temporal = [{ kernel = "majority_vote" }]
classes = [{ value = 0, name = "none", color = "#ffffff" }, { value = 1, name = "a", color = "#ff0000" },
           { value = 2, name = "b", color = "#00ff00" }, { value = 3, name = "c", color = "#0000ff" }]
"""

FUSION = """
name = "fusion"
[grid]
crs = "EPSG:4326"
input_resolution = "1/1200"
scale = 1
tile_size = "1/30"
block_size = "1/60"
naming = "LU_{date}_{lon_hemi}{lon}{lat_hemi}{lat}.tif"
[[inputs]]
name = "hr"
role = "image"
bands = ["red", "green", "blue"]
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
[[inputs]]
name = "sentinel"
role = "image"
bands = ["x", "y"]
series = { from = "2018-08", to = "2018-10", step = "1 month" }
resolution = "1/240"
context = 4
[[inputs]]
name = "urban"
role = "mask"
bands = ["urban"]
dates = ["2018"]
[model]
architecture = "test-fusion"
checkpoint = "unused"
heads = { seg = "softmax", change = "sigmoid" }
[window]
size = 16
overlap = 0.5
batch = 4
[stitch]
method = "mean"
weights = "tent"
[[outputs]]
name = "landuse"
head = "seg"
band_description = "land use"
nodata = 255
post = [{ kernel = "argmax", offset = 1 },
        { kernel = "mask", layer = "urban", threshold = 0.5, resampling = "nearest" }]
classes = [{ value = 0, name = "none", color = "#ffffff" }, { value = 1, name = "red", color = "#ff0000" },
           { value = 2, name = "green", color = "#00ff00" }, { value = 3, name = "blue", color = "#0000ff" },
           { value = 4, name = "dark", color = "#000000" }]
[[outputs]]
name = "change"
head = "change"
per = "pair"
naming = "CD_{from}_{to}_{lon_hemi}{lon}{lat_hemi}{lat}.tif"
band_description = "change"
nodata = 2
post = [{ kernel = "threshold", threshold = 0.5 }]
classes = [{ value = 0, name = "no change", color = "#000000" }, { value = 1, name = "change", color = "#ff0000" }]
"""

STITCHES = {
    "max": ('method = "max"\nborder = 2', 4),
    "mean": ('method = "mean"', 4),
    "tent": ('method = "mean"\nweights = "tent"', 0.5),
}


def _product(text: str, tmp: Path, name: str, **subs):
    import tomllib

    for key, value in subs.items():
        text = text.replace(key, str(value))
    return parse_product(tomllib.loads(text), str(tmp / f"{name}.toml"))


def _run(client, product, dates, data: Path, out: Path, checkpoint: Path, block: str) -> dict[str, np.ndarray]:
    ctx, plan = prepare(product, REGION, dates, f"{data}/{{date}}/{{layer}}.tif", out, checkpoint=str(checkpoint),
                        block_size=block)
    report = execute(client, ctx, plan)
    assert report.status == "finished", report.failed
    tiles = {}
    for path in sorted(out.glob("*.tif")):
        with rasterio.open(path) as src:
            tiles[path.name] = src.read(1)
    return tiles


def _assert_same(cut: dict[str, np.ndarray], whole: dict[str, np.ndarray]) -> None:
    assert cut.keys() == whole.keys()
    for name in cut:
        np.testing.assert_array_equal(cut[name], whole[name], err_msg=name)


@pytest.mark.parametrize("stitch", sorted(STITCHES))
def test_two_heads_two_outputs_per_date_vote_and_invariance(nets, data, tmp_path, stitch):
    method, overlap = STITCHES[stitch]
    product = _product(PER_DATE, tmp_path, "perdate", STITCH=method, OVERLAP=overlap, PADDING="zeros")
    ckpt = tmp_path / "perdate.safetensors"
    init_checkpoint(PerDateConfig(scale=2, ramp=0.8), ckpt, seed=1)
    years = [2016, 2017, 2018, 2019]
    cut = _run(nets, product, years, data, tmp_path / "cut", ckpt, "1/60")
    whole = _run(nets, product, years, data, tmp_path / "whole", ckpt, "1/30")
    _assert_same(cut, whole)
    assert sorted(cut) == [f"{kind}_{y}_E116N40.tif" for kind in ("FORE", "KIND") for y in years]

    # `kind` is a known function whatever the stitch: argmax of the bands + 1, then the vote of three years
    stack = []
    for year in years:
        with rasterio.open(data / str(year) / "image.tif") as src:
            window = src.window(*GRID.bounds(BOX))
            pixels = src.read(window=window)
        codes = np.argmax(pixels, axis=0).astype(np.uint8) + 1
        codes[~np.isfinite(pixels).all(axis=0)] = 255
        stack.append(codes.repeat(2, 0).repeat(2, 1))
    stack = np.stack(stack)
    voted = stack.copy()
    for t in range(1, len(years) - 1):  # mode of three; a tie keeps the middle year; no data left as is
        prev, this, nxt = stack[t - 1], stack[t], stack[t + 1]
        mode = np.where(prev == nxt, prev, this)
        voted[t] = np.where((prev == 255) | (this == 255) | (nxt == 255), this, mode)
    for t, year in enumerate(years):
        np.testing.assert_array_equal(cut[f"KIND_{year}_E116N40.tif"], voted[t])  # values = codes, nodata 255
    assert (voted[1] != stack[1]).any()  # the vote did something

    fore = cut["FORE_2017_E116N40.tif"]
    assert set(np.unique(fore)) == {0, 1, 255}  # background, no data (nodata = 1), foreground


def test_reflect_padding_keeps_invariance(nets, data, tmp_path):
    product = _product(PER_DATE, tmp_path, "perdate", STITCH='method = "mean"\nweights = "tent"', OVERLAP=0.5,
                       PADDING="reflect")
    ckpt = tmp_path / "perdate.safetensors"
    init_checkpoint(PerDateConfig(scale=1, ramp=0.5, context=1.0), ckpt, seed=1)
    zeros = _product(PER_DATE, tmp_path, "zeros", STITCH='method = "mean"\nweights = "tent"', OVERLAP=0.5,
                     PADDING="zeros")
    cut = _run(nets, product, [2016, 2017, 2018], data, tmp_path / "cut", ckpt, "1/60")
    whole = _run(nets, product, [2016, 2017, 2018], data, tmp_path / "whole", ckpt, "1/30")
    _assert_same(cut, whole)
    padded = _run(nets, zeros, [2016, 2017, 2018], data, tmp_path / "zeros", ckpt, "1/60")
    name = "FORE_2016_E116N40.tif"
    assert (padded[name] != cut[name]).any()  # next to the hole, reflecting is not zero padding


def test_two_inputs_on_two_lattices_series_chip_pair_output_and_invariance(nets, data, tmp_path):
    product = _product(FUSION, tmp_path, "fusion")
    ckpt = tmp_path / "fusion.safetensors"
    init_checkpoint(FusionConfig(), ckpt, seed=1)
    dates = ["2018-08", "2020-08"]
    cut = _run(nets, product, dates, data, tmp_path / "cut", ckpt, "1/60")
    whole = _run(nets, product, dates, data, tmp_path / "whole", ckpt, "1/30")
    _assert_same(cut, whole)
    assert sorted(cut) == ["CD_2018-08_2020-08_E116N40.tif", "LU_2018-08_E116N40.tif",
                           "LU_2020-08_E116N40.tif"]

    # land use per date: argmax + 1 of (bands, 0) per pixel (the chip's mean moves every channel alike), then
    # masked to 0 (class "none") outside the fixed-date urban mask of 2018
    with rasterio.open(data / "2018" / "urban.tif") as src:
        urban = src.read(1, window=src.window(*GRID.bounds(BOX)))
    for date in dates:
        with rasterio.open(data / date / "hr.tif") as src:
            hr = src.read(window=src.window(*GRID.bounds(BOX)))
        expected = np.argmax(np.concatenate([hr, np.zeros_like(hr[:1])]), axis=0).astype(np.uint8) + 1
        expected[urban < 0.5] = 0
        expected[~np.isfinite(hr).all(axis=0)] = 255
        np.testing.assert_array_equal(cut[f"LU_{date}_E116N40.tif"], expected)
    change = cut["CD_2018-08_2020-08_E116N40.tif"]
    assert set(np.unique(change)) == {0, 1, 2}  # no change, change, no data (nodata = 2)

    with rasterio.open(tmp_path / "cut" / "CD_2018-08_2020-08_E116N40.tif") as src:
        assert src.tags()["DATES"] == "2018-08/2020-08" and src.tags()["OUTPUT"] == "change"
        assert src.nodata == 2
    assert (tmp_path / "cut" / "FUSION_LANDUSE_2018-08.vrt").is_file()
    assert (tmp_path / "cut" / "FUSION_CHANGE_2018-08_2020-08.vrt").is_file()


def test_chips_are_centred_on_their_windows():
    # a 16 px window at origin (r, c) has its centre at r + 8; on a 5× coarser lattice that is (r + 8) / 5, and
    # a 4 px chip starts 2 px before, to the nearest coarse pixel
    origins = np.array([[0, 0], [8, 16], [-8, 40], [1000, 2004]])
    got = chip_origins(origins, 16, 5, 4)
    expected = np.floor((origins + 8) / 5 - 2 + 0.5).astype(int)
    np.testing.assert_array_equal(got, expected)
    # FUSU's numbers: a 512 px window at 0.5 m, a 128 px chip at 10 m (20×) centred on it
    assert tuple(chip_origins(np.array([[0, 0]]), 512, 20, 128)[0]) == (-51, -51)  # centre 12.8 → 12.8 − 64 → −51
