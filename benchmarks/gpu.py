"""Throughput of every registered model's full network on this machine's device, through the pipeline's own
inference path; with --record, the figures `mapgen plan` turns into GPU-hours.

    python benchmarks/gpu.py [--device auto|cuda|cpu] [--quick] [--batches 64,256] [--seconds 4]
                             [--models stsr-seg,ugsnet] [--record] [--throughput PATH] [--json PATH]

Every architecture that a shipped product names and the registry knows is measured (STSR-Seg for cbra, UGSNet
for ugs; FUSU-Net and STSUN as they are registered), with random weights of its paper configuration, on random
windows of its product's shapes, through `predict_heads` (numpy in, scores back on the host, as a run does):

  bf16 : autocast to bfloat16 on channels-last tensors (what `mapgen run` uses on CUDA), at each batch size
         (default: 1×, 4× and 16× the product's [window] batch; the larger ones only where memory allows)
  fp32 : float32, contiguous, at the first batch size (CUDA's default lets convolutions use TF32)

Per row: windows/s (2 batches a call; the median call after two warm-ups; a call ends with the scores on the
host, so it is synchronised), km²/s (windows/s × the stride² each window adds at the product's input
resolution), TFLOP/s (windows/s × the network's FLOP per window) and its share of the chip's dense bf16
peak, peak GPU memory (this network's weights and its working set), and whether the same windows twice gave
bit-identical scores. The fp32 row also gives the largest difference of its scores from bf16's on the same
windows. --record writes each architecture's fastest row to pipeline/throughput.json under
"ARCHITECTURE:DEVICE:CONFIG" (other keys are kept).

--quick (the small configurations, batches 1 and 2, one warm-up, 0.3 s a row) checks the script end to end on a CPU
(`--device cpu --quick`); --record refuses to put its figures in the shipped file (give --throughput PATH).

On the lent GPU (kind nvidia-h200): torch, numba and numpy are there; mapgen is not installed and need not
be, this script imports it from the working tree. `mapgen.pipeline.inference` imports `distributed`, and
`mapgen.tiles` (through the window lattice) shapely, pyproj and affine, which are not there: carry their
wheels. Once, here, in the repository's root:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \\
        dask==2026.8.0 distributed==2026.8.0 tornado==6.6.1 tblib==3.2.2 zict==3.0.0 locket==1.0.0 \\
        partd==1.4.2 shapely==2.2.0 pyproj==3.7.2 affine==3.0.1

(about 15 MB; their other needs are on the device). Then one device call, carry [".whl"], timeout_s 600
(about 3 minutes of run for today's two models at the defaults, plus the machine's start):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
        .whl/*.whl && export PYTHONPATH=/tmp/site || exit; set -o pipefail; PYTHONUNBUFFERED=1 python3 \\
        benchmarks/gpu.py --record --json $OUT/gpu.json 2>&1 | tee $OUT/gpu.log; cp pipeline/throughput.json $OUT/

and copy the throughput.json that comes back over pipeline/throughput.json here.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.machinery
import importlib.util
import json
import platform
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "pipeline" / "throughput.json"
MEMORY_USE = 0.85  # of the device's memory: a larger batch whose projected peak passes this is skipped


def use_working_tree() -> None:
    """Import `mapgen` from this working tree whether or not it is installed (the device machine has it not):
    its packages are the repository's folders of the same names (pyproject's package-dir)."""
    if "mapgen" in sys.modules:
        return
    spec = importlib.machinery.ModuleSpec("mapgen", None, is_package=True)
    spec.submodule_search_locations = [str(ROOT)]
    sys.modules["mapgen"] = importlib.util.module_from_spec(spec)


use_working_tree()
try:
    from mapgen.models import get_architecture, save_checkpoint
    from mapgen.models.cost import window_flop
    from mapgen.pipeline.estimate import (
        Throughput,
        bf16_peak_tflops,
        model_cost,
        record_throughput,
        window_area_km2,
    )
    from mapgen.pipeline.inference import ModelRef, get_model, predict_heads
    from mapgen.workflows import Product, load_product, product_names
except ModuleNotFoundError as missing:  # on the device machine: before any device time is spent on a model
    sys.exit(f"benchmarks/gpu.py: no module {missing.name!r} here; carry the wheels this script's docstring lists")


@dataclass(frozen=True)
class Row:
    """One measurement: a network at one precision and batch size."""

    architecture: str
    product: str
    config: str
    gflop_per_window: float
    precision: str
    batch: int
    windows_per_s: float
    km2_per_s: float
    tflops: float
    share_of_peak: float | None
    peak_memory_gib: float | None
    deterministic: bool
    calls: int
    max_diff_vs_bf16: float | None = None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def device_slug(device: torch.device) -> str:
    """The device part of a record's key: 'nvidia-h200', or 'cpu'."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def benchmarked_products(only: set[str] | None) -> list[Product]:
    """The first shipped product of each registered architecture that names a paper configuration."""
    chosen: dict[str, Product] = {}
    for name in product_names():
        product = load_product(name)
        arch = product.model.architecture
        if arch in chosen or (only is not None and arch not in only):
            continue
        try:
            if get_architecture(arch).paper_config is None:
                continue
        except ValueError:  # a product whose network has not landed yet
            continue
        chosen[arch] = product
    return list(chosen.values())


