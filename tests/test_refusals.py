"""Invariant 8: bad input stops with one line that says what and where, before any work, losing nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from conftest import TINY_CONFIG, assert_refused, region_box, run_args, write_region

from mapgen.cli import main


def test_invalid_region(tmp_path, scene, checkpoint, out):
    bowtie = tmp_path / "bowtie.geojson"
    bowtie.write_text(json.dumps({"type": "Polygon", "coordinates": [[[116, 39], [117, 40], [117, 39],
                                                                        [116, 40], [116, 39]]]}))
    assert_refused(run_args(bowtie, scene, out, checkpoint), out, "bowtie.geojson", "invalid geometry")


def test_empty_region(tmp_path, scene, checkpoint, out):
    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert_refused(run_args(empty, scene, out, checkpoint), out, "empty.geojson", "no features")


def test_region_outside_every_source(tmp_path, scene, checkpoint, out):
    far = write_region(tmp_path / "far.geojson", region_box(west=10.0, south=50.0))
    assert_refused(run_args(far, scene, out, checkpoint), out, "lies outside every 's2' raster")


def test_unknown_product(region_file, scene, checkpoint, out):
    assert_refused(run_args(region_file, scene, out, checkpoint, product="cbrx"), out,
                   "unknown product 'cbrx'", "cbra")


def test_years_the_source_lacks(region_file, scene, checkpoint, out):
    assert_refused(run_args(region_file, scene, out, checkpoint, years="2015-2017"), out,
                   "no 's2' raster for 2015", "2016–2018")


def copy_as_files(scene: Path, files: Path) -> str:
    """The scene's rasters as plain files, returned as a {year}/{layer} pattern source."""
    for year in (2016, 2017, 2018):
        (files / str(year)).mkdir(parents=True)
        for layer in ("s2", "built"):
            shutil.copy(scene / str(year) / f"{layer}.tif", files / str(year) / f"{layer}.tif")
    return f"{files}/{{year}}/{{layer}}.tif"


def test_raster_with_wrong_band_count(tmp_path, region_file, scene, checkpoint, out):
    files = tmp_path / "files"
    pattern = copy_as_files(scene, files)
    bad = files / "2017" / "s2.tif"
    with rasterio.open(scene / "2017" / "s2.tif") as src:
        profile, data = src.profile, src.read([1, 2, 3])
    profile.update(count=3, driver="GTiff")
    with rasterio.open(bad, "w", **profile) as dst:
        dst.write(data)
    assert_refused(run_args(region_file, pattern, out, checkpoint), out, "s2 2017", str(bad), "3 bands", "needs 4")


def test_unreadable_raster(tmp_path, region_file, scene, checkpoint, out):
    files = tmp_path / "files"
    pattern = copy_as_files(scene, files)
    (files / "2018" / "built.tif").write_bytes(b"not a raster")
    assert_refused(run_args(region_file, pattern, out, checkpoint), out, "built 2018", "cannot be opened")


def test_checkpoint_with_wrong_hash(tmp_path, region_file, scene, checkpoint, out):
    bad = tmp_path / "tampered.safetensors"
    shutil.copy(checkpoint, bad)
    shutil.copy(checkpoint.with_suffix(".json"), bad.with_suffix(".json"))
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    assert_refused(run_args(region_file, scene, out, bad), out, "tampered.safetensors", "sha256")


def test_unknown_source(tmp_path, region_file, checkpoint, out):
    assert_refused(run_args(region_file, tmp_path / "nowhere", out, checkpoint), out, "nowhere",
                   "no such file")


def test_bad_years(region_file, scene, checkpoint, out):
    assert_refused(run_args(region_file, scene, out, checkpoint, years="2021-2016"), out, "'--years'", "2021-2016")


