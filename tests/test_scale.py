"""National scale without running the models: bounded streaming of a plan of China, the task ledger,
cluster settings and builders (SLURM through a stand-in sbatch, the Kubernetes operator's resource),
scheduled job files, the plan's compute estimate, and the bf16 inference path."""

from __future__ import annotations

import copy
import datetime
import json
import os
import stat
import sys
import time
from pathlib import Path

import dask.config
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from conftest import TINY_CONFIG
from rasterio.transform import from_origin

from mapgen.cli import main
from mapgen.pipeline.cluster import (
    ClusterError,
    close_client,
    kubernetes_cluster_spec,
    load_config,
    make_client,
    resolve_device,
    setting,
    slurm_cluster_kwargs,
)
from mapgen.pipeline.run import RunTasks, execute, prepare
from mapgen.pipeline.stream import TaskStream
from mapgen.tiles import load_region
from mapgen.workflows import JobError, load_job, load_product
from mapgen.workflows.dates import parse_years

ROOT = Path(__file__).resolve().parents[1]
CHINA = ROOT / "examples" / "china.geojson"
PRODUCT = load_product("cbra")


@pytest.fixture()
def settings():
    """Each test's changes to the Dask configuration are undone afterwards."""
    saved = copy.deepcopy(dask.config.config)
    yield
    dask.config.config.clear()
    dask.config.config.update(saved)


# --- the task stream -------------------------------------------------------------------------------------

def _square(x):
    return x * x


def _always_fails(x):
    raise OSError(f"disk full at {x}")


def test_stream_keeps_in_flight_bounded_and_reports_failures(client):
    stream = TaskStream(client, max_in_flight=8, retries=2)
    work = (lambda i=i: stream.submit("sq", str(i), _always_fails if i == 7 else _square, i) for i in range(200))
    results = {}
    errors = {}
    for finished in stream.results(work):
        assert stream.in_flight <= 8
        if finished.error:
            errors[finished.ident] = finished.error
        else:
            results[int(finished.ident)] = finished.result
    ledger = stream.ledger()
    stream.close()
    assert results == {i: i * i for i in range(200) if i != 7}
    assert errors == {"7": "OSError: disk full at 7"}
    assert stream.peak_in_flight <= 8  # as the client saw it; the scheduler forgets a released task a moment later
    assert ledger["peak"] <= 8 + 2
    assert [k.split("-")[1] for k in ledger["retried"]] == ["7"]  # started 1 + 2 retries, then given up
    deadline = time.time() + 5  # the scheduler forgets released tasks a moment after the client lets go
    while client.run_on_scheduler(lambda dask_scheduler: [k for k in dask_scheduler.tasks if str(k).startswith("sq-")]):
        assert time.time() < deadline, "tasks left on the scheduler"
        time.sleep(0.05)


# --- a national plan, streamed with tasks that do nothing -------------------------------------------------

def _noop_block(ctx, block):
    seconds = {f"{stage}_seconds": 0.0 for stage in ("read", "model", "predict", "read_wait", "vote")}
    return {"windows": 1, **seconds, "worker": "w", "torch_threads": 1, "numba_threads": 1}


def _noop_export(ctx, tile, output, date):
    return {"tile": ctx.tile_path(tile.row, tile.col, date, output).name, "seconds": 0.0}


class Enough(Exception):
    pass


def _scheduler_load(dask_scheduler) -> tuple[int, int]:
    unfinished = sum(ts.state in ("waiting", "queued", "processing", "no-worker")
                     for ts in dask_scheduler.tasks.values())
    return unfinished, len(dask_scheduler.tasks)


def _world_raster(path: Path) -> Path:
    """4-band reflectance over 70–140° E, 15–55° N at 0.5°: a source that covers China, read by nothing."""
    data = np.full((4, 80, 140), 0.15, dtype=np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=140, height=80, count=4, dtype="float32", crs="EPSG:4326",
                       transform=from_origin(70, 55, 0.5, 0.5), nodata=float("nan")) as dst:
        dst.write(data)
    return path


