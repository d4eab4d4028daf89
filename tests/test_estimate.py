"""The plan's compute estimate from measured throughputs: the record format benchmarks/gpu.py writes, hours
per figure of the product's own architecture, and `mapgen plan` printing them beside the ideal bound."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import shapely
import torch
from click.testing import CliRunner

from mapgen.cli import main
from mapgen.pipeline import estimate as estimate_module
from mapgen.pipeline.context import tile_scheme
from mapgen.pipeline.estimate import (
    Throughput,
    bf16_peak_tflops,
    estimate,
    load_throughputs,
    record_throughput,
    window_area_km2,
)
from mapgen.tiles import plan_region
from mapgen.workflows import load_product

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.geojson"
CBRA = load_product("cbra")


def _gpu_benchmark():
    """benchmarks/gpu.py as a module (benchmarks/ is no package)."""
    name = "mapgen_gpu_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "gpu.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


def _row(gpu, architecture: str, windows_per_s: float, **kw):
    fields = dict(architecture=architecture, product="cbra", config="full", gflop_per_window=175.4,
                  precision="bf16", batch=256, windows_per_s=windows_per_s, km2_per_s=windows_per_s * 0.3365,
                  tflops=windows_per_s * 0.1754, share_of_peak=windows_per_s * 0.1754 / 989.4, peak_memory_gib=12.5,
                  deterministic=True, calls=5)
    return gpu.Row(**{**fields, **kw})


@pytest.fixture()
def throughputs(tmp_path, monkeypatch):
    """A throughput.json of its own, in the old format (STSR-Seg on a CPU) and in the benchmark's (a GPU
    figure of STSR-Seg and one of UGSNet), which estimate() and `mapgen plan` read instead of the shipped one."""
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps({"cpu:small": {
        "batch": 64, "command": "python benchmarks/inference.py --record", "config": "small", "date": "2026-11-21",
        "device": "CPU x86_64, 2 threads", "kind": "cpu", "precision": "fp32", "torch": "2.13.0+cpu",
        "windows_per_s": 30.19}}))
    gpu = _gpu_benchmark()
    rows = [_row(gpu, "stsr-seg", 2500.0), _row(gpu, "stsr-seg", 3000.0, batch=1024),
            _row(gpu, "ugsnet", 900.0, product="ugs", gflop_per_window=206.5)]
    gpu.record(rows, torch.device("cpu"), path, "python benchmarks/gpu.py --record")
    monkeypatch.setattr(estimate_module, "THROUGHPUT", path)
    return path


def test_the_record_format_round_trips(throughputs):
    figures = {t.key: t for t in load_throughputs(throughputs)}
    assert set(figures) == {"cpu:small", "stsr-seg:cpu:full", "ugsnet:cpu:full"}
    old = figures["cpu:small"]
    assert (old.architecture, old.windows_per_s, old.tflops, old.torch) == ("stsr-seg", 30.19, None, "2.13.0+cpu")
    best = figures["stsr-seg:cpu:full"]  # the fastest of the architecture's rows
    assert (best.batch, best.windows_per_s, best.precision, best.product) == (1024, 3000.0, "bf16", "cbra")
    assert best.tflops == pytest.approx(526.2) and best.share_of_peak == pytest.approx(526.2 / 989.4, rel=1e-4)
    assert best.deterministic is True and best.peak_memory_gib == 12.5
    assert best.km2_per_s == pytest.approx(1009.5, rel=1e-4)
    # what load_throughputs reads, record_throughput writes back unchanged; fields it does not know are skipped
    records = json.loads(throughputs.read_text())
    again = record_throughput(records, best)
    assert again == records
    records["ugsnet:cpu:full"]["from_the_future"] = 1
    throughputs.write_text(json.dumps(records))
    assert load_throughputs(throughputs) == list(figures.values())


def test_estimate_takes_the_figures_of_the_products_architecture(throughputs):
    plan = plan_region(shapely.box(116.05, 39.05, 116.18, 39.12), tile_scheme(CBRA), [2019, 2020])
    compute = estimate(plan, CBRA)
    windows = compute["windows"]
    assert {m["key"] for m in compute["measured"]} == {"cpu:small", "stsr-seg:cpu:full"}  # no UGSNet
    for m in compute["measured"]:
        assert m["hours"] == pytest.approx(windows / m["windows_per_s"] / 3600)
    peak = windows * 175.4e9 / 989.4e12 / 3600
    assert compute["h100_bf16_peak_hours"] == pytest.approx(peak)
    assert compute["h100_bf16_goal_hours"] == pytest.approx(2 * peak)
    ugs = estimate(plan_region(shapely.box(113.3, 23.1, 113.32, 23.12), tile_scheme(load_product("ugs")), [2021]),
                   load_product("ugs"))
    assert [m["key"] for m in ugs["measured"]] == ["ugsnet:cpu:full"]


def test_plan_prints_gpu_hours_beside_the_ideal_bound(throughputs, monkeypatch):
    gpu = throughputs.parent / "gpu.json"
    gpu.write_text(json.dumps({**json.loads(throughputs.read_text()), "stsr-seg:nvidia-h200:full": {
        **json.loads(throughputs.read_text())["stsr-seg:cpu:full"], "kind": "gpu", "device": "NVIDIA H200"}}))
    monkeypatch.setattr(estimate_module, "THROUGHPUT", gpu)
    result = CliRunner().invoke(main, ["plan", "--product", "cbra", "--years", "2016-2021", "--region", str(DEMO),
                                       "--no-list-tiles"])
    assert result.exit_code == 0, result.output
    text = result.output
    windows = json.loads(CliRunner().invoke(main, ["plan", "--product", "cbra", "--years", "2016-2021", "--region",
                                                   str(DEMO), "--json"]).output)["compute"]["windows"]
    assert "ideal bound: " in text and "GPU-hours of one H100 at its bf16 peak (989.4 TFLOP/s)" in text
    assert "at 50 % of it (the goal" in text
    line = next(x for x in text.splitlines() if "NVIDIA H200" in x)
    assert line.strip().startswith(f"{windows / 3000 / 3600:.3g} GPU-hours at 3,000.0 windows/s")
    assert "526.2 TFLOP/s = 53.2 % of its bf16 peak" in line and "12.5 GiB" in line and "deterministic" in line
    assert "no GPU figure" not in text  # there is one
    assert "CPU-hours at 30.2 windows/s" in text


def test_peaks_and_window_area():
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == bf16_peak_tflops("NVIDIA H200") == 989.4
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0 and bf16_peak_tflops("Tesla T4") is None
    # 58 px of 1/11130° (10.0 m): 0.3365 km² a window; UGS 448 px of 1/100800° (1.10 m): 0.2448 km²
    assert window_area_km2(CBRA) == pytest.approx(0.3365, abs=1e-4)
    assert window_area_km2(load_product("ugs")) == pytest.approx(0.2448, abs=1e-4)


def test_throughput_defaults_keep_old_records_readable():
    figure = Throughput(key="cpu:small", architecture="stsr-seg", device="cpu", kind="cpu", config="small",
                        precision="fp32", batch=64, windows_per_s=1.0, date="2026-01-01", command="x")
    assert "tflops" not in record_throughput({}, figure)["cpu:small"]  # no nulls written


def test_the_benchmark_runs_end_to_end_on_the_cpu(tmp_path, capsys):
    """`benchmarks/gpu.py --quick` on one model, one batch size: the rows it prints, the record it writes."""
    gpu = _gpu_benchmark()
    path = tmp_path / "throughput.json"
    gpu.main(["--device", "cpu", "--quick", "--models", "stsr-seg", "--batches", "1", "--seconds", "0",
              "--record", "--throughput", str(path), "--json", str(tmp_path / "rows.json")])
    printed = capsys.readouterr().out
    assert "stsr-seg small (product cbra): 0.6 GFLOP a window of image 4×64×64" in printed
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert [(r["precision"], r["batch"], r["deterministic"]) for r in rows] == [("bf16", 1, True), ("fp32", 1, True)]
    (figure,) = load_throughputs(path)
    assert (figure.key, figure.architecture, figure.product, figure.kind) == ("stsr-seg:cpu:small", "stsr-seg",
                                                                              "cbra", "cpu")
    assert figure.km2_per_s == pytest.approx(figure.windows_per_s * window_area_km2(CBRA), rel=1e-3)