def test_plan_prints_counts(region_file):
    result = CliRunner().invoke(main, ["plan", "--product", "cbra", "--years", "2016-2021", "--region",
                                       str(region_file), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["tiles"] == 1 and summary["blocks"] == 1 and summary["block_years"] == 6
    assert summary["tile_names"]["2016"] == ["CBRA_2016_E115N40.tif"]
    assert summary["output_pixels_per_year"] == 4452**2
    assert np.isclose(summary["area_km2"], 11.13 * 11.13 * np.cos(np.radians(39.55)), rtol=0.01)


# --- options, settings and files that used to be tracebacks, silent defaults or misleading lines --------------
# Each row is one bad input: `mapgen` refuses it in one `mapgen: error:` line, exit 2, before any cluster
# starts, and the output folder is left as it was.

PRODUCT_FILE = Path(__file__).resolve().parents[1] / "workflows" / "products" / "cbra.toml"


def with_option(args: list[str], *extra: str) -> list[str]:
    """`args` with options added (a repeated option: click takes the last one)."""
    return [*args, *extra]


def fetch_args(region, source, out) -> list[str]:
    return ["fetch", "--product", "cbra", "--years", "2016-2018", "--region", str(region), "--source", str(source),
            "--cache", str(out / "cache"), "--no-progress"]


@pytest.mark.parametrize("size, phrase", [
    ("0", "must be more than 0°"),  # was ZeroDivisionError
    ("-0.1", "must be more than 0°"),  # was "the region touches no block"
    ("abc", "is not a number of degrees"),
    ("1/0", "is not a number of degrees"),
    ("nan", "is not a number of degrees"),
    ("", "is not a number of degrees"),
    ("1e-9", "not a whole number of"),  # smaller than a pixel
    ("7", "larger than the 2.5° tile"),
    ("0.3", "not a whole number of 0.3° blocks"),
])
def test_bad_block_size_in_run(size, phrase, region_file, scene, checkpoint, out):
    args = with_option(run_args(region_file, scene, out, checkpoint), f"--block-size={size}")
    assert_refused(args, out, f"--block-size {size}:", phrase, "cbra's own is 0.1")


@pytest.mark.parametrize("size", ["0", "-0.1", "abc"])
def test_bad_block_size_in_plan(size, region_file, out):
    args = ["plan", "--product", "cbra", "--years", "2016", "--region", str(region_file), f"--block-size={size}"]
    assert_refused(args, out, f"--block-size {size}:")


@pytest.mark.parametrize("size", ["0", "abc"])
def test_bad_block_size_in_fetch(size, region_file, scene, out):
    assert_refused(with_option(fetch_args(region_file, scene, out), f"--block-size={size}"), out,
                   f"--block-size {size}:")


@pytest.mark.parametrize("device, gpus, phrase", [
    ("gpu", 0, "not a device"),
    ("mps", 0, "not a device"),
    ("cuda:x", 0, "not a device"),
    ("CPU", 0, "not a device"),
    ("cuda", 0, "no GPU that torch can use"),  # was a 172-line AssertionError on every worker
    ("cuda:0", 0, "no GPU that torch can use"),
    ("cuda:1", 1, "each local worker sees only its own GPU"),
])
def test_bad_device(device, gpus, phrase, monkeypatch, region_file, scene, checkpoint, out):
    import mapgen.pipeline.cluster as cluster

    monkeypatch.setattr(cluster, "gpu_count", lambda: gpus)  # what this machine has, whatever it has
    args = with_option(run_args(region_file, scene, out, checkpoint), "--device", device)
    assert_refused(args, out, f"--device {device}", phrase)


def edited_product(tmp_path: Path, old: str, new: str) -> Path:
    """The shipped CBRA product file with one edit, written as cbra-bad.toml."""
    text = PRODUCT_FILE.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / "cbra-bad.toml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("old, new, phrases", [
    ("size = 64 ", 'size = "sixty-four" ', ["[window]: size = 'sixty-four' must be an integer"]),
    ("overlap = 0.1 ", 'overlap = "10%" ', ["[window]: overlap = '10%' must be a number"]),
    ("batch = 64", "batch = 6.4", ["[window]: batch = 6.4 must be an integer"]),
    ("size = 64 ", "size = 0 ", ["[window]: size = 0", "must be at least 1"]),
    ("overlap = 0.1 ", "overlap = 64 ", ["[window]: overlap = 64", "less than the window"]),
    ("overlap = 0.1 ", "overlap = -0.1 ", ["[window]: overlap = -0.1", "at least 0"]),
    ("scale = 4 ", 'scale = "4" ', ["[grid]: scale = '4' must be an integer"]),
    ('tile_size = "2.5"', 'tile_size = "two"', ["[grid] the tile size 'two' is not a number of degrees"]),
    ('input_resolution = "1/11130"', 'input_resolution = "0"', ["[grid] the input resolution must be more than 0°"]),
    ('bands = ["B2", "B3", "B4", "B8"]', 'bands = "B2,B3,B4,B8"', ["[[inputs]]: bands = 'B2,B3,B4,B8' must be a "
                                                                   "list of strings"]),
    ("mean = [0.14172366,", 'mean = ["high",', ["[[inputs]]: mean = ['high',", "must be a list of numbers"]),
    ('checkpoint = "stsr-seg-small"', "checkpoint = 5", ["[model]: checkpoint = 5 must be a string"]),
    ("nodata = 1 ", 'nodata = "one" ', ["[output]: nodata = 'one' must be an integer"]),
    ("value = 255", 'value = "255"', ["[output.classes]: value = '255' must be an integer"]),
    ('method = "max"', "method = true", ["[stitch]: method = True must be a string"]),
    ("threshold = 0.5 ", 'threshold = "half" ', ["[[post]] step 1 (threshold): threshold = 'half' must be a number "
                                                 "from 0 to 1"]),
    ("threshold = 0.5 ", "threshold = 1.5 ", ["[[post]] step 1 (threshold): threshold = 1.5 must be"]),
    ("threshold = 0.5 ", "threshold = true ", ["[[post]] step 1 (threshold): threshold = True must be"]),
    ("threshold = 0.5 ", "threshhold = 0.5 ", ["[[post]] step 1 (threshold): unknown parameter(s) threshhold"]),
    ('layer = "built"', 'layer = "bulit"', ["[[post]] step 2 (mask): layer = 'bulit' names no input", "s2, built"]),
    ('layer = "built"', "layer = 2", ["[[post]] step 2 (mask): layer = 2 must be a string"]),
    ("threshold = 0.2 ", 'threshold = "0.2" ', ["[[post]] step 2 (mask): threshold = '0.2' must be a number"]),
    ('resampling = "bilinear"', 'resampling = "cubic"', ["[[post]] step 2 (mask): resampling = 'cubic' must be"]),
    ("window = 3 ", 'window = "3" ', ["[[temporal]] step 1 (majority_vote): window = '3' must be 3"]),
    ('kernel = "majority_vote"', "kernel = 3", ["[[temporal]]: kernel = 3 must be a string"]),
    ("[stitch]", "[stich]", ["unknown key(s) or section(s) ['stich']"]),
    ('title = "Building rooftop area (CBRA)"', "title = 3", ["title = 3 must be a string"]),
])
def test_product_file_with_a_wrong_type(old, new, phrases, tmp_path, region_file, scene, checkpoint, out):
    path = edited_product(tmp_path, old, new)
    assert_refused(run_args(region_file, scene, out, checkpoint, product=str(path)), out, str(path), *phrases)


