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


# The lattice of both test products: 1/1200° pixels, tiles of 1/30°, blocks of 1/60°.
GRID_TOML = """
[grid]
crs = "EPSG:4326"
input_resolution = "1/1200"
scale = SCALE
tile_size = "1/30"
block_size = "1/60"
naming = "NAMING"
"""



def _grid(scale: int, naming: str) -> str:
    return GRID_TOML.replace("SCALE", str(scale)).replace("NAMING", naming)


def _image_input(name: str, bands: str) -> str:
    """A z-scored three-band image input (mean 0, std 1: the test data are standard normal already)."""
    return (f'[[inputs]]\nname = "{name}"\nrole = "image"\nbands = {bands}\n'
            "mean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\n")


def _model(architecture: str, heads: str) -> str:
    return f'[model]\narchitecture = "{architecture}"\ncheckpoint = "unused"\nheads = {{ {heads} }}\n'


def _output(name: str, head: str, prefix: str, nodata: int, post: str, classes: str) -> str:
    """An output per date of `test-per-date`, with the three-date vote."""
    return (f'[[outputs]]\nname = "{name}"\nhead = "{head}"\nnaming = "{prefix}_{{year}}_{{lon_hemi}}{{lon}}'
            f'{{lat_hemi}}{{lat}}.tif"\nband_description = "{name}"\nnodata = {nodata}\npost = [{post}]\n'
            f'temporal = [{{ kernel = "majority_vote" }}]\nclasses = [{classes}]\n')


PER_DATE = """
name = "perdate"
""" + _grid(2, "PD_{year}_{lon_hemi}{lon}{lat_hemi}{lat}.tif") + _image_input("image", '["a", "b", "c"]') + """
""" + _model("test-per-date", 'p = "sigmoid", cls = "softmax"') + """[window]
size = 16
overlap = OVERLAP
padding = "PADDING"
batch = 8
[stitch]
STITCH
""" + _output("fore", "p", "FORE", 1, '{ kernel = "threshold", threshold = 0.5 }',
              '{ value = 0, name = "background", color = "#000000" }, { value = 255, name = "fore", color = "#ff0000" }'
              ) + _output("kind", "cls", "KIND", 255, '{ kernel = "argmax", offset = 1 }',
                          '{ value = 0, name = "none", color = "#ffffff" }, '
                          '{ value = 1, name = "a", color = "#ff0000" }, { value = 2, name = "b", color = "#00ff00" }, '
                          '{ value = 3, name = "c", color = "#0000ff" }') + """
[[outputs]]
name = "kind_change"
of = "kind"
per = "pair"
naming = "KC_{from}_{to}_{lon_hemi}{lon}{lat_hemi}{lat}.tif"
band_description = "kind changed"
nodata = 9
temporal = [{ kernel = "change" }]
classes = [{ value = 0, name = "same", color = "#000000" }, { value = 1, name = "changed", color = "#ffffff" }]
"""

