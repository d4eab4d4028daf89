"""The post-processing kernels beside their NumPy references and a plain copy of the same bytes.

    python benchmarks/kernels.py [--threads N] [--scale 1 4] [--size 4452] [--repeat 7]

On random data of a CBRA block's sizes (output `--size`² px from input (size / scale)² px, at each `--scale`:
4 is CBRA's, 1 UGS's): a confidence in [0, 1] (float32, 0.1 % NaN) and a valid mask (2 % without data) for
`threshold`; three float32 score planes for `argmax`; class codes drawn from {0, 1, 255} (85 %, 10 %, 5 %)
and a haloed layer in [0, 1] (1 % NaN) for `mask_below` (bilinear and nearest); a stack of 6 dates of such
codes for `majority_vote` (a 3-year vote's 6 × 4452²) and two of them for `change`. Fixed seed.

Each kernel first has to equal its NumPy reference bit for bit (the references of tests/test_kernels.py,
imported from there: one copy of them) at 1 and at N threads, then is timed, best of `--repeat`, the copy and
both thread counts interleaved so that a noisy machine slows them alike (the reference: its checking run and
as many more as fit in 2 s). Per kernel, in ms and as copies-equivalent (time / the copy's):

  copy   np.copyto of B bytes between two arrays allocated and touched once, B = (bytes the kernel reads +
         bytes it writes) / 2: a copy of B bytes reads B and writes B, so it moves exactly the least memory
         the kernel has to move (each input read once, the output written once; for the vote, B is the
         stack, as issue 15 counts it). The kernel's time includes allocating its output, the copy's not:
         fresh pages, which the OS faults in and zeroes (for the vote about one copy's time).
  numba  the kernel at 1 thread and at N (`--threads`, default numba's: NUMBA_NUM_THREADS).
  numpy  the reference.

Under a minute at the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from mapgen.pipeline import kernels

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD, LAYER_THRESHOLD, CLASSES, DATES = 0.5, 0.2, 3, 6


def references():
    """tests/test_kernels.py as a module, for its NumPy references (tests/ is no package)."""
    name = "mapgen_test_kernels"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "test_kernels.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass(frozen=True)
class Case:
    """One kernel call on fixed data, its reference on the same data, and the bytes it reads and writes."""

    name: str
    kernel: Callable[[], np.ndarray]
    reference: Callable[[], np.ndarray]
    read: int
    written: int


def random_codes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Binary class codes with no data, in CBRA-like proportions (85 % background, 10 % foreground)."""
    u = rng.random(shape, dtype=np.float32)
    return np.where(u < 0.85, 0, np.where(u < 0.95, 1, 255)).astype(np.uint8)