def test_product_file_with_a_wrong_type_in_plan(tmp_path, region_file, out):
    path = edited_product(tmp_path, "size = 64 ", 'size = "sixty-four" ')
    assert_refused(["plan", "--product", str(path), "--years", "2016", "--region", str(region_file)], out,
                   f"{path} [window]: size = 'sixty-four' must be an integer")


@pytest.mark.parametrize("text, phrase", [
    ("mapgen:\n  local:\n    threads-per-worker: two\n", "mapgen.local.threads-per-worker = 'two' must be an integer"),
    ("mapgen:\n  max-in-flight: -3\n", "mapgen.max-in-flight = -3 must be an integer of at least 1"),
    ("mapgen:\n  local:\n    workers: -1\n", "mapgen.local.workers = -1 must be an integer of at least 1"),
    ("mapgen:\n  local:\n    workers: 0\n", "mapgen.local.workers = 0 must be an integer of at least 1"),
    ("mapgen:\n  retries: x\n", "mapgen.retries = 'x' must be an integer of at least 0"),
    ("mapgen:\n  retries: true\n", "mapgen.retries = True must be an integer"),
    ("mapgen:\n  gpu-batch: 0\n", "mapgen.gpu-batch = 0 must be an integer of at least 1"),
    ("mapgen:\n  cluster: slrum\n", "mapgen.cluster = 'slrum' must be one of local, slurm, kubernetes"),
    ("mapgen:\n  local: 4\n", "mapgen.local = 4 must be a mapping"),
    ("mapgen:\n  local:\n    memory-limit: -5\n", "mapgen.local.memory-limit = -5 must be a size"),
    ("mapgen:\n  slurm:\n    jobs: many\n", "mapgen.slurm.jobs = 'many' must be an integer of at least 1"),
    ("mapgen:\n  slurm:\n    gpus: -1\n", "mapgen.slurm.gpus = -1 must be an integer of at least 0"),
    ("mapgen:\n  kubernetes:\n    threads: 0\n", "mapgen.kubernetes.threads = 0 must be an integer of at least 1"),
    ("mapgen:\n  kubernetes:\n    image: 3\n", "mapgen.kubernetes.image = 3 must be a string"),
])
def test_cluster_settings_file_with_a_wrong_type(text, phrase, tmp_path, region_file, scene, checkpoint, out):
    path = tmp_path / "cluster-bad.yaml"
    path.write_text(text)
    args = with_option(run_args(region_file, scene, out, checkpoint), "--cluster-config", str(path))
    assert_refused(args, out, f"{path}: {phrase}")


