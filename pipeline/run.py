"""A run: check everything on the client, then stream blocks through a Dask cluster.

Order of work: for each block, one prediction task per year, then its temporal vote; for each tile,
once all its blocks are voted, one export task per year. Finished steps leave markers in the run
directory, so the same command again skips them. At most `max_in_flight` tasks are submitted at once,
so the graph never holds the whole region.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

from shapely.geometry.base import BaseGeometry

from mapgen.tiles import Plan, Tile, plan_region
from mapgen.workflows import Product

from .checkpoints import resolve_checkpoint
from .context import RunContext, tile_scheme
from .export import write_vrt
from .inference import ModelRef, PreloadModel
from .post import check_product
from .sources import Inputs, check_inputs, coverage_warnings, open_inputs
from .store import RunStore, is_done
from .tasks import block_year_key, export_tile_year, predict_block_year, vote_block

RUN_DIR = "mapgen-run"


class RunError(RuntimeError):
    """A run that cannot start or did not finish: one line saying why."""


@dataclass
class RunReport:
    product: str
    years: list[int]
    tiles: int
    blocks: int
    block_years_done: int = 0
    block_years_skipped: int = 0
    blocks_voted: int = 0
    tiles_written: list[str] = field(default_factory=list)
    tiles_skipped: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    windows: int = 0
    area_km2: float = 0.0
    checkpoint_sha256: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # where each input came from ('none': switched off)
    coverage: dict[str, dict[int, float]] = field(default_factory=dict)  # share of the region with data
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.area_km2 * len(self.years) / self.seconds if self.seconds else 0.0
        lines = [
            f"{self.product}: {self.tiles} tile(s) × {len(self.years)} year(s), {self.blocks} block(s)",
            f"  block-years computed {self.block_years_done}, skipped (already done) {self.block_years_skipped}",
            f"  tiles written {len(self.tiles_written)}, skipped {self.tiles_skipped}",
            f"  {self.windows} windows, {self.seconds:.1f} s, {rate:.2f} km²·year/s",
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.failed:
            lines.append(f"  FAILED {len(self.failed)}: " + "; ".join(self.failed[:5]))
        return "\n".join(lines)


def _region_digest(region: BaseGeometry) -> str:
    return hashlib.sha256(region.wkb).hexdigest()[:16]


# What an interrupted writer leaves: hidden names ending so (markers, manifest, report, tiles, VRTs).
SCRATCH_SUFFIXES = (".tmp", ".partial", ".scratch.tif", ".partial.tif")


def sweep_scratch(out_dir: Path) -> list[Path]:
    """Remove the scratch files a killed run left in out_dir and its run folder (never a final name)."""
    run_dir = out_dir / RUN_DIR
    found = [p for p in (*out_dir.glob(".*"), *run_dir.rglob(".*"))
             if p.is_file() and p.name.endswith(SCRATCH_SUFFIXES)]
    for p in found:
        p.unlink(missing_ok=True)
    return found


def _check_manifest(run_dir: Path, manifest: dict) -> None:
    path = run_dir / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text())
        changed = [k for k in manifest if old.get(k) != manifest[k]]
        if changed:
            raise RunError(f"{run_dir}: made by another command ({', '.join(changed)} differ); "
                           "give another --out or remove it")
        sweep_scratch(run_dir.parent)  # the same run again: what its killed writers left goes
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, path)


def prepare(product: Product, region: BaseGeometry, years: list[int] | tuple[int, ...], source: str | Inputs,
            out_dir: str | Path, *, checkpoint: str | None = None, block_size: str | float | None = None,
            device: str = "cpu") -> tuple[RunContext, Plan]:
    """Everything that can refuse the run, before any work: product chain, plan, sources, checkpoint.
    `source` is a `--source` string (its own inputs only) or the `Inputs` of `open_inputs`."""
    check_product(product)
    scheme = tile_scheme(product, block_size)
    plan = plan_region(region, scheme, years)
    inputs = source if isinstance(source, Inputs) else open_inputs(product, source, plan.years)
    coverage = check_inputs(inputs, product, plan.years, region.bounds)
    ckpt_path, sha256 = resolve_checkpoint(checkpoint or product.model.checkpoint, product.model.architecture)
    out_dir = Path(out_dir).resolve()
    run_dir = out_dir / RUN_DIR
    manifest = {
        "product": product.name, "years": list(plan.years), "region": _region_digest(region),
        "block_size": str(scheme.block_size), "checkpoint_sha256": sha256,
        "source": inputs.describe(),
    }
    _check_manifest(run_dir, manifest)
    scale = scheme.scale
    extent = plan.tiles[0].extent
    for tile in plan.tiles[1:]:
        extent = extent.union(tile.extent)
    extent = extent.scaled(scale)
    store = RunStore.open(run_dir / "store.zarr", extent, plan.years, scheme.block_px * scale)
    ctx = RunContext(
        product=product, scheme=scheme, inputs=inputs,
        model=ModelRef(str(ckpt_path), sha256, product.model.architecture, device),
        years=plan.years, run_dir=str(run_dir), out_dir=str(out_dir), store_path=store.path,
        store_extent=(extent.row, extent.col, extent.height, extent.width),
        coverage=coverage, warnings=tuple(coverage_warnings(coverage, inputs)),
    )
    return ctx, plan


def _tile_tasks(client, ctx: RunContext, tile: Tile, report: RunReport, retries: int) -> list:
    """Submit what is left to do for one tile; return its futures."""
    futures = []
    votes = []
    for block in tile.blocks:
        if is_done(ctx.run_dir, "vote", block.id):
            report.block_years_skipped += len(ctx.years)
            continue
        preds = []
        for year in ctx.years:
            if is_done(ctx.run_dir, "predict", block_year_key(block, year)):
                report.block_years_skipped += 1
                continue
            preds.append(client.submit(predict_block_year, ctx, block, year, retries=retries, pure=False,
                                       key=f"predict-{block_year_key(block, year)}-{os.urandom(3).hex()}"))
        vote = client.submit(vote_block, ctx, block, *preds, retries=retries, pure=False,
                             key=f"vote-{block.id}-{os.urandom(3).hex()}")
        futures += preds + [vote]
        votes.append(vote)
    for year in ctx.years:
        if is_done(ctx.run_dir, "export", f"{tile.key}-{year}") and ctx.tile_path(tile.row, tile.col, year).exists():
            report.tiles_skipped += 1
            continue
        futures.append(client.submit(export_tile_year, ctx, tile, year, *votes, retries=retries, pure=False,
                                     key=f"export-{tile.key}-{year}-{os.urandom(3).hex()}"))
    return futures


def execute(client, ctx: RunContext, plan: Plan, *, progress: Callable[[int, int, str], None] | None = None,
            max_in_flight: int = 256, retries: int = 2) -> RunReport:
    """Run the plan on `client` (a distributed.Client); returns the report, also written as JSON."""
    from distributed import as_completed

    started = time.perf_counter()
    client.register_plugin(PreloadModel(ctx.model))
    report = RunReport(product=ctx.product.name, years=list(ctx.years), tiles=len(plan.tiles),
                       blocks=len(plan.blocks), checkpoint_sha256=ctx.model.sha256,
                       area_km2=plan.summary()["area_km2"],
                       versions={p: version(p) for p in ("mapgen", "torch", "rasterio", "dask", "zarr")},
                       inputs=ctx.inputs.describe(), coverage=ctx.coverage or {}, warnings=list(ctx.warnings))
    pending = deque(plan.tiles)
    running = as_completed()
    in_flight = 0
    done = 0
    total = 0
    while pending or in_flight:
        while pending and in_flight < max_in_flight:
            futures = _tile_tasks(client, ctx, pending.popleft(), report, retries)
            for future in futures:
                running.add(future)
            in_flight += len(futures)
            total += len(futures)
        if not in_flight:
            continue
        future = next(running)
        in_flight -= 1
        done += 1
        kind = future.key.split("-", 1)[0]
        if future.status == "error":
            report.failed.append(f"{future.key.rsplit('-', 1)[0]}: {future.exception()}")
        else:
            result = future.result()
            report.stage_seconds[kind] = report.stage_seconds.get(kind, 0.0) + result["seconds"]
            if kind == "predict":
                report.block_years_done += 1
                report.windows += result["windows"]
            elif kind == "vote":
                report.blocks_voted += 1
            elif kind == "export":
                report.tiles_written.append(result["tile"])
        future.release()
        if progress:
            progress(done, total, kind)
    if not report.failed:
        for year in ctx.years:
            tiles = [ctx.tile_path(t.row, t.col, year) for t in plan.tiles]
            others = _tiles_of_year(ctx, year)
            write_vrt(ctx.vrt_path(year), sorted(set(tiles) | set(others)), ctx.product.output)
    report.seconds = time.perf_counter() - started
    _write_report(ctx, report)
    return report


def _tiles_of_year(ctx: RunContext, year: int) -> list[Path]:
    """Every finished tile of `year` in the output folder, from this run or earlier ones."""
    found = []
    for path in Path(ctx.out_dir).glob("*.tif"):
        try:
            if ctx.scheme.tile_from_name(path.name)[2] == year:
                found.append(path)
        except ValueError:
            continue
    return found


def _write_report(ctx: RunContext, report: RunReport) -> None:
    path = Path(ctx.run_dir) / "report.json"
    tmp = path.with_name(".report.json.tmp")
    tmp.write_text(json.dumps(asdict(report), indent=2, sort_keys=True))
    os.replace(tmp, path)


def local_client(workers: int = 2, threads_per_worker: int = 1):
    """The embedded default: a client of a LocalCluster of worker processes on this machine; closing the
    client closes its cluster."""
    from distributed import Client

    return Client(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                  dashboard_address=None)