@pytest.mark.slow
def test_a_national_plan_streams_with_bounded_tasks_and_client_memory(client, checkpoint, tmp_path):
    """China, 2016–2021 (97,226 blocks, ~100,000 tasks): the client submits blocks only as tasks finish, so the
    tasks live on the scheduler stay under the bound, and the client's memory does not grow with the work."""
    import tracemalloc

    from mapgen.pipeline.sources import open_inputs

    years = list(range(2016, 2022))
    inputs = open_inputs(PRODUCT, str(_world_raster(tmp_path / "world.tif")), years, mask="none")
    started = time.perf_counter()
    ctx, plan = prepare(PRODUCT, load_region(CHINA), years, inputs, tmp_path / "out", checkpoint=str(checkpoint))
    assert time.perf_counter() - started < 30
    assert (len(plan.tiles), plan.block_count) == (204, 97_226)
    tasks = RunTasks(block=_noop_block, export=_noop_export)
    bound = 48
    per_block = 1  # one task a block; a tile's exports go when its last block ends
    limit = bound + per_block + len(years)
    held = {}  # bytes allocated by mapgen's own code and still held, when the run is stopped
    ours = [tracemalloc.Filter(True, str(ROOT / folder / "*")) for folder in ("pipeline", "tiles", "workflows")]
    for stop_after in (150, 600):
        def progress(done, total, kind, stop_after=stop_after):
            assert total == 97_226 + 204 * len(years)  # a task per block, an export per tile and year
            if done % 25 == 0:
                unfinished, known = client.run_on_scheduler(_scheduler_load)
                assert unfinished <= limit  # tasks waiting or running on the cluster
                assert known <= 2 * limit  # + finished ones the scheduler has not forgotten yet
            if done >= stop_after:
                snapshot = tracemalloc.take_snapshot().filter_traces(ours)
                held[stop_after] = sum(stat.size for stat in snapshot.statistics("filename"))
                raise Enough

        tracemalloc.start()
        with pytest.raises(Enough):
            execute(client, ctx, plan, tasks=tasks, max_in_flight=bound, progress=progress)
        tracemalloc.stop()
        report = json.loads((Path(ctx.run_dir) / "report.json").read_text())
        assert report["status"] == "interrupted"
        assert report["peak_in_flight"] <= bound + len(years)  # + the exports of the tile a block closed
        assert report["cluster"]["workers"] == 2
    # 4× the tasks, not 4× the memory: the run's own state is the tasks in flight and the open tiles
    assert held[600] < 1.2 * held[150] + 100_000, held
    deadline = time.time() + 5
    while client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)):  # cancelled, not left behind
        assert time.time() < deadline, "tasks left on the scheduler"
        time.sleep(0.05)
    assert not list(Path(ctx.run_dir, "state").glob("*/*"))  # the stand-in tasks wrote nothing


def test_plan_of_china_answers_in_seconds_with_an_estimate(tmp_path):
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["plan", "--product", "cbra", "--years", "2016-2021", "--region", str(CHINA),
                                       "--json"])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started < 30
    plan = json.loads(result.output)
    assert (plan["tiles"], plan["blocks"], plan["block_years"]) == (204, 97_226, 583_356)
    compute = plan["compute"]
    # ~400 windows per 0.1° block-year (1,113 px at stride 58, plus the halo's windows)
    assert 380 * 583_356 < compute["windows"] < 430 * 583_356
    assert compute["h100_bf16_peak_hours"] == pytest.approx(compute["windows"] * 175.4e9 / 989.4e12 / 3600)
    for m in compute["measured"]:
        assert m["hours"] == pytest.approx(compute["windows"] / m["windows_per_s"] / 3600)
    text = CliRunner().invoke(main, ["plan", "--product", "cbra", "--years", "2016-2021", "--region", str(CHINA),
                                     "--no-list-tiles"]).output
    assert "tiles 204" in text and "blocks 97,226" in text and "H100" in text


