"""Throughput of mapgen on this machine, as ratios measured in one run on the same data.

    python benchmarks/bench.py [--product cbra|ugs] [--blocks 2] [--years 2016-2018] [--workers 2,1]
                               [--checkpoint NAME_OR_PATH]

1. Model only: the checkpoint's forward pass on exactly the windows a run over the region needs, in one
   process using all cores, full batches, no reading or writing → windows/s and km²·year/s, first with
   glibc's default allocator settings, then keeping freed memory for reuse as the workers do (UGS: one date,
   a synthetic city of N × 1 blocks of 1′15″, windows of 512 px).
2. Bare tiled inference: one block's normalised input already in memory → the window lattice → forward
   in batches (the last one not padded) → maximum where windows overlap, in one process on all cores:
   what a peer's `tiled_inference` does, without reading, post-processing or writing anything.
3. End to end: `mapgen run` on the region and years on a LocalCluster of each --workers count (read,
   windows, model, stitch, post, Zarr, vote, COG export, scheduling) → windows/s, its ratio to (1) and to
   (2), the worker time by stage, the threads each worker's model and kernels used, and each worker's
   peak memory.
4. Scheduling: trivial tasks through the run's own task stream on the same cluster → seconds per task,
   × the run's tasks per block-year, beside the full model's GPU time per block-year at half an H100's
   bf16 peak (the goal: at most 2 % of it).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely
import torch

from mapgen.models import load_checkpoint
from mapgen.pipeline import lock as run_lock
from mapgen.pipeline.checkpoints import resolve_checkpoint
from mapgen.pipeline.context import tile_scheme
from mapgen.pipeline.estimate import H100_BF16_DENSE_TFLOPS, model_cost
from mapgen.pipeline.inference import PreloadModel, keep_freed_memory, predict_windows
from mapgen.pipeline.run import execute, local_client, prepare
from mapgen.pipeline.stream import TaskStream
from mapgen.pipeline.tasks import read_block
from mapgen.pipeline.windows import WindowLattice
from mapgen.synthetic import generate_scene
from mapgen.tiles import plan_region
from mapgen.workflows import load_product
from mapgen.workflows.dates import parse_years


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _nothing() -> None:
    return None


def seconds_per_task(client, count: int = 2000) -> float:
    """Wall time per trivial task streamed through a TaskStream on `client` (submit, schedule, run, collect)."""
    stream = TaskStream(client, max_in_flight=256, ledger=False)
    work = (lambda i=i: stream.submit("nothing", str(i), _nothing) for i in range(count))
    started = time.perf_counter()
    for finished in stream.results(work):
        assert finished.error is None, finished.error
    return (time.perf_counter() - started) / count


def bare_tiled_inference(model, image: np.ndarray, lattice: WindowLattice, batch: int, scale: int,
                         activation: str) -> np.ndarray:
    """A (C, H, W) normalised image in memory → lattice windows → forward → maximum where they overlap."""
    h, w = image.shape[1:]
    n, s = lattice.size, lattice.stride
    origins = [(r, c) for r in range(0, h - n + 1, s) for c in range(0, w - n + 1, s)]
    canvas = np.full((h * scale, w * scale), -np.inf, np.float32)
    for start in range(0, len(origins), batch):
        part = origins[start:start + batch]
        x = np.stack([image[:, r:r + n, c:c + n] for r, c in part])
        conf = predict_windows(model, x, len(part), activation)
        for (r, c), p in zip(part, conf, strict=True):
            view = canvas[r * scale:(r + n) * scale, c * scale:(c + n) * scale]
            np.maximum(view, p, out=view)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--product", choices=("cbra", "ugs"), default="cbra")
    parser.add_argument("--blocks", type=int, default=2, help="region of N × 1 of the product's blocks")
    parser.add_argument("--years", default=None, help="default: 2016-2018 (cbra), 2021 (ugs)")
    parser.add_argument("--workers", default="2,1", help="LocalCluster worker counts to run end to end")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    product = load_product(args.product)
    years = parse_years(args.years or ("2016-2018" if args.product == "cbra" else "2021"))
    eps = 1e-6
    scheme = tile_scheme(product)
    block = float(scheme.block_size)
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
    plan = plan_region(region, scheme, years)
    area = plan.summary()["area_km2"]
    km2_years = area * len(years)
    cores = torch.get_num_threads()
    print(f"{args.product}: {len(plan.blocks)} block(s) of {block:.6g}°, {area:.1f} km², {len(years)} year(s); "
          f"{cores} CPU thread(s); torch {torch.__version__}")

    # 1. model only, on as many windows as the run needs, in full batches
    lattice = WindowLattice(product.window.size, product.window.stride)
    windows = sum(len(lattice.covering(b.box)[1]) for b in plan.blocks) * len(years)
    path, _ = resolve_checkpoint(args.checkpoint or product.model.checkpoint, product.model.architecture)
    model, _ = load_checkpoint(path)
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
    glibc_rate = windows / model_s
    # what a run's workers do (PreloadModel); the references below run with it too, so the ratios compare
    # the same model on the same allocator
    keep_freed_memory()
    predict_windows(model, x, batch, activation)
    start = time.perf_counter()
    for _ in range(n_batches):
        predict_windows(model, x, batch, activation)
    model_s = (time.perf_counter() - start) / (n_batches * batch) * windows
    model_rate = windows / model_s
    print(f"model only   : {glibc_rate:7.1f} windows/s with glibc's default of unmapping freed blocks; "
          "with the memory kept for reuse (as the workers do):")
    print(f"model only   : {windows} windows in {model_s:7.1f} s = {model_rate:7.1f} windows/s "
          f"= {km2_years / model_s:8.2f} km²·year/s   ({Path(path).name}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters, batch {batch})")

    # 2. bare tiled inference over one block's normalised input, in memory
    out = work / f"maps-{time.time_ns()}"
    ctx, run_plan = prepare(product, region, years, str(scene), out, checkpoint=args.checkpoint,
                            region_name="bench")
    inputs = read_block(ctx, run_plan.blocks[0], ctx.groups[0])
    image = inputs.images[product.image_input.name][0]
    start = time.perf_counter()
    bare_tiled_inference(model, image, lattice, batch, product.grid.scale, activation)
    bare_s = time.perf_counter() - start
    h, w = image.shape[1:]
    bare_windows = len(range(0, h - lattice.size + 1, lattice.stride)) * len(range(0, w - lattice.size + 1,
                                                                               lattice.stride))
    bare_rate = bare_windows / bare_s
    print(f"bare tiled   : {bare_windows} windows of one block in {bare_s:6.1f} s = {bare_rate:7.1f} windows/s "
          "(in memory → windows → forward → max; nothing read or written)")
    del model
    run_lock.release(ctx.run_dir)  # prepare() held the folder for an execute(); each run below has its own

    # 3. end to end, and 4. scheduling, on a LocalCluster per worker count
    model_gpu_s = None
    cost = model_cost(product)
    if cost["gflop_per_window"]:
        per_block_year = windows / (len(plan.blocks) * len(years))
        model_gpu_s = per_block_year * cost["gflop_per_window"] * 1e9 / (0.5 * H100_BF16_DENSE_TFLOPS * 1e12)
    for workers in (int(v) for v in args.workers.split(",")):
        out = work / f"maps-{time.time_ns()}"
        ctx, run_plan = prepare(product, region, years, str(scene), out, checkpoint=args.checkpoint,
                                region_name="bench")
        with local_client(workers) as client:
            client.wait_for_workers(workers)
            start = time.perf_counter()
            client.register_plugin(PreloadModel(ctx.model))
            warm_s = time.perf_counter() - start
            start = time.perf_counter()
            report = execute(client, ctx, run_plan)
            e2e_s = time.perf_counter() - start
            peaks = client.run(_peak_rss_mib)
            per_task = seconds_per_task(client)
            threads = client.nthreads()
        assert not report.failed, report.failed
        rate = report.windows / e2e_s
        print(f"\nend to end   : {workers} worker(s) × {sorted(set(threads.values()))} Dask thread(s); "
              f"start {warm_s:.1f} s (import, model, kernels; not counted)")
        print(f"               {report.windows} windows in {e2e_s:7.1f} s = {rate:7.1f} windows/s "
              f"= {km2_years / e2e_s:8.2f} km²·year/s")
        print(f"               ratio to model only {rate / model_rate:.2f}, to bare tiled inference "
              f"{rate / bare_rate:.2f}")
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(report.stage_seconds.items()))
        print(f"               worker time by stage (summed; read overlaps the model): {stages}")
        used = sorted({(t["torch"], t["numba"]) for t in report.worker_threads.values()})
        print("               threads per worker: " + ", ".join(f"model {m}, kernels {k}" for m, k in used))
        block_years = len(run_plan.blocks) * len(years)
        print(f"               peak memory per worker: {', '.join(f'{v:.0f} MiB' for v in peaks.values())} "
              f"(one block of {len(years)} year(s) at a time per thread)")
        # a task per block and one per tile and year: here, and in a region of whole tiles
        here = (len(run_plan.blocks) + len(run_plan.tiles) * len(years)) / block_years
        blocks_per_tile = scheme.tile_blocks[0] * scheme.tile_blocks[1]
        national = 1 / len(years) + 1 / blocks_per_tile
        for name, tasks in (("this region", here), (f"whole tiles of {blocks_per_tile} blocks", national)):
            line = (f"scheduling   : {per_task * 1e3:.2f} ms a task × {tasks:.3f} tasks a block-year ({name}) = "
                    f"{per_task * tasks * 1e3:.2f} ms a block-year")
            if model_gpu_s:
                line += (f"; {per_task * tasks / model_gpu_s:.1%} of the full {cost['architecture']}'s "
                         f"{model_gpu_s * 1e3:.0f} ms a block-year at half an H100's bf16 peak")
            print(line)


if __name__ == "__main__":
    main()
