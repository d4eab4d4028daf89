"""Throughput of mapgen on this machine, as ratios measured in one run on the same data.

    python benchmarks/bench.py [--product cbra|ugs] [--blocks 2] [--years 2016-2018] [--workers 2]
                               [--checkpoint NAME_OR_PATH]

1. Model only: the checkpoint's forward pass on exactly the windows a run over the region needs, in one
   process using all cores, no reading or writing → km²·year/s (UGS: one date, a synthetic city of
   N × 1 blocks of 1′15″, windows of 512 px).
2. End to end: `mapgen run` on the same region and years on a LocalCluster (read, windows, model, max
   stitch, post, Zarr, vote, COG export) → km²·year/s, and its ratio to (1).
3. CBRA: the 3-year majority vote (numba) on a 6-year stack of one 0.1° block at 2.5 m, beside its NumPy
   reference and a plain copy of the same array.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely
import torch

from mapgen.pipeline.checkpoints import resolve_checkpoint
from mapgen.pipeline.context import tile_scheme
from mapgen.pipeline.inference import predict_windows
from mapgen.pipeline.kernels import majority_vote
from mapgen.pipeline.run import execute, local_client, prepare
from mapgen.pipeline.windows import WindowLattice
from mapgen.synthetic import generate_scene
from mapgen.tiles import plan_region
from mapgen.workflows import load_product
from mapgen.workflows.dates import parse_years


def vote_numpy(stack: np.ndarray) -> np.ndarray:
    """The plain NumPy reference of the vote (as in tests/test_kernels.py)."""
    out = stack.copy()
    for t in range(1, len(stack) - 1):
        trio = stack[t - 1:t + 2].astype(np.int16)
        complete = (trio != 255).all(axis=0)
        out[t] = np.where(complete, (trio.sum(axis=0) >= 2).astype(np.uint8), stack[t])
    return out


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--product", choices=("cbra", "ugs"), default="cbra")
    parser.add_argument("--blocks", type=int, default=2, help="region of N × 1 of the product's blocks")
    parser.add_argument("--years", default=None, help="default: 2016-2018 (cbra), 2021 (ugs)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    product = load_product(args.product)
    years = parse_years(args.years or ("2016-2018" if args.product == "cbra" else "2021"))
    eps = 1e-6
    block = float(tile_scheme(product).block_size)
    west, south = (100.0, 30.0) if args.product == "cbra" else (113.25, 23.0 + 1 / 24)  # on the block lattice
    region = shapely.box(west + eps, south + eps, west + block * args.blocks - eps, south + block - eps)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mapgen-bench-"))
    scene = work / f"scene-{args.product}"
    if not (scene / "catalog.json").exists():
        if args.product == "cbra":
            generate_scene(region.bounds, years, scene, seed=5)
        else:
            from mapgen.synthetic.ugs import generate_ugs_scene

            generate_ugs_scene(region.bounds, str(years[0]), scene, seed=5)
    plan = plan_region(region, tile_scheme(product), years)
    area = plan.summary()["area_km2"]
    km2_years = area * len(years)
    cores = torch.get_num_threads()
    print(f"{args.product}: {len(plan.blocks)} block(s) of {block:.6g}°, {area:.1f} km², {len(years)} year(s); "
          f"{cores} CPU thread(s); torch {torch.__version__}")

    # 1. model only, on as many windows as the run needs
    lattice = WindowLattice(product.window.size, product.window.stride)
    windows = sum(len(lattice.covering(b.box)[1]) for b in plan.blocks) * len(years)
    path, _ = resolve_checkpoint(args.checkpoint or product.model.checkpoint, product.model.architecture)
    from mapgen.models import load_checkpoint

    model, info = load_checkpoint(path)
    model.eval()
    batch = product.window.batch
    x = np.random.default_rng(0).standard_normal(
        (batch, len(product.image_input.bands), product.window.size, product.window.size)).astype(np.float32)
    activation = product.model.output
    predict_windows(model, x, batch, activation)  # warm-up
    n_batches = max(3, min(20, windows // batch))
    start = time.perf_counter()
    for _ in range(n_batches):
        predict_windows(model, x, batch, activation)
    model_s = (time.perf_counter() - start) / (n_batches * batch) * windows
    model_rate = km2_years / model_s
    print(f"model only   : {windows} windows in {model_s:7.1f} s  = {windows / model_s:7.1f} windows/s "
          f"= {model_rate:8.2f} km²·year/s   ({Path(path).name}, {sum(p.numel() for p in model.parameters()):,} "
          "parameters)")

    # 2. end to end on a LocalCluster
    out = work / f"maps-{time.time_ns()}"
    ctx, run_plan = prepare(product, region, years, str(scene), out, checkpoint=args.checkpoint,
                            region_name="bench")
    from mapgen.pipeline.inference import PreloadModel

    with local_client(args.workers) as client:
        client.wait_for_workers(args.workers)
        start = time.perf_counter()
        client.register_plugin(PreloadModel(ctx.model))
        warm_s = time.perf_counter() - start
        start = time.perf_counter()
        report = execute(client, ctx, run_plan)
        e2e_s = time.perf_counter() - start
    assert not report.failed, report.failed
    print(f"worker start : {warm_s:5.1f} s to import, load the model and compile the kernels on {args.workers} "
          "workers (once per worker, not counted below)")
    e2e_rate = km2_years / e2e_s
    print(f"end to end   : {report.windows} windows in {e2e_s:7.1f} s  = {report.windows / e2e_s:7.1f} windows/s "
          f"= {e2e_rate:8.2f} km²·year/s   ({args.workers} worker processes × 1 thread)")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(report.stage_seconds.items()))
    print(f"               task time by stage (summed over workers): {stages}")
    print(f"ratio        : end to end / model only = {e2e_rate / model_rate:.2f}")

    if not product.output.temporal:
        return
    # 3. the vote
    rng = np.random.default_rng(0)
    n = tile_scheme(product).block_px * product.grid.scale
    stack = rng.choice(np.array([0, 1, 255], dtype=np.uint8), size=(6, n, n), p=[0.6, 0.35, 0.05])
    majority_vote(stack[:, :8, :8])  # compile
    assert np.array_equal(majority_vote(stack), vote_numpy(stack))
    t_numba = best_of(lambda: majority_vote(stack))
    t_numpy = best_of(lambda: vote_numpy(stack))
    t_copy = best_of(lambda: stack.copy())
    mb = stack.nbytes / 1e6
    print(f"vote ({stack.shape[0]}×{n}×{n} uint8, {mb:.0f} MB): numba {t_numba * 1e3:7.1f} ms, "
          f"NumPy reference {t_numpy * 1e3:7.1f} ms ({t_numpy / t_numba:.1f}× numba), "
          f"plain copy {t_copy * 1e3:6.1f} ms (numba = {t_numba / t_copy:.1f}× a copy)")


if __name__ == "__main__":
    main()
