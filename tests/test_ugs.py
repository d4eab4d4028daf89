"""UGS end to end on a real LocalCluster: a synthetic city, a small UGSNet, GB/T 13989 map frames (DESIGN
invariants for `ugs` as for `cbra`: decomposition across blocks and frames, the maximum where windows overlap,
determinism, resume after a kill, one-line refusals)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from conftest import assert_refused, write_region
from rio_cogeo.cogeo import cog_validate

from mapgen.models import UGSNetConfig, init_checkpoint
from mapgen.pipeline.context import tile_scheme
from mapgen.pipeline.run import RUN_DIR, execute, prepare
from mapgen.workflows import load_product

PRODUCT = load_product("ugs")
PRODUCT_SCHEME = tile_scheme(PRODUCT)
# Across the boundary of two 1:25,000 frames (113°22′30″ E), inside one row of frames (23°00′–23°05′ N).
REGION = shapely.box(113.3702, 23.0505, 113.3798, 23.0595)
FRAMES = ("UGS_2021_F49F012043.tif", "UGS_2021_F49F012044.tif")
TINY = UGSNetConfig(width=4, blocks=(1, 1, 1, 1), reduce_channels=8, head_channels=8, points=256)
SMALL_BLOCK = "1/192"  # 525 px: four blocks a side of the default 1/48


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    from mapgen.synthetic.ugs import generate_ugs_scene

    out = tmp_path_factory.mktemp("city")
    generate_ugs_scene(REGION.bounds, "2021", out, seed=5)
    return out


@pytest.fixture(scope="module")
def ugs_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "ugsnet-tiny.safetensors"
    init_checkpoint(TINY, path, seed=4)
    return path


def _run(client, city: Path, out: Path, checkpoint: Path, block: str | None = None, region=REGION):
    ctx, plan = prepare(PRODUCT, region, ["2021"], str(city / "catalog.json"), out, checkpoint=str(checkpoint),
                        block_size=block, region_name="test-city")
    report = execute(client, ctx, plan)
    assert not report.failed, report.failed
    return report


def _tiles(out: Path) -> dict[str, np.ndarray]:
    """Each frame's pixels over the region's box (a frame's written part follows the blocks, so its extent
    depends on the block size; the map over the region must not)."""
    grid = PRODUCT_SCHEME.input_grid
    box = grid.box(REGION.bounds)
    found = {}
    for path in sorted(out.glob("UGS_*.tif")):
        with rasterio.open(path) as src:
            window = rasterio.windows.from_bounds(*grid.bounds(box), transform=src.transform).round_offsets()
            found[path.name] = src.read(1, window=rasterio.windows.Window(window.col_off, window.row_off,
                                                                           box.width, box.height), boundless=True,
                                        fill_value=1)
    return found


@pytest.fixture(scope="module")
def reference(client, city, ugs_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ugs-reference")
    _run(client, city, out, ugs_checkpoint)
    return out


def test_frames_are_valid_cogs_named_by_sheet_with_the_regions_mosaic(reference):
    assert sorted(p.name for p in reference.glob("*.tif")) == list(FRAMES)
    assert (reference / "UGS_2021_test-city.vrt").is_file()
    for name in FRAMES:
        valid, errors, _ = cog_validate(str(reference / name), quiet=True)
        assert valid, errors
        with rasterio.open(reference / name) as src:
            # the part of the 7′30″ × 5′00″ frame the region's blocks cover (a whole frame holds 6 × 4 blocks)
            assert src.width % 2100 == 0 and src.height % 2100 == 0
            frame = PRODUCT_SCHEME.tile_bounds(*PRODUCT_SCHEME.tile_from_name(name)[:2])
            west, south, east, north = src.bounds
            assert frame[0] - 1e-9 <= west < east <= frame[2] + 1e-9
            assert frame[1] - 1e-9 <= south < north <= frame[3] + 1e-9
            assert src.crs.to_epsg() == 4326 and src.dtypes[0] == "uint8" and src.nodata == 1
            assert src.colormap(1)[255][:3] == (0x2C, 0xA0, 0x2C)
            assert src.overviews(1)
            values = np.unique(src.read(1, out_shape=(840, 1260)))
            assert set(values) <= {0, 1, 255} and 1 in values  # outside the region: no data


def test_map_is_the_maximum_of_the_windows_then_the_threshold_and_the_boundary(reference, city, ugs_checkpoint):
    """Recompute the map of the region from the windows of the global lattice, outside the pipeline: the
    maximum of p(UGS) over the windows whose interior covers a pixel, > 0.5, inside the urban boundary."""
    from mapgen.models import load_checkpoint
    from mapgen.pipeline.context import tile_scheme
    from mapgen.pipeline.normalise import normalise
    from mapgen.pipeline.scoring import stitched_confidence
    from mapgen.pipeline.sources.read import read_box
    from mapgen.pipeline.windows import WindowLattice

    model = load_checkpoint(ugs_checkpoint, architecture="ugsnet")[0].eval()
    grid = tile_scheme(PRODUCT).input_grid
    box = grid.box(REGION.bounds)
    lattice = WindowLattice(PRODUCT.window.size, PRODUCT.window.stride)
    read, origins = lattice.covering(box)
    rgb = read_box(str(city / "2021" / "rgb.tif"), grid, read)
    x = normalise(rgb, PRODUCT.image_input.mean, PRODUCT.image_input.std)
    conf = stitched_confidence(model, x, read, origins, lattice, PRODUCT.window.batch, PRODUCT.stitch.border,
                               activation="softmax", channel=1)
    rows, cols = box.slices_in(read)
    urban = read_box(str(city / "2018" / "gub.tif"), grid, box)[0] > 0.5
    expected = np.where((conf[rows, cols] > 0.5) & urban, 255, 0)
    with rasterio.open(reference / "UGS_2021_test-city.vrt") as src:
        got = src.read(1, window=rasterio.windows.from_bounds(*grid.bounds(box), transform=src.transform))
    inside = rasterio.features.rasterize([REGION], out_shape=box.shape, transform=grid.transform(box)) > 0
    assert got.shape == expected.shape
    agree = (got == expected)[inside]
    assert agree.mean() > 0.999, agree.mean()  # ties at exactly 0.5 aside, the same pixels
    assert 0.01 < (expected[inside] == 255).mean() < 0.99  # the check sees both classes


def test_blocks_of_another_size_give_the_same_frames(client, city, ugs_checkpoint, reference, tmp_path):
    _run(client, city, tmp_path / "small", ugs_checkpoint, block=SMALL_BLOCK)
    a, b = _tiles(reference), _tiles(tmp_path / "small")
    assert a.keys() == b.keys() == set(FRAMES)
    for name in FRAMES:
        np.testing.assert_array_equal(a[name], b[name])


def test_a_vector_boundary_gives_the_raster_boundarys_map(client, city, ugs_checkpoint, reference, tmp_path):
    """The urban boundary as polygons (--mask GEOJSON, rasterised by rasterio) gives the same frames as the
    scene's raster of the same boundary."""
    ctx, plan = prepare(PRODUCT, REGION, ["2021"], str(city / "catalog.json"), tmp_path / "vector",
                        checkpoint=str(ugs_checkpoint), region_name="test-city")
    from mapgen.pipeline.sources import open_inputs

    inputs = open_inputs(PRODUCT, str(city / "catalog.json"), ["2021"], mask=str(city / "gub.geojson"))
    assert "polygons" in inputs.describe()["gub"]
    from mapgen.pipeline import lock

    lock.release(ctx.run_dir)
    ctx, plan = prepare(PRODUCT, REGION, ["2021"], inputs, tmp_path / "vector2", checkpoint=str(ugs_checkpoint),
                        region_name="test-city")
    assert not execute(client, ctx, plan).failed
    a, b = _tiles(reference), _tiles(tmp_path / "vector2")
    for name in FRAMES:
        np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.slow
