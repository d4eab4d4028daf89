"""How much compute a plan needs: its windows, the product's own model's FLOP, and hours at throughputs
measured by the benchmark.

`benchmarks/gpu.py --record` writes measured windows/s per architecture, device and model size into
throughput.json beside this module; `mapgen plan` divides the plan's windows by each figure of the product's
architecture, beside the ideal bound (the full network's FLOP at an H100's bf16 peak, and at half of it).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from mapgen.tiles import Plan
from mapgen.workflows import Product

from .windows import WindowLattice

THROUGHPUT = Path(__file__).with_name("throughput.json")
H100_BF16_DENSE_TFLOPS = 989.4
GOAL_SHARE_OF_PEAK = 0.5  # issue 15: the full STSR-Seg at half the bf16 peak or better
# Dense bf16 tensor-core peaks by the vendors' datasheets, TFLOP/s, matched in order against the device's name
# (the H200 SXM has the H100 SXM's arithmetic; the PCIe and NVL parts run lower clocks).
BF16_DENSE_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200 NVL", 835.0),
    ("H100", H100_BF16_DENSE_TFLOPS), ("H200", H100_BF16_DENSE_TFLOPS), ("A100", 312.0),
)
KM_PER_DEGREE = 111.32  # one degree at the equator: the products' nominal pixels (1/11130° = 10 m)


def bf16_peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named `device_name` (torch's name for it), None when not in the table."""
    for part, peak in BF16_DENSE_TFLOPS:
        if part.lower() in device_name.lower():
            return peak
    return None


def window_area_km2(product: Product) -> float:
    """The plan area one window adds: its stride squared at the grid's input resolution, in km² of the
    products' nominal pixels (a degree at the equator; E–W cells shrink with latitude)."""
    side_km = product.window.stride * float(Fraction(product.grid.input_resolution)) * KM_PER_DEGREE
    return side_km * side_km


