"""End to end on a real LocalCluster, real COGs and a real Zarr store (DESIGN invariants 1, 2, 4, 5, 7)."""

from __future__ import annotations

import hashlib
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
from conftest import TEST_BLOCK, YEARS, region_box
from rio_cogeo.cogeo import cog_validate

from mapgen.pipeline.run import RUN_DIR, execute, prepare
from mapgen.workflows import load_product

PRODUCT = load_product("cbra")


def run(client, scene, out, checkpoint, region=None, block=TEST_BLOCK, years=YEARS):
    ctx, plan = prepare(PRODUCT, region if region is not None else region_box(), years, str(scene), out,
                        checkpoint=str(checkpoint), block_size=block)
    report = execute(client, ctx, plan)
    assert not report.failed, report.failed
    return report


def tiles(out: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    found = {}
    for path in sorted(Path(out).glob("CBRA_*.tif")):
        with rasterio.open(path) as src:
            found[path.name] = (src.read(1), src.read_masks(1))
    return found


@pytest.fixture(scope="module")
def reference(client, scene, checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    run(client, scene, out, checkpoint)
    return out


def test_outputs_are_valid_cbra_tiles(reference):
    names = sorted(p.name for p in reference.glob("*.tif"))
    assert names == [f"CBRA_{y}_E115N40.tif" for y in YEARS]
    for name in names:
        path = reference / name
        valid, errors, _ = cog_validate(str(path), quiet=True)
        assert valid, errors
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 4326
            assert src.dtypes[0] == "uint8"
            assert src.descriptions[0] == "building rooftop area"
            assert src.colormap(1)[255][:3] == (228, 38, 44)
            assert src.overviews(1)
            assert src.nodata == 1 and src.mask_flag_enums[0] == [rasterio.enums.MaskFlags.nodata]
            data = src.read(1, masked=True)
            assert set(np.unique(data.compressed())) <= {0, 255}
            # the tile covers exactly the 2 × 2 blocks of the region at 2.5 m
            assert src.shape == (2 * 371 * 4, 2 * 371 * 4)
            west, south, east, north = src.bounds
            assert west == pytest.approx(116.3, abs=1e-9) and north == pytest.approx(39.5 + 2 / 30)
    for year in YEARS:
        with rasterio.open(reference / f"CBRA_{year}.vrt") as vrt, \
                rasterio.open(reference / f"CBRA_{year}_E115N40.tif") as tif:
            np.testing.assert_array_equal(vrt.read(1), tif.read(1))
            np.testing.assert_array_equal(vrt.read_masks(1), tif.read_masks(1))


@pytest.mark.slow
def test_decomposition_invariance(client, scene, checkpoint, tmp_path):
    """Invariant 1: nine blocks of 1/30° equal one CBRA block of 0.1°, pixel for pixel."""
    run(client, scene, tmp_path / "many", checkpoint, region=region_box(3, 3), block=TEST_BLOCK)
    run(client, scene, tmp_path / "one", checkpoint, region=region_box(3, 3), block="0.1")
    one, many = tiles(tmp_path / "one"), tiles(tmp_path / "many")
    assert len(one) == len(YEARS)
    assert one.keys() == many.keys()
    for name in one:
        np.testing.assert_array_equal(one[name][0], many[name][0], err_msg=name)
        np.testing.assert_array_equal(one[name][1], many[name][1], err_msg=name)


def test_determinism(client, scene, checkpoint, reference, tmp_path):
    """Invariant 4: the same inputs and checkpoint give byte-identical pixel data."""
    run(client, scene, tmp_path, checkpoint)
    again, first = tiles(tmp_path), tiles(reference)
    for name in first:
        assert again[name][0].tobytes() == first[name][0].tobytes()
        assert again[name][1].tobytes() == first[name][1].tobytes()


def test_vote_applied_between_edge_years(reference):
    """Invariant 3 end to end: the stored pre-vote stack, voted by the NumPy reference, is the output."""
    import zarr
    from test_kernels import vote_reference

    store = zarr.open_group(str(reference / RUN_DIR / "store.zarr"), mode="r")
    classes, final = store["classes"][:], store["final"][:]
    np.testing.assert_array_equal(final, vote_reference(classes))
    assert (final[1] != classes[1]).any()  # the vote really changed something
    np.testing.assert_array_equal(final[0], classes[0])
    np.testing.assert_array_equal(final[-1], classes[-1])


def test_models_load_once_per_worker(client, reference, checkpoint):
    sha256 = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    loads = client.run(lambda: dict(__import__("mapgen.pipeline.inference", fromlist=["x"]).loads))
    assert len(loads) == 2
    counts = [worker.get(sha256, 0) for worker in loads.values()]
    assert all(c <= 1 for c in counts), loads
    assert sum(counts) >= 1


def test_same_command_skips_finished_work(client, scene, checkpoint, reference):
    mtimes = {p: p.stat().st_mtime_ns for p in reference.glob("*.tif")}
    report = run(client, scene, reference, checkpoint)
    assert report.block_years_done == 0 and report.tiles_written == []
    assert report.block_years_skipped == 4 * len(YEARS) and report.tiles_skipped == len(YEARS)
    assert {p: p.stat().st_mtime_ns for p in reference.glob("*.tif")} == mtimes


def test_no_data_is_masked_not_background(client, scene, checkpoint, tmp_path):
    """Invariant 2's corollary: where the source has no pixels, the output is masked, never 0."""
    from conftest import SOUTH, WEST

    # a region reaching past the scene's western edge (the scene covers 3 × 3 blocks + 80 px margin)
    region = region_box(2, 1, west=WEST - 2 / 30)
    run(client, scene, tmp_path, checkpoint, region=region)
    with rasterio.open(next(tmp_path.glob("CBRA_2016_*.tif"))) as src:
        mask = src.read_masks(1)
        west = src.bounds.left
    res = 1 / 44520
    scene_west = WEST - 80 / 11130
    first_valid_col = round((scene_west - west) / res)
    assert (mask[:, :first_valid_col] == 0).all()
    assert (mask[:, first_valid_col:] == 255).all()
    assert SOUTH  # the region's rows are all inside the scene


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(np.stack(tiles(folder)[p.name]).tobytes()).hexdigest()
            for p in sorted(folder.glob("CBRA_*.tif"))}


@pytest.mark.slow
def test_resume_after_kill(scene, checkpoint, reference, region_file, tmp_path):
    """Invariant 5: kill the whole run (client and workers) mid-way; the same command finishes it with the
    same outputs, without recomputing finished blocks, and no partial tile ever has a final name."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mapgen.cli", "run", "--product", "cbra", "--years", "2016-2018",
           "--region", str(region_file), "--source", str(scene), "--out", str(out), "--workers", "2",
           "--checkpoint", str(checkpoint), "--block-size", TEST_BLOCK, "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    predicted = out / RUN_DIR / "state" / "predict"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = list(predicted.glob("*")) if predicted.exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1)
    finished_before = {p.name: p.stat().st_mtime_ns for p in predicted.glob("[!.]*")}
    assert 3 <= len(finished_before) < 4 * len(YEARS)
    for path in out.glob("CBRA_*.tif"):  # anything under a final name is a complete, valid COG
        assert cog_validate(str(path), quiet=True)[0]

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    after = {p.name: p.stat().st_mtime_ns for p in predicted.glob("[!.]*")}
    assert all(after[name] == mtime for name, mtime in finished_before.items())  # not recomputed
    assert len(after) == 4 * len(YEARS)
    assert _digest(out) == _digest(reference)
    from test_catalog import catalog_files

    assert catalog_files(out) == catalog_files(reference)  # the STAC catalog too, file for file
    assert not list(out.glob(".*"))  # no scratch or partial files left behind
    assert not [p for p in (out / RUN_DIR).rglob(".*") if p.name.endswith(".tmp")]  # nor half-written markers


def test_cli_runs_on_an_existing_scheduler(client, scene, checkpoint, reference, region_file, tmp_path):
    """`--scheduler ADDRESS` sends the run to a running cluster and leaves that cluster up."""
    from click.testing import CliRunner

    from mapgen.cli import main

    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "run", "--product", "cbra", "--years", "2016-2018", "--region", str(region_file), "--source", str(scene),
        "--out", str(out), "--checkpoint", str(checkpoint), "--block-size", TEST_BLOCK, "--no-progress",
        "--scheduler", client.scheduler.address])
    assert result.exit_code == 0, result.output
    assert "tiles written 3" in result.stderr
    assert _digest(out) == _digest(reference)
    assert len(client.scheduler_info()["workers"]) == 2  # the cluster is still there


def test_a_resumed_run_sweeps_what_killed_writers_left(tmp_path):
    """A SIGKILL between writing a scratch file and renaming it leaves the scratch; the next run removes
    exactly those, never a final name or a store's own hidden files."""
    from mapgen.pipeline.run import sweep_scratch

    run = tmp_path / RUN_DIR
    (run / "state" / "predict").mkdir(parents=True)
    (run / "store.zarr").mkdir()
    scratch = [run / "state" / "predict" / ".r1c2-2016.123.tmp", tmp_path / ".CBRA_2016_E115N40.tif.9.scratch.tif",
               tmp_path / ".CBRA_2016_E115N40.tif.9.partial.tif", tmp_path / ".CBRA_2016.vrt.9.partial",
               run / ".manifest.json.tmp"]
    kept = [run / "state" / "predict" / "r1c2-2016", tmp_path / "CBRA_2016_E115N40.tif", run / "store.zarr" / ".zattrs",
            run / "manifest.json"]
    for path in scratch + kept:
        path.write_text("x")
    assert sorted(sweep_scratch(tmp_path)) == sorted(scratch)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in scratch)