FUSION = """
name = "fusion"
""" + _grid(1, "LU_{date}_{lon_hemi}{lon}{lat_hemi}{lat}.tif") + _image_input("hr", '["red", "green", "blue"]') + """
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
""" + _model("test-fusion", 'seg = "softmax", change = "sigmoid"') + """[window]
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
    assert sorted(cut) == sorted([f"{kind}_{y}_E116N40.tif" for kind in ("FORE", "KIND") for y in years]
                                 + [f"KC_{a}_{b}_E116N40.tif" for a, b in zip(years, years[1:], strict=False)])

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
    for t, (a, b) in enumerate(zip(years, years[1:], strict=False)):  # the change of the voted maps, pair by pair
        changed = np.where((voted[t] == 255) | (voted[t + 1] == 255), 9, voted[t] != voted[t + 1])
        np.testing.assert_array_equal(cut[f"KC_{a}_{b}_E116N40.tif"], changed)

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


# ---- what the engine refuses of a product, before any work ----------------------------------------------

FUSION_REFUSALS = [
    ('per = "pair"\n', 'per = "pair"\nhead = "seg"\n', "several [[outputs]]"),  # a key twice: TOML refuses
    ('heads = { seg = "softmax", change = "sigmoid" }', 'heads = { seg = "softmax", change = "tanh" }',
     "change = 'tanh' must be one of 'sigmoid', 'softmax', 'logits'"),
    ('weights = "tent"', 'weights = "tent"\nborder = 2', 'border = 2 applies to method = "max" only'),
    ('{ kernel = "argmax", offset = 1 }', '{ kernel = "argmax", offset = 5 }',
     "argmax makes codes up to 5, but the output lists 5 class(es)"),
    ('resolution = "1/240"', 'resolution = "1/1000"', 'must be a whole multiple of the grid\'s input_resolution'),
    ("context = 4", "", "needs context = N"),
    ('dates = ["2018"]', 'dates = ["2018-13"]', "'2018-13' is not a date of the calendar"),
    ('series = { from = "2018-08", to = "2018-10", step = "1 month" }',
     'series = { from = "2018-08", to = "2018-10", step = "fortnightly" }', "series step 'fortnightly'"),
    ('head = "change"', 'head = "edges"', "head = 'edges' names no head of [model.heads]"),
]


@pytest.mark.parametrize(("old", "new", "phrase"), FUSION_REFUSALS[1:])
def test_the_engine_refuses_what_it_cannot_interpret_in_one_line(old, new, phrase, tmp_path):
    import tomllib

    from mapgen.pipeline.post import check_product
    from mapgen.workflows import ProductError

    assert old in FUSION
    with pytest.raises(ProductError) as info:
        product = parse_product(tomllib.loads(FUSION.replace(old, new)), str(tmp_path / "fusion.toml"))
        check_product(product)
    message = str(info.value)
    assert phrase in message and "\n" not in message and "fusion.toml" in message, message


def test_the_model_contract_is_checked_before_any_work(tmp_path):
    from mapgen.pipeline.run import check_model_contract
    from mapgen.workflows import ProductError

    # a per-pair output from a network that sees one date at a time
    product = _product(PER_DATE.replace('name = "kind"', 'name = "kind"\nper = "pair"'), tmp_path, "pd",
                       STITCH='method = "max"', OVERLAP=4, PADDING="zeros")
    with pytest.raises(ProductError, match="is per pair of dates, but test-per-date sees one date at a time"):
        check_model_contract(product, ("2016", "2017"))
    # inputs named otherwise than the network's
    fusion = _product(FUSION.replace('name = "sentinel"', 'name = "s1s2"'), tmp_path, "fusion")
    with pytest.raises(ProductError, match="test-fusion takes inputs hr, sentinel; the product's image inputs are"):
        check_model_contract(fusion, ("2018-08", "2020-08"))


def test_a_checkpoint_per_region_and_the_override(data, tmp_path):
    from engine_nets import PerDateNet

    from mapgen.models import save_checkpoint
    from mapgen.pipeline import lock
    from mapgen.pipeline.run import RunError

    for gain, city in enumerate(("wuhan", "xian"), start=2):  # one adapted network per city
        net = PerDateNet(PerDateConfig(scale=2))
        net.gain.data.fill_(gain)
        save_checkpoint(net, net.config, tmp_path / f"net-{city}.safetensors", meta={"city": city})
    text = PER_DATE.replace('checkpoint = "unused"', f'checkpoint = "{tmp_path}/net-{{region}}.safetensors"')
    product = _product(text, tmp_path, "perdate", STITCH='method = "max"', OVERLAP=4, PADDING="zeros")
    source = f"{data}/{{date}}/{{layer}}.tif"
    shas = {}
    for city in ("wuhan", "xian"):
        ctx, _ = prepare(product, REGION, [2016, 2017], source, tmp_path / city, region_name=city)
        lock.release(ctx.run_dir)
        assert ctx.model.path == str(tmp_path / f"net-{city}.safetensors")
        shas[city] = ctx.model.sha256
    assert shas["wuhan"] != shas["xian"]
    with pytest.raises(RunError, match=r"is chosen by the region's name: give --region-name"):
        prepare(product, REGION, [2016, 2017], source, tmp_path / "nameless")
    ctx, _ = prepare(product, REGION, [2016, 2017], source, tmp_path / "given", region_name="wuhan",
                     checkpoint=str(tmp_path / "net-xian.safetensors"))  # --checkpoint wins
    lock.release(ctx.run_dir)
    assert ctx.model.sha256 == shas["xian"]


def test_an_output_of_another_ones_maps_is_checked(tmp_path):
    from mapgen.pipeline.post import check_product
    from mapgen.workflows import ProductError

    for old, new, phrase in [('of = "kind"', 'of = "kinds"', "of = 'kinds' names no output made by the model"),
                             ('temporal = [{ kernel = "change" }]', 'temporal = [{ kernel = "majority_vote" }]',
                              'temporal = [{ kernel = "change" }]')]:
        product = _product(PER_DATE.replace(old, new), tmp_path, "pd", STITCH='method = "max"', OVERLAP=4,
                           PADDING="zeros")
        with pytest.raises(ProductError, match=phrase.replace("[", r"\[").replace("{", r"\{")):
            check_product(product)


def test_the_adapted_checkpoint_of_a_region_is_used_when_there_is_one(data, tmp_path, monkeypatch):
    """[model] adapted names a region's own checkpoint (found by name in MAPGEN_CHECKPOINTS, where mapgen adapt
    writes it); a region without one runs the product's checkpoint, and the report says so."""
    from engine_nets import PerDateNet

    from mapgen.models import save_checkpoint
    from mapgen.pipeline import lock

    folder = tmp_path / "checkpoints"
    monkeypatch.setenv("MAPGEN_CHECKPOINTS", str(folder))
    for name, gain in (("net-base", 1), ("net-wuhan", 2)):
        net = PerDateNet(PerDateConfig(scale=2))
        net.gain.data.fill_(gain)
        save_checkpoint(net, net.config, folder / f"{name}.safetensors", meta={})
    text = PER_DATE.replace('checkpoint = "unused"', 'checkpoint = "net-base"\nadapted = "net-{region}"')
    product = _product(text, tmp_path, "perdate", STITCH='method = "max"', OVERLAP=4, PADDING="zeros")
    source = f"{data}/{{date}}/{{layer}}.tif"
    chosen = {}
    for city in ("wuhan", "xian"):
        ctx, _ = prepare(product, REGION, [2016, 2017], source, tmp_path / city, region_name=city)
        lock.release(ctx.run_dir)
        chosen[city] = (Path(ctx.model.path).name, [w for w in ctx.warnings if w.startswith("checkpoint:")])
    assert chosen["wuhan"] == ("net-wuhan.safetensors", [])
    assert chosen["xian"][0] == "net-base.safetensors"
    assert "no checkpoint adapted to xian (net-xian); using net-base" in chosen["xian"][1][0]
