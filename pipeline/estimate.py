"""How much compute a plan needs: its windows, and hours at throughputs measured by the benchmark.

`benchmarks/inference.py --record` writes measured windows/s per device kind and model size into
throughput.json beside this module; `mapgen plan` divides the plan's windows by each figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mapgen.tiles import Plan

from .windows import WindowLattice

THROUGHPUT = Path(__file__).with_name("throughput.json")
# The paper's network (STSRSegConfig.full) per 64 × 64 window, counted by torch's FlopCounter (tests).
FULL_GFLOP_PER_WINDOW = 175.4
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
    return total * len(plan.years)


@dataclass(frozen=True)
class Throughput:
    key: str  # 'cuda:full', 'cpu:small'
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
    return [Throughput(key=key, **{k: v for k, v in rec.items() if k != "torch"})
            for key, rec in sorted(records.items())]


def estimate(plan: Plan, lattice: WindowLattice) -> dict:
    """Windows of the plan, hours per measured throughput, and the full network's ideal H100 bound."""
    windows = plan_windows(plan, lattice)
    flop = windows * FULL_GFLOP_PER_WINDOW * 1e9
    return {
        "windows": windows,
        "full_model_flop": flop,
        "h100_bf16_peak_hours": flop / (H100_BF16_DENSE_TFLOPS * 1e12) / 3600,
        "measured": [
            {"key": t.key, "device": t.device, "kind": t.kind, "config": t.config, "precision": t.precision,
             "batch": t.batch, "windows_per_s": t.windows_per_s, "date": t.date, "command": t.command,
             "hours": windows / t.windows_per_s / 3600}
            for t in load_throughputs()
        ],
    }