# --------------------------------------------------------------------------------------------------
# Other sources (issue 4): STAC scenes, a declared RGBN file in UTM, the input cache of mapgen fetch


def _agreement(a: Path, b: Path) -> dict[str, float]:
    """Per tile: the share of pixels with the same value and mask."""
    ta, tb = tiles(a), tiles(b)
    assert sorted(ta) == sorted(tb)
    return {name: float(((ta[name][0] == tb[name][0]) & (ta[name][1] == tb[name][1])).mean()) for name in ta}


# The STAC path rebuilds the composite from uint16 DN (reflectance rounded to 1e-4); a confidence that
# sits within that rounding of 0.5 may flip. Measured: 99.99 % or more of the pixels equal.
STAC_AGREEMENT = 0.999


def test_stac_scenes_give_the_same_tiles_as_the_files(client, scene, checkpoint, reference, tmp_path):
    from mapgen.pipeline.sources import open_inputs
    from mapgen.synthetic.scenes import write_scene_catalog

    catalog = write_scene_catalog(scene, tmp_path / "scenes", YEARS, per_year=3, seed=5)
    inputs = open_inputs(PRODUCT, str(catalog), YEARS, mask=f"{scene}/{{year}}/built.tif")
    out = tmp_path / "out"
    ctx, plan = prepare(PRODUCT, region_box(), YEARS, inputs, out, checkpoint=str(checkpoint), block_size=TEST_BLOCK)
    report = execute(client, ctx, plan)
    assert not report.failed, report.failed
    assert report.inputs["s2"].startswith("STAC ") and "built.tif" in report.inputs["built"]
    for name, share in _agreement(reference, out).items():
        assert share >= STAC_AGREEMENT, (name, share)
        assert cog_validate(str(out / name), quiet=True)[0]