def test_cluster_settings_file_with_a_wrong_type_in_fetch_and_config(tmp_path, region_file, scene, out):
    path = tmp_path / "cluster-bad.yaml"
    path.write_text("mapgen:\n  max-in-flight: -3\n")
    assert_refused(with_option(fetch_args(region_file, scene, out), "--cluster-config", str(path)), out,
                   "max-in-flight = -3")
    assert_refused(["config", "--cluster-config", str(path)], out, "max-in-flight = -3")


def test_dask_config_file_with_a_wrong_type(monkeypatch, tmp_path, region_file, scene, checkpoint, out):
    """A settings file Dask finds by itself (~/.config/dask, $DASK_CONFIG) is checked without --cluster-config."""
    import dask.config

    folder = tmp_path / "dask"
    folder.mkdir()
    (folder / "mapgen.yaml").write_text("mapgen:\n  local:\n    threads-per-worker: two\n")
    monkeypatch.setattr(dask.config, "paths", [*dask.config.paths, str(folder)])
    assert_refused(run_args(region_file, scene, out, checkpoint), out, str(folder / "mapgen.yaml"),
                   "threads-per-worker = 'two'")


@pytest.mark.parametrize("var, value, phrase", [
    ("DASK_MAPGEN__CLUSTR", "local", "unknown mapgen setting mapgen.clustr"),  # was ignored
    ("DASK_MAPGEN__LOCAL__WROKERS", "2", "unknown mapgen setting mapgen.local.wrokers"),
    ("DASK_MAPGEN_CLUSTER", "local", "two underscores between levels"),
    ("DASK_MAPGEN__RETRIES", "x", "mapgen.retries must be an integer of at least 0"),
    ("DASK_MAPGEN__MAX_IN_FLIGHT", "-3", "mapgen.max-in-flight must be an integer of at least 1"),
    ("DASK_MAPGEN__LOCAL__WORKERS", "0", "mapgen.local.workers must be an integer of at least 1"),
    ("DASK_MAPGEN__LOCAL__THREADS_PER_WORKER", "two", "mapgen.local.threads-per-worker must be an integer"),
    ("DASK_MAPGEN__SLURM__JOBS", "0", "mapgen.slurm.jobs must be an integer of at least 1"),
    ("DASK_MAPGEN__CLUSTER", "slrum", "mapgen.cluster must be one of local, slurm, kubernetes"),
])
def test_bad_environment_variable(var, value, phrase, region_file, scene, checkpoint, out):
    assert_refused(run_args(region_file, scene, out, checkpoint), out, var, phrase, env={var: value})


def test_bad_environment_variable_in_fetch_and_config(region_file, scene, out):
    env = {"DASK_MAPGEN__CLUSTR": "local"}
    assert_refused(fetch_args(region_file, scene, out), out, "DASK_MAPGEN__CLUSTR", env=env)
    assert_refused(["config"], out, "DASK_MAPGEN__CLUSTR", env=env)


@pytest.mark.parametrize("option, value", [
    ("--cluster", "slrum"),  # was "missing port number", after the checks
    ("--cluster", "pbs"),
    ("--cluster", ""),
    ("--cluster", "tcp://host:port"),
    ("--scheduler", "tcp://host"),
    ("--scheduler", "localhost"),
])
def test_bad_cluster(option, value, region_file, scene, checkpoint, out):
    args = with_option(run_args(region_file, scene, out, checkpoint), option, value)
    assert_refused(args, out, f"{option} {value!r}", "local, slurm, kubernetes", "scheduler address")


def test_bad_cluster_in_fetch(region_file, scene, out):
    assert_refused(with_option(fetch_args(region_file, scene, out), "--cluster", "slrum"), out,
                   "--cluster 'slrum'", "local, slurm, kubernetes")


@pytest.mark.parametrize("command, option, value", [
    ("run", "--workers", "0"),  # was silently the default
    ("run", "--workers", "-1"),  # hung
    ("run", "--threads-per-worker", "0"),
    ("run", "--batch", "0"),
    ("run", "--batch", "-64"),
    ("fetch", "--workers", "0"),
    ("fetch", "--threads-per-worker", "0"),
])
def test_counts_below_one(command, option, value, region_file, scene, checkpoint, out):
    base = run_args(region_file, scene, out, checkpoint) if command == "run" else fetch_args(region_file, scene, out)
    assert_refused(with_option(base, f"{option}={value}"), out, f"'{option}'", f"{value} is not in the range x>=1")