def matmul_tflops(device: torch.device) -> float:
    """bf16 TFLOP/s of an 8192³ matrix product on random data: the ceiling this chip shows today."""
    n = 8192
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    end.record()
    end.synchronize()
    return 10 * 2 * n**3 / (start.elapsed_time(end) / 1e3) / 1e12


def _weights_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def time_calls(ref: ModelRef, product: Product, shapes: dict[str, tuple[int, ...]], batch: int, seconds: float,
               warm_ups: int, min_calls: int) -> tuple[float, int, bool, dict[str, np.ndarray], float | None]:
    """Windows/s of predict_heads on `ref` (median call), the calls timed, whether two calls on the same
    windows gave identical scores, the first call's scores and the peak device memory in GiB."""
    model = get_model(ref)
    activations = {head: product.model.activation(head) for head in model.heads}
    rng = np.random.default_rng(batch)  # the same windows for bf16 and fp32 at one batch size
    n = 2 * batch
    # two sets, alternated, so that no call reads windows a cache still holds from the call before
    sets = [{name: rng.standard_normal((n, *shape), dtype=np.float32) for name, shape in shapes.items()}
            for _ in range(2)]
    cuda = ref.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    first = predict_heads(ref, sets[0], batch, activations=activations)
    for i in range(1, warm_ups):
        predict_heads(ref, sets[i % 2], batch, activations=activations)
    sync = torch.cuda.synchronize if cuda else (lambda: None)  # the scores are on the host anyway: belt and braces
    times, again, started = [], first, time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - started < seconds:
        sync()
        t0 = time.perf_counter()
        scores = predict_heads(ref, sets[len(times) % 2], batch, activations=activations)
        sync()
        times.append(time.perf_counter() - t0)
        if len(times) % 2 == 1:
            again = scores
    same = all(np.array_equal(first[h].view(np.uint32), again[h].view(np.uint32)) for h in first)
    peak = None
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - base + _weights_bytes(model)) / 2**30
    return n / float(np.median(times)), len(times), same, first, peak


def bench_model(product: Product, device: str, batches: list[int] | None, seconds: float, quick: bool,
                workdir: Path) -> list[Row]:
    """The rows of one product's network: bf16 at each batch size, then fp32 at the first."""
    cost = model_cost(product)
    name = cost["architecture"]
    arch = get_architecture(name)
    config_name = "small" if quick and hasattr(arch.config_cls, "small") else "full"
    config = arch.config_cls.small() if config_name == "small" else arch.paper_config()
    shapes = {k: tuple(v) for k, v in cost["shapes"].items()}
    flop = window_flop(name, shapes, config)
    area = window_area_km2(product)
    torch.manual_seed(0)
    path = workdir / f"{name}-{config_name}.safetensors"
    sha256 = save_checkpoint(arch.build(config).eval(), config, path, meta={"note": "random weights (benchmark)"})
    dev = torch.device(device)
    peak_tflops = bf16_peak_tflops(device_name(dev)) if dev.type == "cuda" else None
    sizes = batches or [product.window.batch * m for m in (1, 4, 16)]
    print(f"\n{name} {config_name} (product {product.name}): {flop / 1e9:.1f} GFLOP a window of "
          + ", ".join(f"{k} {'×'.join(map(str, v))}" for k, v in shapes.items())
          + f"; {area:.4f} km² a window (stride {product.window.stride} px)")
    print(f"  {'':5} {'batch':>5} {'windows/s':>10} {'km²/s':>9} {'TFLOP/s':>8} {'of peak':>8} {'peak GiB':>8} "
          f"{'identical':>9}")
    rows: list[Row] = []
    bf16_scores = None
    for precision, sizes_here in (("bf16", sizes), ("fp32", sizes[:1])):
        ref = ModelRef(str(path), sha256, name, device, precision)
        for batch in sizes_here:
            last = next((r for r in reversed(rows) if r.precision == precision), None)
            if last is not None and last.peak_memory_gib is not None and dev.type == "cuda":
                weights = _weights_bytes(get_model(ref)) / 2**30
                projected = weights + (last.peak_memory_gib - weights) * batch / last.batch
                if projected > MEMORY_USE * torch.cuda.get_device_properties(dev).total_memory / 2**30:
                    print(f"  {precision:5} {batch:5d}  skipped: about {projected:.0f} GiB")
                    continue
            try:
                rate, calls, same, scores, peak = time_calls(ref, product, shapes, batch, seconds,
                                                             *((1, 1) if quick else (2, 3)))
            except RuntimeError as error:  # out of memory, or a kernel's limit: the other rows still count
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                print(f"  {precision:5} {batch:5d}  failed: {str(error).splitlines()[0][:200]}")
                break
            tflops = rate * flop / 1e12
            diff = None
            if precision == "bf16" and batch == sizes[0]:
                bf16_scores = scores
            elif precision == "fp32" and bf16_scores is not None:
                diff = max(float(np.abs(scores[h] - bf16_scores[h]).max()) for h in scores)
            row = Row(name, product.name, config_name, flop / 1e9, precision, batch, rate, rate * area, tflops,
                      None if peak_tflops is None else tflops / peak_tflops, peak, same, calls, diff)
            rows.append(row)
            print("  " + format_row(row))
    return rows