def test_cache_of_mapgen_fetch_gives_identical_tiles_and_resumes(client, scene, checkpoint, reference, tmp_path):
    from mapgen.pipeline.fetch import execute_fetch, prepare_fetch
    from mapgen.pipeline.sources import SourceError

    cache = tmp_path / "cache"
    job = prepare_fetch(PRODUCT, region_box(), YEARS, str(scene), cache, block_size=TEST_BLOCK)
    first = execute_fetch(client, job)
    assert not first.failed and first.done == len(job.pieces) * len(YEARS) and first.skipped == 0
    # the 2 × 2 blocks and the ring of halo strips around them, cut along the block lattice; each piece
    # is inside one chunk of the cache, so no two tasks write the same chunk
    assert len(job.pieces) == 16
    chunk = job.cache.chunk
    for box in job.pieces.values():
        r, c = box.row - job.cache.extent.row, box.col - job.cache.extent.col
        assert r // chunk == (r + box.height - 1) // chunk and c // chunk == (c + box.width - 1) // chunk
    # a fetch killed half-way: markers gone for two pieces; the same command fetches only those
    markers = sorted((cache / "state" / "fetch").iterdir())
    for marker in markers[:2]:
        marker.unlink()
    with pytest.raises(SourceError, match="incomplete, 46 of 48"):
        prepare(PRODUCT, region_box(), YEARS, str(cache), tmp_path / "refused", checkpoint=str(checkpoint),
                block_size=TEST_BLOCK)
    again = execute_fetch(client, prepare_fetch(PRODUCT, region_box(), YEARS, str(scene), cache,
                                                block_size=TEST_BLOCK))
    assert again.done == 2 and again.skipped == 46
    out = tmp_path / "out"
    run(client, cache, out, checkpoint)
    assert set(_agreement(reference, out).values()) == {1.0}  # the cache holds exactly what the files give
    with pytest.raises(SourceError, match="reaches outside the fetched one"):
        prepare(PRODUCT, region_box(3, 3), YEARS, str(cache), tmp_path / "bigger", checkpoint=str(checkpoint),
                block_size=TEST_BLOCK)