def test_window_count_matches_the_lattice():
    import shapely

    from mapgen.pipeline.context import tile_scheme
    from mapgen.pipeline.estimate import plan_windows
    from mapgen.pipeline.windows import WindowLattice
    from mapgen.tiles import plan_region

    plan = plan_region(shapely.box(116.05, 39.05, 116.38, 39.22), tile_scheme(PRODUCT), [2019, 2020])
    lattice = WindowLattice(PRODUCT.window.size, PRODUCT.window.stride)
    brute = sum(len(lattice.covering(b.box)[1]) for b in plan.blocks) * 2
    assert plan_windows(plan, lattice) == brute


# --- cluster settings and builders ------------------------------------------------------------------------

def test_defaults_and_a_settings_file(settings, tmp_path):
    assert setting("cluster") == "local" and setting("max-in-flight") > 0 and setting("slurm.gpus") == 1
    path = tmp_path / "mine.yaml"
    path.write_text("mapgen:\n  cluster: slurm\n  slurm:\n    gpus: 4\n    queue: gpu-long\n    account: mapping\n")
    load_config(path)
    assert setting("cluster") == "slurm" and setting("slurm.gpus") == 4
    assert setting("slurm.cores") == 8  # not given: the default stays
    kwargs = slurm_cluster_kwargs()
    assert kwargs["queue"] == "gpu-long" and kwargs["account"] == "mapping"
    assert kwargs["job_extra_directives"] == ["--gres=gpu:4"]
    assert kwargs["worker_extra_args"] == ["--resources", "GPU=4"]