def test_resume_after_kill(city, ugs_checkpoint, reference, tmp_path):
    """Kill the whole run mid-way; the same command finishes it with the same frames, without redoing the
    blocks already done."""
    region = write_region(tmp_path / "test-city.geojson", REGION)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mapgen.cli", "run", "--product", "ugs", "--years", "2021", "--region",
           str(region), "--source", str(city / "catalog.json"), "--out", str(out), "--workers", "2",
           "--checkpoint", str(ugs_checkpoint), "--block-size", SMALL_BLOCK, "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    predicted = out / RUN_DIR / "state" / "predict"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if predicted.exists() and len(list(predicted.glob("[!.]*"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in predicted.glob("[!.]*")}
    assert done
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert all((predicted / n).stat().st_mtime_ns == t for n, t in done.items())  # not redone
    a, b = _tiles(reference), _tiles(out)
    for name in FRAMES:
        np.testing.assert_array_equal(a[name], b[name])
    report = json.loads((out / RUN_DIR / "report.json").read_text())
    assert report["status"] == "finished"


# --- refusals: one line, exit 2, nothing written ---


def _args(region: Path, source: str, out: Path, checkpoint: Path, *extra: str) -> list[str]:
    return ["run", "--product", "ugs", "--years", "2021", "--region", str(region), "--source", source, "--out",
            str(out), "--checkpoint", str(checkpoint), "--no-progress", *extra]