def _rgbn_utm(scene: Path, out: Path, year: int) -> Path:
    """The scene's composite as a photo-like 4-band uint8 red, green, blue, NIR GeoTIFF in UTM at 10 m."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(scene / str(year) / "s2.tif") as src:
        refl = src.read()
        dst_crs = "EPSG:32737"  # UTM 37 S: Nairobi
        transform, width, height = calculate_default_transform(src.crs, dst_crs, src.width, src.height,
                                                               *src.bounds, resolution=10)
        warped = np.full((4, height, width), np.nan, dtype=np.float32)
        for i in range(4):
            reproject(refl[i], warped[i], src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                      dst_crs=dst_crs, resampling=Resampling.bilinear, src_nodata=np.nan, dst_nodata=np.nan)
    dn = np.where(np.isfinite(warped), np.clip(np.round(np.nan_to_num(warped) / RGBN_SCALE), 1, 255), 0)
    path = out / f"rgbn_{year}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=4, dtype="uint8",
                       crs=dst_crs, transform=transform, nodata=0, photometric="RGB", alpha="UNSPECIFIED") as dst:
        dst.write(dn[[2, 1, 0, 3]].astype(np.uint8))  # file order: red, green, blue, NIR
    return path


RGBN_SCALE = 0.4 / 254  # reflectance 0–0.4 stretched over DN 1–255, as photo-like products do


def test_rgbn_uint8_in_utm_outside_china_without_dynamic_world(client, checkpoint, tmp_path):
    from click.testing import CliRunner
    from conftest import write_region

    from mapgen.cli import main
    from mapgen.synthetic import generate_scene

    years = [2019, 2020]
    west, south = 36.8, -1.4  # Nairobi, on the 0.1° lattice
    scene_dir = tmp_path / "scene"
    generate_scene(region_box(1, 1, west, south).bounds, years, scene_dir, seed=4, margin_px=80)
    imagery = tmp_path / "imagery"
    imagery.mkdir()
    for year in years:
        _rgbn_utm(scene_dir, imagery, year)
    region = write_region(tmp_path / "nairobi.geojson", region_box(1, 1, west, south))
    out = tmp_path / "out"
    args = ["run", "--product", "cbra", "--years", "2019-2020", "--region", str(region), "--block-size", TEST_BLOCK,
            "--source", str(imagery / "rgbn_{year}.tif"), "--checkpoint", str(checkpoint),
            "--scheduler", client.scheduler.address, "--out", str(out), "--no-progress"]
    refused = CliRunner().invoke(main, args + ["--bands", "red,green,blue,nir", "--mask", "none"])
    assert refused.exit_code == 2 and "holds uint8 numbers with no scale" in refused.output
    refused = CliRunner().invoke(main, args + ["--scale", str(RGBN_SCALE)])
    assert refused.exit_code == 2 and "no 'built' input" in refused.output
    result = CliRunner().invoke(main, args + ["--bands", "red,green,blue,nir", "--scale", str(RGBN_SCALE),
                                              "--mask", "none"])
    assert result.exit_code == 0, result.output
    assert "built: switched off (--mask none)" in result.output
    names = sorted(p.name for p in out.glob("*.tif"))
    # the 2.5° cell 35–37.5 E, 2.5 S–0, named by its upper-left corner
    assert names == ["CBRA_2019_E35N0.tif", "CBRA_2020_E35N0.tif"]
    for name in names:
        assert cog_validate(str(out / name), quiet=True)[0]
        with rasterio.open(out / name) as src:
            data = src.read(1, masked=True)
            assert set(np.unique(data.compressed())) <= {0, 255}
            assert data.count() == data.size  # the file covers the block: every pixel has data
            assert (data == 255).any()  # buildings are found
    import json

    report = json.loads((out / RUN_DIR / "report.json").read_text())
    assert report["inputs"]["built"] == "none" and "bands red,green,blue,nir" in report["inputs"]["s2"]


# --------------------------------------------------------------------------------------------------
# National scale (issue 5): a worker lost mid-run, a block that keeps failing, model tasks on GPU workers


def _own_cluster(**worker_specs):
    """A LocalCluster of worker processes made to measure (name → Nanny options), for tests that kill or
    single out workers without disturbing the shared one."""
    from distributed import Client, LocalCluster, Nanny

    cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=None)
    for name, options in worker_specs.items():
        cluster.worker_spec[name] = {"cls": Nanny, "options": {"nthreads": 1, **options}}
    cluster.sync(cluster._correct_state)
    client = Client(cluster)
    client.wait_for_workers(len(worker_specs))
    return cluster, client


@pytest.mark.slow
def test_a_worker_killed_mid_task_does_not_stop_the_run(scene, checkpoint, reference, tmp_path):
    """Invariant 6: SIGKILL a worker while it runs a model task; the scheduler gives its tasks to the other
    worker (and to the one the nanny restarts), and the tiles equal an undisturbed run's."""
    cluster, client = _own_cluster(a={}, b={})
    killed = []

    def kill_a_busy_worker(done, total, kind):
        if killed or done < 1:  # once a block is done, the next ones are running
            return
        for address, keys in client.processing().items():
            if any(str(k).startswith("block-") for k in keys):
                pid = client.run(os.getpid, workers=[address])[address]
                os.kill(pid, signal.SIGKILL)
                killed.append((address, pid))
                return

    try:
        ctx, plan = prepare(PRODUCT, region_box(), YEARS, str(scene), tmp_path / "out", checkpoint=str(checkpoint),
                            block_size=TEST_BLOCK)
        report = execute(client, ctx, plan, progress=kill_a_busy_worker)
    finally:
        client.close()
        cluster.close()
    assert killed, "no worker was busy with a model task"
    assert report.status == "finished" and not report.failed
    assert report.retried.get("block", 0) >= 1  # the task that was running when its worker died
    assert report.block_years_done == 4 * len(YEARS)
    assert _digest(tmp_path / "out") == _digest(reference)


