"""How much compute a plan needs: its windows, the product's own model's FLOP, and hours at throughputs
measured by the benchmark.

`benchmarks/inference.py --record` writes measured windows/s per device kind and model size into
throughput.json beside this module; `mapgen plan` divides the plan's windows by each figure of the product's
architecture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapgen.tiles import Plan
from mapgen.workflows import Product

from .windows import WindowLattice

THROUGHPUT = Path(__file__).with_name("throughput.json")
H100_BF16_DENSE_TFLOPS = 989.4


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
    key: str  # 'cuda:full', 'cpu:small'
    architecture: str
    device: str
    kind: str  # 'gpu' or 'cpu'
    config: str  # STSR-Seg size: full or small
    precision: str
    batch: int
    windows_per_s: float
    date: str
    command: str


def load_throughputs(path: Path = THROUGHPUT) -> list[Throughput]:
    if not path.exists():
        return []
    records = json.loads(path.read_text())
    # records before there were several architectures are STSR-Seg's
    return [Throughput(key=key, **{"architecture": "stsr-seg", **{k: v for k, v in rec.items() if k != "torch"}})
            for key, rec in sorted(records.items())]


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


def estimate(plan: Plan, product: Product) -> dict:
    """Windows of the plan (forward passes: per date, or per window for a model that sees every date at
    once), the product's model cost, hours per measured throughput of its architecture, and the full
    network's ideal H100 bound."""
    lattice = WindowLattice(product.window.size, product.window.stride)
    model = model_cost(product)
    windows = plan_windows(plan, lattice)
    if model["frames"] != 1:
        windows //= max(1, len(plan.dates))
    gflop = model["gflop_per_window"]
    flop = None if gflop is None else windows * gflop * 1e9
    return {
        "windows": windows,
        "model": model,
        "full_model_flop": flop,
        "h100_bf16_peak_hours": None if flop is None else flop / (H100_BF16_DENSE_TFLOPS * 1e12) / 3600,
        "measured": [
            {"key": t.key, "device": t.device, "kind": t.kind, "config": t.config, "precision": t.precision,
             "batch": t.batch, "windows_per_s": t.windows_per_s, "date": t.date, "command": t.command,
             "hours": windows / t.windows_per_s / 3600}
            for t in load_throughputs() if t.architecture == model["architecture"]
        ],
    }