@pytest.mark.parametrize("text,message", [
    ("mapgen:\n  clustr: slurm\n", "unknown mapgen setting(s) mapgen.clustr"),
    ("mapgen:\n  kubernetes:\n    volume-clam: data\n", "unknown mapgen setting(s) mapgen.kubernetes.volume-clam"),
    ("mapgen: [1, 2\n", "not YAML"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_bad_settings_files_are_refused_in_one_line(settings, tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ClusterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(path)


def test_unknown_cluster_kind_is_refused(settings):
    with pytest.raises(ClusterError, match="cluster 'pbs'"):
        make_client("pbs")


def test_device_auto_follows_the_cluster(settings):
    assert resolve_device("auto", "local") == "cpu"  # no GPU on this machine
    assert resolve_device("auto", "slurm") == "cuda"
    dask.config.set({"mapgen.kubernetes.gpus": 0})
    assert resolve_device("auto", "kubernetes") == "cpu"
    assert resolve_device("cuda:1", "slurm") == "cuda:1"  # a remote worker's GPUs cannot be seen from here


@pytest.fixture()
def fake_slurm(tmp_path, monkeypatch):
    """Stand-ins for sbatch/squeue/scancel (no SLURM here) that record the job scripts they are sent."""
    bin_dir, log = tmp_path / "bin", tmp_path / "submitted"
    bin_dir.mkdir()
    log.mkdir()
    scripts = {
        "sbatch": f'#!/bin/sh\ncp "$1" {log}/job-$$.sh\necho "Submitted batch job $$"\n',
        "scancel": "#!/bin/sh\nexit 0\n",
        "squeue": "#!/bin/sh\nexit 0\n",
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_slurm_cluster_submits_gpu_worker_jobs(settings, fake_slurm):
    """--cluster slurm: dask-jobqueue submits `jobs` batch jobs, each one worker asking SLURM for its GPUs
    (gres) and advertising them to Dask as the resource GPU."""
    dask.config.set({"mapgen.slurm.jobs": 3, "mapgen.slurm.queue": "gpu"})
    client = make_client("slurm")
    try:
        deadline = time.time() + 30
        while len(list(fake_slurm.glob("job-*.sh"))) < 3 and time.time() < deadline:
            time.sleep(0.1)
        jobs = sorted(fake_slurm.glob("job-*.sh"))
        assert len(jobs) == 3
        script = jobs[0].read_text()
        assert "#SBATCH --gres=gpu:1" in script and "#SBATCH -p gpu" in script
        assert "#SBATCH --cpus-per-task=8" in script
        assert "--resources GPU=1" in script and client.scheduler.address.split("://")[1] in script
        assert sys.executable.split("/")[-1].startswith("python")
    finally:
        close_client(client)


def test_kubernetes_cluster_resource_asks_workers_for_gpus(settings):
    dask.config.set({"mapgen.kubernetes.volume-claim": "mapgen-data", "mapgen.kubernetes.workers": 5})
    spec = kubernetes_cluster_spec()
    assert spec["kind"] == "DaskCluster" and spec["spec"]["worker"]["replicas"] == 5
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["args"][worker["args"].index("--resources") + 1] == "GPU=1"
    assert "nvidia.com/gpu" not in json.dumps(scheduler)
    for part in ("worker", "scheduler"):
        pod = spec["spec"][part]["spec"]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "mapgen-data"
        assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/data"


def test_config_command_prints_settings(settings, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("mapgen:\n  max-in-flight: 99\n")
    result = CliRunner().invoke(main, ["config", "--cluster-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "max-in-flight: 99" in result.output


# --- scheduled jobs ---------------------------------------------------------------------------------------

def test_years_with_last():
    today = datetime.date(2026, 11, 21)
    assert parse_years("2016-last", today) == list(range(2016, 2026))
    assert parse_years("last", today) == [2025]
    with pytest.raises(ValueError):
        parse_years("last-2016", today)


def test_the_national_job_file_resolves(tmp_path):
    job = load_job(ROOT / "workflows" / "jobs" / "cbra-china.toml", today=datetime.date(2027, 3, 1))
    argv = list(job.argv)
    assert argv[argv.index("--years") + 1] == "2016-2026"
    assert argv[argv.index("--out") + 1] == "/data/cbra/2026"
    assert Path(argv[argv.index("--region") + 1]) == CHINA
    assert argv[argv.index("--cluster") + 1] == "slurm"
    # every option it stands for is one `mapgen run` knows
    known = {opt for param in main.commands["run"].params for opt in (*param.opts, *param.secondary_opts)}
    assert {a for a in argv if a.startswith("--")} <= known


@pytest.mark.parametrize("text,message", [
    ("[job]\nproduct = 'cbra'\n", "lacks region, years, source, out"),
    ("[job]\nproduct='cbra'\nregion='r'\nyears='2016-'\nsource='s'\nout='o'\n", "years"),
    ("[job]\nproduct='cbra'\nregion='r'\nyears='2019'\nsource='s'\nout='o'\nclutser='slurm'\n", "unknown key"),
    ("product = 'cbra'\n", "needs a [job] table"),
])
def test_bad_job_files_are_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "job.toml"
    path.write_text(text)
    with pytest.raises(JobError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_job(path)
    result = CliRunner().invoke(main, ["workflow", "run", str(path)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


# --- the GPU path, exercised on the CPU ------------------------------------------------------------------

def test_bf16_channels_last_path_agrees_with_fp32(tmp_path):
    """The path a GPU runs (bf16 autocast, channels-last, padded batches) gives the fp32 classes on all but
    a sliver of pixels; run here through the CPU's autocast, since there is no GPU."""
    from mapgen.models import STSRSegConfig, init_checkpoint
    from mapgen.pipeline.inference import ModelRef, predict_windows

    path = tmp_path / "tiny.safetensors"
    sha = init_checkpoint(STSRSegConfig(**TINY_CONFIG), path, seed=3)
    rng = np.random.default_rng(1)
    windows = rng.standard_normal((40, 4, 64, 64)).astype(np.float32)
    fp32 = predict_windows(ModelRef(str(path), sha, "stsr-seg", "cpu", "fp32"), windows, 16)
    bf16 = predict_windows(ModelRef(str(path), sha, "stsr-seg", "cpu", "bf16"), windows, 16)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape == (40, 256, 256)
    assert np.abs(bf16 - fp32).max() < 0.05
    assert ((bf16 > 0.5) == (fp32 > 0.5)).mean() > 0.99
    with pytest.raises(ValueError, match="precision 'fp16'"):
        ModelRef(str(path), sha, "stsr-seg", "cpu", "fp16")