def _corrupt_tile(path: Path, tile_col: int, tile_row: int) -> None:
    """Overwrite one internal tile of a compressed GeoTIFF with zeros: GDAL then fails to decode it, every
    time (a damaged file, not a flaky read)."""
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_{tile_col}_{tile_row}", "TIFF", bidx=1))
        size = int(src.get_tag_item(f"BLOCK_SIZE_{tile_col}_{tile_row}", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes(size))


def test_a_block_that_keeps_failing_is_reported_and_the_rest_goes_on(client, scene, checkpoint, reference,
                                                                     region_file, tmp_path):
    """A damaged input under some blocks in 2017: those block-years are tried 1 + 2 times, then reported
    with their block and error; every other block-year is done. With the file mended, the same command
    finishes only what is missing, and the tiles equal the reference."""
    import shutil

    from click.testing import CliRunner

    from mapgen.cli import main

    data = tmp_path / "data"
    for year in YEARS:
        (data / str(year)).mkdir(parents=True)
        for layer in ("s2", "built"):
            shutil.copy(scene / str(year) / f"{layer}.tif", data / str(year) / f"{layer}.tif")
    damaged = data / "2017" / "s2.tif"
    out = tmp_path / "out"
    args = ["run", "--product", "cbra", "--years", "2016-2018", "--region", str(region_file), "--source",
            str(data / "{year}" / "{layer}.tif"), "--out", str(out), "--checkpoint", str(checkpoint),
            "--block-size", TEST_BLOCK, "--scheduler", client.scheduler.address, "--no-progress"]
    # The checks before work read every file (a damaged one is refused there), so the damage comes after
    # them: the disk or the network fails under a running run.
    ctx, plan = prepare(PRODUCT, region_box(), YEARS, str(data / "{year}" / "{layer}.tif"), out,
                        checkpoint=str(checkpoint), block_size=TEST_BLOCK)
    stamp = damaged.stat()
    _corrupt_tile(damaged, 1, 2)  # rows 1024–1273, cols 512–1023 of the scene: under the south-east block
    summary = execute(client, ctx, plan).summary()
    report = json.loads((out / RUN_DIR / "report.json").read_text())
    assert report["status"] == "failed"
    failed_blocks = report["blocks_failed"]
    assert 1 <= len(failed_blocks) < 4
    block_errors = [f for f in report["failed"] if not f.startswith("tile ")]
    assert len(block_errors) == len(failed_blocks)
    for block, line in zip(failed_blocks, block_errors, strict=True):
        assert line.startswith(f"block {block}: BlockError: block {block}: read 2017: ")  # block, year, error,
        assert "s2.tif" in line  # and the file
    assert report["retried"]["block"] >= len(failed_blocks)
    # the rest went on: every other block-year is predicted, the healthy blocks are voted
    predicted = {p.name for p in (out / RUN_DIR / "state" / "predict").glob("[!.]*")}
    assert len(predicted) == 4 * len(YEARS) - len(failed_blocks)
    voted = {p.name for p in (out / RUN_DIR / "state" / "vote").glob("[!.]*")}
    assert len(voted) == 4 - len(failed_blocks) and not voted & set(failed_blocks)
    assert report["tiles_failed"] == [f"CBRA_{y}_E115N40.tif" for y in YEARS] and not list(out.glob("*.tif"))
    assert "FAILED" in summary and failed_blocks[0] in summary

    done_before = {p.name: p.stat().st_mtime_ns for p in (out / RUN_DIR / "state" / "predict").glob("[!.]*")}
    # mended as a backup restores it (cp -p): the very file the run started with, so the run may resume;
    # a file with other content or another mtime would be another source, refused (test_integrity.py)
    shutil.copy(scene / "2017" / "s2.tif", damaged)
    os.utime(damaged, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    after = {p.name: p.stat().st_mtime_ns for p in (out / RUN_DIR / "state" / "predict").glob("[!.]*")}
    assert {k: after[k] for k in done_before} == done_before  # finished work is not redone
    assert _digest(out) == _digest(reference)


@pytest.mark.slow
def test_model_tasks_go_to_gpu_workers_and_the_rest_anywhere(scene, checkpoint, reference, tmp_path):
    """Block tasks ask for a share of the Dask resource GPU: on a cluster where one worker advertises it, every
    model task runs there, while exports also use the worker without it. (No GPU here: the resource is
    advertised by a CPU worker, and the model runs on the CPU.)"""
    from distributed import get_task_stream

    cluster, client = _own_cluster(gpu={"resources": {"GPU": 1}}, cpu={})
    try:
        workers = {info["name"]: address for address, info in client.scheduler_info()["workers"].items()}
        ctx, plan = prepare(PRODUCT, region_box(), YEARS, str(scene), tmp_path / "out", checkpoint=str(checkpoint),
                            block_size=TEST_BLOCK)
        with get_task_stream(client) as stream:
            report = execute(client, ctx, plan, gpu=True)
    finally:
        client.close()
        cluster.close()
    assert report.status == "finished" and report.cluster["gpus"] == 1
    ran_on: dict[str, set[str]] = {}
    for record in stream.data:
        ran_on.setdefault(str(record["key"]).split("-", 1)[0], set()).add(record["worker"])
    assert ran_on["block"] == {workers["gpu"]}
    assert ran_on["export"] <= set(workers.values())  # exports ask for nothing: any worker may take them
    assert _digest(tmp_path / "out") == _digest(reference)


def _environ_at_exec() -> dict[str, str]:
    """The environment the process was started with (what glibc's malloc read), not os.environ now."""
    raw = Path("/proc/self/environ").read_bytes().split(b"\0")
    return dict(entry.decode(errors="replace").split("=", 1) for entry in raw if b"=" in entry)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads Linux's /proc")
def test_local_workers_start_with_one_malloc_arena():
    """MALLOC_ARENA_MAX=1 is in a local worker's environment from its exec on (Dask's pre-spawn environ),
    so that threads started before the model plugin (pyarrow's) allocate from the main arena as well."""
    from mapgen.pipeline.run import local_client

    with local_client(1) as client:
        found = client.run(lambda: _environ_at_exec().get("MALLOC_ARENA_MAX"))
    assert list(found.values()) == ["1"]


@pytest.mark.slow
def test_a_local_worker_runs_its_model_on_all_its_cores(scene, checkpoint, reference, tmp_path):
    """Dask's nanny starts workers with OMP_NUM_THREADS=1; a local cluster's worker still runs torch and the
    kernels on the machine's cores / workers (here one worker: all of them), the report says so, and the
    tiles are those of the 2-worker reference."""
    from mapgen.pipeline.cluster import machine_cores
    from mapgen.pipeline.run import local_client

    with local_client(1) as client:
        ctx, plan = prepare(PRODUCT, region_box(), YEARS, str(scene), tmp_path / "out", checkpoint=str(checkpoint),
                            block_size=TEST_BLOCK)
        report = execute(client, ctx, plan)
        (nthreads,) = client.nthreads().values()
    assert report.status == "finished"
    assert nthreads == 1  # one block at a time, its model on every core
    assert list(report.worker_threads.values()) == [{"torch": machine_cores(), "numba": machine_cores()}]
    assert f"model {machine_cores()}, kernels {machine_cores()}" in report.summary()
    assert _digest(tmp_path / "out") == _digest(reference)