def test_an_image_with_four_bands_is_refused(city, ugs_checkpoint, out, tmp_path):
    with rasterio.open(city / "2021" / "rgb.tif") as src:
        profile, data = src.profile, src.read()
    profile.update(count=4, driver="GTiff")
    profile.pop("photometric", None)
    folder = tmp_path / "four" / "2021"
    folder.mkdir(parents=True)
    with rasterio.open(folder / "rgb.tif", "w", **profile) as dst:
        dst.write(np.concatenate([data, data[:1]]))
    region = write_region(tmp_path / "r.geojson", REGION)
    assert_refused(_args(region, str(tmp_path / "four" / "{year}" / "rgb.tif"), out, ugs_checkpoint,
                         "--mask", str(city / "2018" / "gub.tif")), out, "4 bands")


def test_a_missing_or_empty_urban_boundary_is_refused(city, ugs_checkpoint, out, tmp_path):
    region = write_region(tmp_path / "r.geojson", REGION)
    image = str(city / "{year}" / "rgb.tif")
    assert_refused(_args(region, image, out, ugs_checkpoint), out, "no 'gub' input", "--mask")
    empty = tmp_path / "gub.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert_refused(_args(region, image, out, ugs_checkpoint, "--mask", str(empty)), out, "holds no polygons")


def test_a_checkpoint_of_another_architecture_is_refused(city, out, tmp_path):
    from conftest import TINY_CONFIG

    from mapgen.models import STSRSegConfig

    stsr = tmp_path / "stsr.safetensors"
    init_checkpoint(STSRSegConfig(**TINY_CONFIG), stsr, seed=1)
    region = write_region(tmp_path / "r.geojson", REGION)
    assert_refused(_args(region, str(city / "catalog.json"), out, stsr), out, "stsr-seg", "ugsnet")


def test_a_region_outside_the_sheet_system_is_refused(city, ugs_checkpoint, out, tmp_path):
    region = write_region(tmp_path / "south.geojson", shapely.box(113.37, -23.06, 113.38, -23.05))
    assert_refused(_args(region, str(city / "catalog.json"), out, ugs_checkpoint), out, "sheet")


def test_evaluate_gives_the_papers_metrics_per_frame_and_overall(reference, city):
    """OA, precision, recall, F1 and IoU per frame and overall against the truth raster, and the same counts
    against the truth as polygons of the boundary's kind (a vector reference is rasterised like the mask)."""
    from mapgen.pipeline.evaluate import evaluate_run
    from mapgen.pipeline.metrics import Confusion

    result = evaluate_run(reference, str(city / "2021" / "ugs.tif"))
    d = result.to_dict()
    assert sorted(d["tiles"]) == list(FRAMES)
    total = Confusion()
    for name in FRAMES:
        counts = d["tiles"][name]["counts"]
        total += Confusion(**counts)
        assert {"oa", "precision", "recall", "f1", "iou"} <= set(d["tiles"][name])
    assert total.to_dict()["counts"] == d["overall"]["counts"]
    assert d["overall"]["pixels"] > 0.9 * REGION.area / (1 / 100800) ** 2
    table = result.table()
    assert "Pre %" in table and FRAMES[0] in table
