"""Invariants 5, 9 and 10: a run is its content, what a resume skips is verified, one run holds an OUT at
a time, and writers keep their temporaries (and their failures) to themselves. No wrong map with exit 0."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import TEST_BLOCK, YEARS, assert_refused, invoke, region_box, run_args, write_region
from rio_cogeo.cogeo import cog_validate

from mapgen.pipeline import lock
from mapgen.pipeline.run import RUN_DIR, RunError, execute, prepare
from mapgen.workflows import load_product

PRODUCT = load_product("cbra")
REGION = region_box(1, 1)  # one test block: every resume below redoes a little, fast


def run(client, out: Path, scene: Path, checkpoint: Path, **kwargs):
    ctx, plan = prepare(PRODUCT, REGION, YEARS, str(scene), out, checkpoint=str(checkpoint), block_size=TEST_BLOCK,
                        **kwargs)
    return execute(client, ctx, plan)


def pixels(out: Path) -> dict[str, str]:
    """sha256 of each tile's pixels and mask."""
    found = {}
    for path in sorted(out.glob("CBRA_*.tif")):
        with rasterio.open(path) as src:
            found[path.name] = hashlib.sha256(src.read(1).tobytes() + src.read_masks(1).tobytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def finished(client, scene, checkpoint, tmp_path_factory) -> Path:
    """A finished run of one block over three years; tests corrupt copies of it."""
    out = tmp_path_factory.mktemp("finished")
    report = run(client, out, scene, checkpoint)
    assert report.status == "finished" and len(report.tiles_written) == len(YEARS)
    return out


@pytest.fixture()
def copy(finished, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(finished, target)
    return target


def chunk(out: Path, array: str, year: int) -> Path:
    """The Zarr v3 chunk file of the one block's `array` in `year` (default chunk key encoding)."""
    return out / RUN_DIR / "store.zarr" / array / "c" / str(YEARS.index(year)) / "0" / "0"


# ---- identity by content (invariant 9) ------------------------------------------------------------

def _scene_copy(scene: Path, target: Path, change_year: int | None = None) -> Path:
    shutil.copytree(scene, target)
    if change_year is not None:  # another scene: the same layout, other pixels in one year
        path = target / str(change_year) / "s2.tif"
        with rasterio.open(path) as src:
            profile, data = src.profile, src.read()
        profile.update(driver="GTiff")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data[:, ::-1, :])
    return target


def test_a_relative_source_resumed_from_another_folder_is_refused(tmp_path, scene, checkpoint, out, monkeypatch):
    """The case of the issue: `--source scene` typed in two folders where `scene` names two scenes."""
    for name, change in (("a", None), ("b", 2018)):
        _scene_copy(scene, tmp_path / name / "scene", change)
    region = write_region(tmp_path / "region.geojson", REGION)
    monkeypatch.chdir(tmp_path / "a")
    prepare(PRODUCT, REGION, YEARS, "scene", out, checkpoint=str(checkpoint), block_size=TEST_BLOCK)
    lock.release(out / RUN_DIR)  # as a killed run leaves it
    monkeypatch.chdir(tmp_path / "b")
    line = assert_refused(run_args(region, "scene", out, checkpoint), out, str(out),
                          "holds a run of other inputs", "--force-restart")
    assert "inputs built files 2016 path" in line and "/a/scene/2016/built.tif" in line, line
    monkeypatch.chdir(tmp_path / "a")  # the same scene again, typed the same way: it resumes
    prepare(PRODUCT, REGION, YEARS, "scene", out, checkpoint=str(checkpoint), block_size=TEST_BLOCK)
    lock.release(out / RUN_DIR)


def test_an_edited_product_file_is_refused_then_restarted_knowingly(tmp_path, scene, checkpoint, out):
    from importlib import resources

    text = (resources.files("mapgen.workflows.products") / "cbra.toml").read_text()
    product_file = tmp_path / "cbra-mine.toml"
    product_file.write_text(text)
    region = write_region(tmp_path / "region.geojson", REGION)
    prepare(load_product(product_file), REGION, YEARS, str(scene), out, checkpoint=str(checkpoint),
            block_size=TEST_BLOCK)
    lock.release(out / RUN_DIR)
    (out / RUN_DIR / "state" / "predict").mkdir(parents=True)
    (out / RUN_DIR / "state" / "predict" / "r1185c8901-2016").write_text('{"sha256": "x"}')
    product_file.write_text(text.replace("threshold = 0.5", "threshold = 0.9"))
    line = assert_refused(run_args(region, scene, out, checkpoint, product=str(product_file)), out,
                          "product definition post 0 params threshold (0.5 → 0.9)")
    assert "--force-restart" in line
    ctx, _ = prepare(load_product(product_file), REGION, YEARS, str(scene), out, checkpoint=str(checkpoint),
                     block_size=TEST_BLOCK, restart=True)
    lock.release(out / RUN_DIR)
    manifest = json.loads((out / RUN_DIR / "manifest.json").read_text())
    assert manifest["product"]["definition"]["post"][0]["params"]["threshold"] == 0.9
    assert not (out / RUN_DIR / "state").exists()  # the old run's progress is gone
    assert (out / "CBRA_2015_E115N40.tif").exists()  # tiles are remade, never deleted


def test_identity_names_each_kind_of_change():
    from mapgen.pipeline.identity import changes

    old = {"years": [2016, 2017], "inputs": {"s2": {"files": {"2017": {"size": 10}}}}, "checkpoint_sha256": "a"}
    new = {"years": [2016, 2018], "inputs": {"s2": {"files": {"2017": {"size": 11}}}}, "checkpoint_sha256": "b"}
    assert changes(old, new) == ["checkpoint_sha256 (a → b)", "inputs s2 files 2017 size (10 → 11)",
                                 "years 1 (2017 → 2018)"]
    assert changes(old, old) == []


# ---- the store is checked, not trusted (invariant 10) --------------------------------------------

def test_a_well_formed_but_wrong_chunk_is_redone_not_exported(client, finished, copy, scene, checkpoint):
    """2016's map copied over 2017's before 2017 was exported: the resume redoes the vote, and the tile
    written is the right one."""
    shutil.copy(chunk(copy, "final", 2016), chunk(copy, "final", 2017))
    tile = next(copy.glob("CBRA_2017_*.tif"))
    tile.unlink()
    (marker,) = (copy / RUN_DIR / "state" / "export").glob("*-2017")
    marker.unlink()  # as if killed after the vote of 2017, before its export
    report = run(client, copy, scene, checkpoint)
    assert report.status == "finished"
    assert any("2017 (map)" in r for r in report.recomputed), report.recomputed
    assert report.blocks_voted == 1 and report.block_years_done == 0  # the classes were fine
    assert pixels(copy) == pixels(finished)


def test_a_truncated_tile_is_rewritten(client, finished, copy, scene, checkpoint):
    tile = next(copy.glob("CBRA_2018_*.tif"))
    tile.write_bytes(tile.read_bytes()[: tile.stat().st_size // 2])
    report = run(client, copy, scene, checkpoint)
    assert report.status == "finished"
    assert report.recomputed == [f"tile {tile.name}"]
    assert report.tiles_written == [tile.name] and report.tiles_skipped == len(YEARS) - 1
    assert report.verified["tiles"] == len(YEARS) - 1
    assert cog_validate(str(tile), quiet=True)[0]
    assert pixels(copy) == pixels(finished)


def test_a_chunk_of_random_bytes_is_rebuilt(client, finished, copy, scene, checkpoint):
    """Undecodable chunks (here in both arrays) made every later run fail; now they are recomputed."""
    rng = np.random.default_rng(0)
    for array in ("classes", "final"):
        chunk(copy, array, 2017).write_bytes(rng.bytes(4000))
    for name in [p.name for p in (copy / RUN_DIR / "state" / "export").iterdir()]:
        (copy / RUN_DIR / "state" / "export" / name).unlink()  # as if killed before the exports
    report = run(client, copy, scene, checkpoint)
    assert report.status == "finished", report.failed
    assert len(report.recomputed) == 2 and all(" 2017 (" in r for r in report.recomputed), report.recomputed
    assert report.block_years_done == 1 and report.blocks_voted == 1
    assert pixels(copy) == pixels(finished)


def test_a_resume_of_an_untouched_run_verifies_and_skips_everything(client, finished, copy, scene, checkpoint):
    report = run(client, copy, scene, checkpoint)
    assert report.recomputed == [] and report.tiles_written == [] and report.block_years_done == 0
    assert report.verified == {"blocks": 1, "tiles": len(YEARS)}
    assert "verified before skipping: blocks 1, tiles 3" in report.summary()


def test_markers_carry_the_checksum_of_what_they_vouch_for(finished):
    from mapgen.pipeline.store import file_digest

    state = finished / RUN_DIR / "state"
    for path in (state / "export").iterdir():
        record = json.loads(path.read_text())
        assert (record["size"], record["sha256"]) == file_digest(finished / record["file"])
    for path in (state / "predict").iterdir():
        assert len(json.loads(path.read_text())["sha256"]) == 64
    (vote,) = (state / "vote").iterdir()
    assert sorted(json.loads(vote.read_text())["sha256"]) == [str(y) for y in YEARS]


# ---- one run holds an OUT at a time --------------------------------------------------------------

def _cli(out: Path, scene: Path, checkpoint: Path, region: Path) -> list[str]:
    return [sys.executable, "-m", "mapgen.cli", "run", "--product", "cbra", "--years", "2016-2018",
            "--region", str(region), "--source", str(scene), "--out", str(out), "--workers", "1",
            "--checkpoint", str(checkpoint), "--block-size", TEST_BLOCK, "--no-progress"]


def _wait_for(predicate, proc, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.02)
    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    assert predicate()


def test_a_second_run_on_the_same_out_is_refused_while_the_first_lives(scene, checkpoint, tmp_path):
    out = tmp_path / "out"
    region = write_region(tmp_path / "region.geojson", REGION)
    first = subprocess.Popen(_cli(out, scene, checkpoint, region), start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: (out / RUN_DIR / "manifest.json").exists(), first)
        code, lines = invoke(run_args(region, scene, out, checkpoint))
        assert code == 2 and len(lines) == 1, lines
        assert f"{out}: in use by another mapgen process (pid {first.pid} on " in lines[0], lines[0]
        assert "mapgen run --product cbra" in lines[0]  # the holder's command
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # the holder is dead: the lock went with it, and the next run takes the folder
    prepare(PRODUCT, REGION, YEARS, str(scene), out, checkpoint=str(checkpoint), block_size=TEST_BLOCK)
    lock.release(out / RUN_DIR)


def test_the_lock_is_refused_in_the_library_too(scene, checkpoint, tmp_path):
    out = tmp_path / "out"
    prepare(PRODUCT, REGION, YEARS, str(scene), out, checkpoint=str(checkpoint), block_size=TEST_BLOCK)
    try:
        fd = os.open(out / RUN_DIR / "lock", os.O_RDWR)  # another holder: a second open file description
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    finally:
        lock.release(out / RUN_DIR)


# ---- temporaries, kills during export, full and read-only disks -----------------------------------

@pytest.mark.slow
def test_a_kill_during_export_leaves_only_final_tiles_and_the_run_folder(finished, scene, checkpoint, tmp_path):
    out = tmp_path / "out"
    region = write_region(tmp_path / "region.geojson", REGION)
    scratch = out / RUN_DIR / "tmp"
    proc = subprocess.Popen(_cli(out, scene, checkpoint, region), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen: list[str] = []

    def exporting() -> bool:
        # a tile's partial lives for milliseconds (its COG is encoded in memory): the first final tile
        # says the export is under way, with the other years' tiles still to come
        names = [p.name for p in scratch.iterdir()] if scratch.exists() else []
        seen.extend(names)
        return bool(names) or any(out.glob("CBRA_*.tif"))

    try:
        _wait_for(exporting, proc, seconds=240)
        assert not [p for p in out.iterdir() if p.name.startswith("tmp")]  # none of the translator's in OUT
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    left = sorted(p.name for p in out.iterdir())
    assert all(n == RUN_DIR or (n.startswith("CBRA_") and n.endswith(".tif")) for n in left), left
    for path in out.glob("CBRA_*.tif"):
        assert cog_validate(str(path), quiet=True)[0]
    result = subprocess.run(_cli(out, scene, checkpoint, region), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # what an uninterrupted run leaves: tiles, VRTs, their styles, the STAC catalog and the run folder
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in finished.iterdir())
    assert not list(scratch.iterdir())  # swept
    assert pixels(out) == pixels(finished)


@pytest.fixture()
def small_disk(tmp_path):
    """A 1 MB file system of its own (tmpfs), for a disk that really fills."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode:
        pytest.skip(f"cannot mount a small file system here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_says_so(small_disk):
    """A tile larger than the disk: the error names the file system, the tile and the space needed, and no
    temporary is left."""
    from mapgen.pipeline.context import tile_scheme
    from mapgen.pipeline.disk import DiskFull
    from mapgen.pipeline.export import write_tile
    from mapgen.tiles import Box

    scheme = tile_scheme(PRODUCT, TEST_BLOCK)
    extent = Box(0, 0, 2400, 2400)  # the space check before writing expects ≈ 0.7 MB: it passes
    rng = np.random.default_rng(1)
    codes = rng.choice(np.array([0, 1, 255], np.uint8), extent.shape)  # barely compressible: ≈ 1.6 MB as a COG
    scratch = small_disk / "mapgen-run" / "tmp"
    with pytest.raises(DiskFull) as caught:
        write_tile(small_disk / "CBRA_2016_E115N40.tif", scheme.output_grid, extent, [(extent, codes)],
                   PRODUCT.output, {}, scratch_dir=scratch)
    message = str(caught.value)
    assert f"no space left on {small_disk}" in message and "CBRA_2016_E115N40.tif" in message
    assert "MB are free" in message and "needs about" in message
    assert not list(scratch.iterdir()) and not (small_disk / "CBRA_2016_E115N40.tif").exists()


def test_a_run_refuses_a_disk_without_room_for_a_tile_before_work(small_disk, tmp_path, scene, checkpoint):
    (small_disk / "filler").write_bytes(b"\0" * 990_000)
    out = small_disk / "out"
    out.mkdir()
    (out / "CBRA_2015_E115N40.tif").write_bytes(b"a tile from an earlier run")
    region = write_region(tmp_path / "region.geojson", region_box(3, 3))
    assert_refused(run_args(region, scene, out, checkpoint), out, f"no space left on {small_disk}",
                   "largest tile", "needs about")


def test_a_read_only_out_is_refused_in_one_line(tmp_path, scene, checkpoint, region_file):
    mount = tmp_path / "ro"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode:
        pytest.skip(f"cannot mount a read-only file system here: {result.stderr.decode().strip()}")
    try:
        code, lines = invoke(run_args(region_file, scene, mount / "out", checkpoint))
        assert code == 2 and len(lines) == 1, lines
        assert str(mount / "out") in lines[0] and "Read-only file system" in lines[0], lines[0]
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_an_out_that_is_a_file_is_refused(tmp_path, scene, checkpoint, region_file):
    target = tmp_path / "notafolder"
    target.write_text("x")
    with pytest.raises(RunError, match="is a file, not a folder"):
        prepare(PRODUCT, REGION, YEARS, str(scene), target, checkpoint=str(checkpoint), block_size=TEST_BLOCK)


def test_a_fetch_resumed_verifies_the_cache_and_fetches_again_what_differs(client, scene, tmp_path):
    """Invariant 10 for the input cache: a chunk of random bytes and a chunk of another year are found by
    their markers' digests and fetched again; the cache then equals one fetched in one go."""
    import zarr

    from mapgen.pipeline.fetch import execute_fetch, prepare_fetch

    def fetch(cache: Path):
        return execute_fetch(client, prepare_fetch(PRODUCT, REGION, YEARS, str(scene), cache, block_size=TEST_BLOCK))

    assert not fetch(tmp_path / "whole").failed
    cache = tmp_path / "cache"
    first = fetch(cache)
    chunks = cache / "inputs.zarr" / "s2" / "c"
    year1 = sorted(p for p in (chunks / "1").rglob("*") if p.is_file())
    year1[0].write_bytes(np.random.default_rng(0).bytes(3000))
    target = chunks / "2" / year1[-1].relative_to(chunks / "1")
    shutil.copy(chunks / "0" / year1[-1].relative_to(chunks / "1"), target)
    again = fetch(cache)
    assert not again.failed and again.done == 2 and again.skipped == first.done - 2
    assert sorted(y for y in (int(k.rsplit("-", 1)[1]) for k in again.refetched)) == [2017, 2018], again.refetched
    for name in ("s2", "built"):
        whole = zarr.open_array(str(tmp_path / "whole" / "inputs.zarr" / name), mode="r")[:]
        mended = zarr.open_array(str(cache / "inputs.zarr" / name), mode="r")[:]
        assert np.array_equal(whole, mended, equal_nan=True), name