def test_local_cluster_refuses_counts_below_one():
    from mapgen.pipeline.cluster import ClusterError, local_cluster

    for kwargs in ({"workers": 0}, {"workers": -1}, {"threads_per_worker": 0}):
        with pytest.raises(ClusterError, match="must be an integer of at least 1"):
            local_cluster(**kwargs)


def fake_run(out: Path, manifest: str | None = None, store: bool = True) -> None:
    """A finished run's folder as `mapgen evaluate` reads it, without running anything: manifest, store
    attributes and one VRT a year (never read by a refusal)."""
    import zarr

    from mapgen.pipeline.run import RUN_DIR

    run_dir = out / RUN_DIR
    run_dir.mkdir()
    if manifest is None:
        manifest = json.dumps({"product": {"name": "cbra"}, "block_size": "1/30", "years": [2016, 2017, 2018],
                               "checkpoint_sha256": "0" * 64})
    (run_dir / "manifest.json").write_text(manifest)
    if store:
        zarr.open_group(str(run_dir / "store.zarr"), mode="w").attrs.update({"extent": [0, 0, 8, 8], "chunk": 8})
    for year in (2016, 2017, 2018):
        (out / f"CBRA_{year}.vrt").write_text("<VRTDataset/>")


def write_reference(tmp_path: Path, kind: str) -> Path:
    if kind == "text file":
        path = tmp_path / "reference.txt"
        path.write_text("rooftops: see the attached map\n")
    elif kind == "text as .tif":
        path = tmp_path / "reference.tif"
        path.write_text("not a raster\n")
    elif kind == "text as .geojson":
        path = tmp_path / "reference.geojson"
        path.write_text("{not json")
    elif kind == "raster without CRS":
        path = tmp_path / "nocrs.tif"
        with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as dst:
            dst.write(np.zeros((1, 4, 4), np.uint8))
    else:  # a folder
        path = tmp_path / "reference_dir"
        path.mkdir()
    return path


@pytest.mark.parametrize("kind, phrase", [
    ("text file", "cannot be read as a raster"),  # was a traceback
    ("text as .tif", "cannot be read as a raster"),
    ("text as .geojson", "cannot be read as a vector file"),
    ("raster without CRS", "has no coordinate reference system"),
    ("folder", "not a file"),
])
def test_evaluate_with_a_bad_reference(kind, phrase, tmp_path, out):
    fake_run(out)
    reference = write_reference(tmp_path, kind)
    assert_refused(["evaluate", str(out), "--reference", str(reference)], out, f"reference {reference}", phrase)


@pytest.mark.parametrize("case, phrase", [
    ("manifest not JSON", "not a mapgen run manifest"),
    ("manifest of something else", "not a mapgen run manifest"),
    ("no store", "the run is not finished"),
])
def test_evaluate_an_unfinished_run(case, phrase, scene, out):
    manifest = {"manifest not JSON": "{", "manifest of something else": '{"name": "x"}'}.get(case)
    fake_run(out, manifest=manifest, store=case != "no store")
    assert_refused(["evaluate", str(out), "--reference", str(scene / "{year}" / "rooftops.tif")], out, phrase)


def test_evaluate_an_out_that_is_a_file(tmp_path, scene, out):
    assert_refused(["evaluate", str(out / "CBRA_2015_E115N40.tif"), "--reference", str(scene / "2016" / "s2.tif")],
                   out, "is a file")


class _TrainingSettings:
    """An object of a training script's own class, as pickled checkpoints often carry."""

    def __init__(self) -> None:
        self.lr = 1e-4


@pytest.mark.parametrize("payload", ["custom class", "namespace"])
def test_pickled_checkpoint_that_could_run_code(payload, tmp_path, region_file, scene, checkpoint, out):
    import argparse

    import torch

    from mapgen.models import STSRSegConfig
    from mapgen.models.checkpoint_io import write_sidecar

    extra = _TrainingSettings() if payload == "custom class" else argparse.Namespace(lr=1e-4)
    path = tmp_path / "foreign.pt"
    torch.save({"edsr.head.weight": torch.zeros(1), "settings": extra}, path)
    write_sidecar(path, "stsr-seg", STSRSegConfig(**TINY_CONFIG))
    line = assert_refused(run_args(region_file, scene, out, path), out, str(path),
                          "refused, since loading it could run code", "objects other than tensors")
    assert "weights_only" not in line