def windows_per_axis(starts: np.ndarray, size_px: int, lattice: WindowLattice) -> np.ndarray:
    """How many lattice windows meet each span [start, start + size_px) of one axis (vectorised
    `WindowLattice.covering`)."""
    s, n = lattice.stride, lattice.size
    first = -((n - 1 - starts) // s)
    last = (starts + size_px - 1) // s
    return last - first + 1


def plan_windows(plan: Plan, lattice: WindowLattice) -> int:
    """Windows the model runs over the plan, all years (windows without any data excepted, which only a
    run can know)."""
    n = plan.scheme.block_px
    total = 0
    for tile in plan.tiles:
        rows = windows_per_axis(tile.block_rows.astype(np.int64) * n, n, lattice)
        cols = windows_per_axis(tile.block_cols.astype(np.int64) * n, n, lattice)
        total += int((rows * cols).sum())
    return total * len(plan.dates)


@dataclass(frozen=True)
class Throughput:
    """One measured figure of throughput.json: the best batch of one architecture and size on one device."""

    key: str  # 'stsr-seg:nvidia-h200:full'; older records: 'cpu:small'
    architecture: str
    device: str
    kind: str  # 'gpu' or 'cpu'
    config: str  # the network's size: full (the paper's) or small
    precision: str
    batch: int
    windows_per_s: float
    date: str
    command: str
    # what benchmarks/gpu.py adds; None in older records
    product: str | None = None
    gflop_per_window: float | None = None
    km2_per_s: float | None = None
    tflops: float | None = None
    share_of_peak: float | None = None  # of the chip's dense bf16 peak (datasheet)
    peak_memory_gib: float | None = None
    deterministic: bool | None = None  # the same windows twice gave bit-identical scores
    torch: str | None = None


_FIELDS = {f.name for f in dataclasses.fields(Throughput)}


def load_throughputs(path: Path | None = None) -> list[Throughput]:
    """The figures recorded in `path` (default: throughput.json beside this module; none when it does not
    exist), sorted by key."""
    path = THROUGHPUT if path is None else path
    if not path.exists():
        return []
    records = json.loads(path.read_text())
    # records before there were several architectures are STSR-Seg's; fields a later benchmark adds are
    # ignored rather than refused, so that an older mapgen still reads a newer file
    return [Throughput(key=key, **{"architecture": "stsr-seg", **{k: v for k, v in rec.items() if k in _FIELDS}})
            for key, rec in sorted(records.items())]


def record_throughput(records: dict[str, dict], figure: Throughput) -> dict[str, dict]:
    """`records` (throughput.json's content) with `figure` put under its key, replacing an earlier one."""
    fields = {k: v for k, v in dataclasses.asdict(figure).items() if k != "key" and v is not None}
    return {**records, figure.key: fields}


def window_shapes(product: Product, frames: int | None) -> dict[str, tuple[int, ...]]:
    """The shape of one window of each model input (no batch axis), as the engine feeds the network."""
    n = product.window.size
    dates = 2  # a model that sees all dates is priced for two (a pair: FUSU's T1, T2)
    shapes = {}
    for spec in product.image_inputs:
        side = spec.context or n
        shape: tuple[int, ...] = (len(spec.bands), side, side)
        if spec.series is not None:
            shape = (len(spec.read_dates(())), *shape)
        elif frames != 1:
            shape = (len(spec.dates) if spec.dates else dates, *shape)
        shapes[spec.name] = shape
    return shapes


def model_cost(product: Product) -> dict:
    """The product's own model per window: its architecture, its inputs' shapes and the FLOP of the paper's
    configuration ({"gflop_per_window": None, "note": why} where that is not known)."""
    from mapgen.models import get_architecture
    from mapgen.models.cost import window_flop

    name = product.model.architecture
    try:
        network = get_architecture(name).model_cls
    except ValueError:
        return {"architecture": name, "gflop_per_window": None, "frames": 1,
                "note": f"{name} is not a registered architecture yet: no cost"}
    frames = getattr(network, "frames", 1)
    shapes = window_shapes(product, frames)
    inputs = tuple(getattr(network, "inputs", ()))
    if len(inputs) == 1:  # a one-input network takes the primary image whatever its name
        shapes = {inputs[0]: shapes[product.image_input.name]}
    flop = window_flop(name, shapes)
    if flop is not None:  # a plan's figure: four significant digits (STSR-Seg: 175.4 GFLOP a window)
        flop = float(f"{flop:.4g}")
    return {"architecture": name, "frames": frames, "shapes": {k: list(v) for k, v in shapes.items()},
            "gflop_per_window": None if flop is None else flop / 1e9,
            "note": "" if flop is not None else f"{name} names no paper configuration: no cost"}


def estimate(plan: Plan, product: Product, throughputs: Path | None = None) -> dict:
    """Windows of the plan (forward passes: per date, or per window for a model that sees every date at
    once), the product's model cost, hours per measured throughput of its architecture (read from
    `throughputs`, default throughput.json), and the full network's ideal H100 bounds: at its bf16 peak and
    at the goal's share of it."""
    lattice = WindowLattice(product.window.size, product.window.stride)
    model = model_cost(product)
    windows = plan_windows(plan, lattice)
    if model["frames"] != 1:
        windows //= max(1, len(plan.dates))
    gflop = model["gflop_per_window"]
    flop = None if gflop is None else windows * gflop * 1e9
    peak_hours = None if flop is None else flop / (H100_BF16_DENSE_TFLOPS * 1e12) / 3600
    return {
        "windows": windows,
        "model": model,
        "full_model_flop": flop,
        "h100_bf16_peak_tflops": H100_BF16_DENSE_TFLOPS,
        "h100_bf16_peak_hours": peak_hours,
        "goal_share_of_peak": GOAL_SHARE_OF_PEAK,
        "h100_bf16_goal_hours": None if peak_hours is None else peak_hours / GOAL_SHARE_OF_PEAK,
        "measured": [
            {**{k: v for k, v in dataclasses.asdict(t).items() if v is not None},
             "hours": windows / t.windows_per_s / 3600}
            for t in load_throughputs(throughputs) if t.architecture == model["architecture"]
        ],
    }