def with_nan(values: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    values[rng.random(values.shape) < share] = np.nan
    return values


def spatial_cases(rng: np.random.Generator, size: int, scale: int) -> list[Case]:
    """The kernels whose output is upsampled by `scale` from the input, on a block of output size² px."""
    ref, h = references(), size // scale
    out = (h * scale) ** 2
    conf = with_nan(rng.random((h * scale, h * scale), dtype=np.float32), rng, 0.001)
    valid = rng.random((h, h)) > 0.02
    scores = with_nan(rng.random((CLASSES, h * scale, h * scale), dtype=np.float32), rng, 0.001)
    codes = random_codes(rng, (h * scale, h * scale))
    layer = with_nan(rng.random((h + 2, h + 2), dtype=np.float32), rng, 0.01)
    cases = [
        Case("threshold", lambda: kernels.threshold(conf, valid, THRESHOLD, scale),
             lambda: ref.threshold_reference(conf, valid, THRESHOLD, scale), conf.nbytes + valid.nbytes, out),
        Case(f"argmax K={CLASSES}", lambda: kernels.argmax(scores, valid, 0, scale),
             lambda: ref.argmax_reference(scores, valid, 0, scale), scores.nbytes + valid.nbytes, out),
    ]
    for resampling in kernels.RESAMPLINGS:
        cases.append(Case(f"mask_below {resampling}",
                          lambda r=resampling: kernels.mask_below(codes, layer, LAYER_THRESHOLD, scale, resampling=r),
                          lambda r=resampling: ref.mask_reference(codes, layer, LAYER_THRESHOLD, scale, r,
                                                                  kernels.BACKGROUND),
                          codes.nbytes + layer.nbytes, out))
    return cases


def temporal_cases(rng: np.random.Generator, size: int) -> list[Case]:
    """The kernels over dates, on output size² px."""
    ref = references()
    stack = random_codes(rng, (DATES, size, size))
    before, after = stack[0], stack[1]
    return [Case(f"majority_vote T={DATES}", lambda: kernels.majority_vote(stack), lambda: ref.vote_reference(stack),
                 stack.nbytes, stack.nbytes),
            Case("change", lambda: kernels.change(before, after), lambda: ref.change_reference(before, after),
                 before.nbytes + after.nbytes, before.nbytes)]


def seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def check(case: Case, n_threads: int) -> float:
    """Refuse a kernel that differs from its reference by one bit, at 1 thread or at n (this also compiles
    it); the seconds the reference took."""
    start = time.perf_counter()
    expected = case.reference()
    took = time.perf_counter() - start
    for n in sorted({1, n_threads}):
        kernels.set_threads(n)
        got = case.kernel()
        if got.dtype != expected.dtype or not np.array_equal(got, expected):
            raise AssertionError(f"{case.name} at {n} thread(s) differs from its NumPy reference")
    return took


def timings(case: Case, n_threads: int, repeat: int, reference: float, budget: float = 2.0) -> dict[str, float]:
    """Best seconds of the copy, the kernel at 1 and n threads (interleaved) and the reference (its first run
    took `reference` s; more runs while they fit in `budget` s)."""
    copy_bytes = (case.read + case.written) // 2
    src, dst = np.ones(copy_bytes, np.uint8), np.zeros(copy_bytes, np.uint8)
    best = {"copy": np.inf, "numba 1": np.inf, "numba n": np.inf}
    for _ in range(repeat):
        best["copy"] = min(best["copy"], seconds(lambda: np.copyto(dst, src)))
        for key, n in (("numba 1", 1), ("numba n", n_threads)):
            kernels.set_threads(n)
            best[key] = min(best[key], seconds(case.kernel))
    best["numpy"], spent = reference, reference
    for _ in range(repeat - 1):
        if spent + best["numpy"] > budget:
            break
        took = seconds(case.reference)
        best["numpy"], spent = min(best["numpy"], took), spent + took
    return best


def table_row(name: str, mb: float, best: dict[str, float]) -> str:
    copy = best["copy"]
    cells = [f"{name:<22}{mb:>8.1f}{copy * 1e3:>9.2f}"]
    cells += [f"{best[k] * 1e3:>9.2f}{best[k] / copy:>7.2f}" for k in best if k != "copy"]
    return " |".join(cells)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    parser.add_argument("--scale", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--size", type=int, default=4452, help="output px on a side")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    n = max(1, min(args.threads, numba.config.NUMBA_NUM_THREADS))

    kernels.set_threads(n)
    print(f"kernels vs NumPy and np.copyto, output {args.size}² px; {os.cpu_count()} cores, numba "
          f"{numba.__version__} ({numba.threading_layer()} layer, {numba.config.NUMBA_NUM_THREADS} threads), "
          f"numpy {np.__version__}")
    print("ms, and × copy (copy = np.copyto of B = (read + written) / 2 bytes: the same memory traffic)")
    head = f"{'kernel':<22}{'B (MB)':>8}{'copy':>9} |" + " |".join(
        f"{label:>16}" for label in ("numba 1 thread", f"numba {n} thread" + "s" * (n > 1), "numpy"))
    rng = np.random.default_rng(0)
    groups = [(f"scale {s} (input {args.size // s}² px)", spatial_cases(rng, args.size, s)) for s in args.scale]
    groups.append((f"over dates ({args.size}² px)", temporal_cases(rng, args.size)))
    for title, cases in groups:
        print(f"\n{title}\n{head}")
        for case in cases:
            reference = check(case, n)
            best = timings(case, n, args.repeat, reference)
            row = table_row(case.name, (case.read + case.written) / 2 / 1e6, best)
            print(row, flush=True)


if __name__ == "__main__":
    main()