def format_row(row: Row) -> str:
    share = "" if row.share_of_peak is None else f"{100 * row.share_of_peak:.1f} %"
    memory = "" if row.peak_memory_gib is None else f"{row.peak_memory_gib:.2f}"
    tflops = f"{row.tflops:8.1f}" if row.tflops >= 10 else f"{row.tflops:8.3g}"
    text = (f"{row.precision:5} {row.batch:5d} {row.windows_per_s:10.1f} {row.km2_per_s:9.2f} {tflops} "
            f"{share:>8} {memory:>8} {'yes' if row.deterministic else 'NO':>9}")
    if row.max_diff_vs_bf16 is not None:
        text += f"  (max |fp32 − bf16| of the scores {row.max_diff_vs_bf16:.2e})"
    return text


def _figure(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.5g}")  # five significant digits, a CPU's 0.005 TFLOP/s too


def record(rows: list[Row], device: torch.device, path: Path, command: str) -> None:
    """Each architecture's fastest row into `path`, keyed ARCHITECTURE:DEVICE:CONFIG, other keys kept."""
    records = json.loads(path.read_text()) if path.exists() else {}
    name = device_name(device)
    for arch in dict.fromkeys(r.architecture for r in rows):
        best = max((r for r in rows if r.architecture == arch), key=lambda r: r.windows_per_s)
        figure = Throughput(
            key=f"{arch}:{device_slug(device)}:{best.config}", architecture=arch, device=name,
            kind="gpu" if device.type == "cuda" else "cpu", config=best.config, precision=best.precision,
            batch=best.batch, windows_per_s=_figure(best.windows_per_s), date=datetime.date.today().isoformat(),
            command=command, product=best.product, gflop_per_window=_figure(best.gflop_per_window),
            km2_per_s=_figure(best.km2_per_s), tflops=_figure(best.tflops), share_of_peak=_figure(best.share_of_peak),
            peak_memory_gib=_figure(best.peak_memory_gib),
            deterministic=best.deterministic, torch=torch.__version__)
        records = record_throughput(records, figure)
    path.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    print(f"recorded in {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA where there is one), cuda, cuda:1 or cpu")
    parser.add_argument("--quick", action="store_true", help="small configurations, tiny batches: a CPU check")
    parser.add_argument("--batches", default=None, help="batch sizes for every model (default: 1×, 4×, 16× "
                        "the product's batch; --quick: 1,2)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds a row (default 4; --quick 0.3)")
    parser.add_argument("--models", default=None, help="only these architectures, comma-separated")
    parser.add_argument("--record", action="store_true", help="write each model's fastest row to --throughput")
    parser.add_argument("--throughput", type=Path, default=SHIPPED, help="the file --record writes")
    parser.add_argument("--json", type=Path, default=None, help="write every row here as JSON")
    args = parser.parse_args(argv)
    if args.quick and args.record and args.throughput.resolve() == SHIPPED:
        parser.error("--quick figures are of the small configurations: record them with --throughput PATH")

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else ([1, 2] if args.quick else None)
    seconds = args.seconds if args.seconds is not None else (0.3 if args.quick else 4.0)
    products = benchmarked_products(set(args.models.split(",")) if args.models else None)
    name = device_name(dev)
    peak = bf16_peak_tflops(name) if dev.type == "cuda" else None
    print(f"{name}; torch {torch.__version__}; models {', '.join(p.model.architecture for p in products)}")
    ceiling = None
    if dev.type == "cuda":
        ceiling = matmul_tflops(dev)
        shown = "not in the table" if peak is None else f"{peak:.1f}, so {100 * ceiling / peak:.0f} % of it"
        print(f"bf16 8192³ matrix product: {ceiling:.0f} TFLOP/s (dense bf16 peak by the datasheet: {shown})")

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for product in products:
            rows += bench_model(product, device, batches, seconds, args.quick, Path(tmp))

    print(f"\nsummary ({name}): the fastest bf16 row of each model, and its speed over fp32's")
    for arch in dict.fromkeys(r.architecture for r in rows):
        bf16 = [r for r in rows if r.architecture == arch and r.precision == "bf16"]
        fp32 = next((r for r in rows if r.architecture == arch and r.precision == "fp32"), None)
        if not bf16:
            continue
        best = max(bf16, key=lambda r: r.windows_per_s)
        ratio = "" if fp32 is None else f"  {best.windows_per_s / fp32.windows_per_s:.2f}× fp32 (batch {fp32.batch})"
        print(f"  {arch:10} {best.config:5} " + format_row(best) + ratio)
    if args.json is not None:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "bf16_peak_tflops": peak,
                                         "matmul_tflops": ceiling, "rows": [asdict(r) for r in rows]}, indent=2))
    if args.record:
        record(rows, dev, args.throughput, "python benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None
                                                                                   else argv))


if __name__ == "__main__":
    main()
