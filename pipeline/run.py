"""A run: check everything on the client, then stream blocks through a Dask cluster.

Order of work: for each block, a read and a predict task per year, then its temporal vote; for each
tile, once all its blocks are voted, one export task per year. Finished steps leave markers in the run
directory, so the same command again skips them. Blocks are drawn from the plan only while fewer than
`max_in_flight` tasks are live, so neither the graph nor the client's memory grows with the region.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

from shapely.geometry.base import BaseGeometry

from mapgen.files import atomic
from mapgen.tiles import Block, Plan, Tile, plan_region
from mapgen.workflows import Product, ProductError
from mapgen.workflows.dates import check_date

from . import lock, runfolder
from .catalog import check_href, write_catalog
from .checkpoints import find_checkpoint, resolve_checkpoint
from .cluster import describe_cluster, resolve_device, setting
from .context import RunContext, output_labels, tile_scheme
from .disk import DiskFull, ensure_space
from .export import tile_space_needed, write_vrt
from .identity import changes, run_identity
from .inference import ModelRef, PreloadModel
from .post import check_product
from .report_html import write_report_html
from .runfolder import CONTENTS, MANIFEST, REPORT, REPORT_HTML, RUN_DIR, SCRATCH, STORE  # noqa: F401 (RUN_DIR: public)
from .sources import Inputs, check_inputs, coverage_warnings, open_inputs
from .store import RunStore, is_done, marker
from .stream import TaskStream
from .styles import write_styles
from .tasks import (
    block_key,
    check_block,
    check_tile,
    export_key,
    export_tile,
    process_block,
)
from .windows import WindowLattice


class RunError(RuntimeError):
    """A run that cannot start or did not finish: one line saying why."""


@dataclass
class RunReport:
    product: str
    years: list[int | str]  # the run's dates: years, or ISO dates ('2018-08')
    tiles: int
    blocks: int
    status: str = "running"  # finished | failed (some blocks or tiles) | interrupted
    block_years_done: int = 0
    block_years_skipped: int = 0
    blocks_voted: int = 0
    blocks_skipped: int = 0
    blocks_failed: list[str] = field(default_factory=list)  # block ids
    tiles_written: list[str] = field(default_factory=list)
    tiles_skipped: int = 0
    tiles_failed: list[str] = field(default_factory=list)  # tile names not written
    failed: list[str] = field(default_factory=list)  # 'predict r12c34-2019: OSError: …', one per failed block
    verified: dict[str, int] = field(default_factory=dict)  # finished steps checked before being skipped
    recomputed: list[str] = field(default_factory=list)  # what failed verification and was done again
    retried: dict[str, int] = field(default_factory=dict)  # tasks started more than once, per kind
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)  # summed over tasks (worker time)
    throughput: dict[str, float] = field(default_factory=dict)
    windows: int = 0
    area_km2: float = 0.0
    peak_in_flight: int = 0
    cluster: dict[str, object] = field(default_factory=dict)
    worker_threads: dict[str, dict[str, int]] = field(default_factory=dict)  # worker → threads its model, kernels used
    device: str = "cpu"
    precision: str = "fp32"
    batch: int = 0
    checkpoint: str = ""  # the file run (a region's adapted one, the product's, or --checkpoint)
    checkpoint_sha256: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # where each input came from ('none': switched off)
    coverage: dict[str, dict[int, float]] = field(default_factory=dict)  # share of the region with data
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        tp = self.throughput
        lines = [
            f"{self.product}: {self.status}; {self.tiles} tile(s) × {len(self.years)} "
            f"{'year' if all(isinstance(y, int) for y in self.years) else 'date'}(s), {self.blocks} block(s)",
            f"  block-years computed {self.block_years_done}, skipped (already done) {self.block_years_skipped}; "
            f"blocks voted {self.blocks_voted}, skipped {self.blocks_skipped}, failed {len(self.blocks_failed)}",
            f"  tiles written {len(self.tiles_written)}, skipped {self.tiles_skipped}, failed {len(self.tiles_failed)}",
            f"  {self.windows} windows in {self.seconds:.1f} s: {tp.get('windows_per_s', 0):.1f} windows/s, "
            f"{tp.get('km2_years_per_s', 0):.2f} km²·year/s ({self.device}, {self.precision}, batch {self.batch})",
        ]
        if self.stage_seconds:
            lines.append("  worker time: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(self.stage_seconds.items())))
        if self.worker_threads:
            used = sorted({(t["torch"], t["numba"]) for t in self.worker_threads.values()})
            lines.append(f"  threads per worker ({len(self.worker_threads)} worker(s)): "
                         + ", ".join(f"model {m}, kernels {k}" for m, k in used))
        if self.verified or self.recomputed:
            lines.append("  verified before skipping: "
                         + (", ".join(f"{k} {v}" for k, v in sorted(self.verified.items())) or "nothing"))
        if self.recomputed:
            lines.append(f"  redone, as they did not match their markers: {len(self.recomputed)}: "
                         + ", ".join(self.recomputed[:5]) + (" …" if len(self.recomputed) > 5 else ""))
        if any(self.retried.values()):
            lines.append("  retried (error or lost worker): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(self.retried.items())))
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.failed:
            lines.append(f"  FAILED {len(self.failed)}: " + "; ".join(self.failed[:5])
                         + (" …" if len(self.failed) > 5 else ""))
        return "\n".join(lines)


# What an interrupted writer leaves: hidden names ending so (markers, manifest, report, VRTs), and
# everything in the run's scratch folder (tiles being written and their translator's temporaries).
SCRATCH_SUFFIXES = (".tmp", ".partial", ".scratch.tif", ".partial.tif")


def sweep_scratch(out_dir: Path) -> list[Path]:
    """Remove the scratch files a killed run left in out_dir and its run folder (never a final name)."""
    run_dir = runfolder.run_dir(out_dir)
    found = [p for p in (*out_dir.glob(".*"), *run_dir.rglob(".*"))
             if p.is_file() and p.name.endswith(SCRATCH_SUFFIXES)]
    scratch = run_dir / SCRATCH
    if scratch.is_dir():
        found += [p for p in scratch.rglob("*") if p.is_file() and p not in found]
    for p in found:
        p.unlink(missing_ok=True)
    return found


def open_run_dir(run_dir: Path, identity: dict, *, restart: bool = False, space_needed: int = 0) -> None:
    """Make (or take up again) the run folder of a run with `identity`: check it can be written and has room
    for a tile's temporaries, take its lock, refuse a folder made by a run of another identity (unless
    `restart`, which empties it), and sweep what killed writers left. Refuses in one line (RunError)."""
    out_dir = run_dir.parent
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"--out {out_dir}: is a file, not a folder")
    try:
        ensure_space(run_dir, space_needed, f"the temporaries of the run's largest tile in {out_dir}")
    except DiskFull as exc:
        raise RunError(exc.strerror) from None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".probe.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunError(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None
    try:
        lock.acquire(run_dir)
    except lock.LockedError as exc:
        raise RunError(str(exc)) from None
    try:
        path = run_dir / MANIFEST
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError:
                old = {"manifest": "unreadable"}
            changed = changes(old, identity)
            if changed and not restart:
                more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
                raise RunError(f"{out_dir}: holds a run of other inputs or settings ({'; '.join(changed[:3])}{more}); "
                               "give another --out, or --force-restart to start this one over there")
            if restart:  # knowingly: nothing of the old run is kept but its tiles, which are remade
                for name in CONTENTS:
                    target = run_dir / name
                    shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        sweep_scratch(out_dir)  # the same run again: what its killed writers left goes
        if not path.exists():
            try:
                atomic.write_text(path, json.dumps(identity, indent=2, sort_keys=True))
            except OSError as exc:
                raise RunError(f"--out {out_dir}: cannot write the run's manifest ({exc.strerror or exc})") from None
    except BaseException:
        lock.release(run_dir)
        raise


def run_dates(dates: Sequence[int | str]) -> tuple[str, ...]:
    """A run's dates as the engine keeps them: ISO strings of one precision, sorted (years stay '2019')."""
    out = tuple(sorted({check_date(str(d)) for d in dates}))
    if not out:
        raise RunError("no dates to run: give --years or --dates")
    if len({len(d) for d in out}) > 1:
        raise RunError(f"dates {', '.join(out)}: give every date to the same precision")
    return out


def check_model_contract(product: Product, dates: tuple[str, ...]) -> tuple[type, tuple[str, ...]]:
    """The product's architecture (its network class) checked against what the product asks of it: input
    names, heads, dates seen together; refuses in one line (ProductError) before any work."""
    from mapgen.models import get_architecture

    where = product.source_file
    try:
        network = get_architecture(product.model.architecture).model_cls
    except ValueError as exc:
        raise ProductError(f"{where}: [model] {exc}") from None
    heads = tuple(getattr(network, "heads", {}))
    images = [spec.name for spec in product.image_inputs]
    model_inputs = tuple(getattr(network, "inputs", ()))
    if len(model_inputs) > 1 and sorted(model_inputs) != sorted(images):
        raise ProductError(f"{where}: {product.model.architecture} takes inputs {', '.join(model_inputs)}; the "
                           f"product's image inputs are {', '.join(images)}")
    if len(model_inputs) == 1 and len(images) > 1:
        raise ProductError(f"{where}: {product.model.architecture} takes one image input; the product has "
                           f"{len(images)} ({', '.join(images)})")
    for name in (product.model.heads or {}):
        if name not in heads:
            raise ProductError(f"{where}: [model.heads] {name}: {product.model.architecture} has no such head "
                               f"(heads: {', '.join(heads)})")
    if not product.model.heads and len(heads) != 1:
        raise ProductError(f"{where}: {product.model.architecture} has heads {', '.join(heads)}; name each one's "
                           "activation in [model.heads]")
    frames = getattr(network, "frames", 1)
    for output in product.outputs:
        if output.per == "pair" and frames == 1 and not output.of:
            raise ProductError(f"{where}: output {output.name or product.name!r} is per pair of dates, but "
                               f"{product.model.architecture} sees one date at a time")
        if output.per == "pair" and len(dates) < 2:
            raise ProductError(f"{where}: output {output.name or product.name!r} is per pair of dates; give at "
                               "least two dates")
    several = [s.name for s in product.image_inputs if s.series or (s.dates and len(s.dates) > 1)]
    if frames == 1 and several:
        raise ProductError(f"{where}: input(s) {', '.join(several)} give several dates at once, but "
                           f"{product.model.architecture} sees one date at a time")
    return network, model_inputs


def task_windows(product: Product, scheme, network: type, dates: tuple[str, ...]) -> int:
    """The most windows one block's task sends through the network: a block's windows, for each of its dates
    when a one-frame network that does not read the dates shares batches across them (`BatchStream`)."""
    side = WindowLattice(product.window.size, product.window.stride).most_covering(scheme.block_px)
    shared = getattr(network, "frames", 1) == 1 and not getattr(network, "reads_dates", True)
    return side * side * (len(dates) if shared else 1)


def region_checkpoint(product: Product, checkpoint: str | None, region_name: str) -> tuple[str, str | None]:
    """(the checkpoint to run, a warning or None): --checkpoint; else the region's adapted one when the product
    names one ([model] adapted, {region} the region's name) and it exists; else the product's, with a warning
    when an adapted one was looked for (its {region}, if any, names one checkpoint per region, which must
    then exist)."""
    if checkpoint:
        return checkpoint, None
    model = product.model
    if model.adapted and region_name:
        adapted = model.adapted.format(region=region_name)
        if find_checkpoint(adapted) is not None:
            return adapted, None
        fallback = model.checkpoint.format(region=region_name)
        return fallback, (f"checkpoint: no checkpoint adapted to {region_name} ({adapted}); using {fallback}, "
                          f"which may be less accurate on this region's imagery: make one with mapgen adapt")
    template = model.checkpoint
    if "{region}" in template:
        if not region_name:
            raise RunError(f"{product.source_file}: [model] checkpoint = {template!r} is chosen by the region's "
                           "name: give --region-name (or a region file named after it), or --checkpoint")
        return template.format(region=region_name), None
    return template, None


def prepare(product: Product, region: BaseGeometry, years: Sequence[int | str], source: str | Inputs,
            out_dir: str | Path, *, checkpoint: str | None = None, block_size: str | float | None = None,
            device: str = "cpu", cluster: str | None = None, precision: str | None = None,
            batch: int | None = None, restart: bool = False, region_name: str = "") -> tuple[RunContext, Plan]:
    """Everything that can refuse the run, before any work: product chain and model contract, plan, sources,
    checkpoint, then the output folder (writable, room for a tile, not held by another run, not made by a
    run of another identity unless `restart`). Leaves the folder's lock held by this process until `execute`
    ends. `years` are the run's dates (years, or ISO dates such as '2018-08'). `source` is a `--source`
    string (its own inputs only) or the `Inputs` of `open_inputs`. `device` 'auto' is cuda when the cluster
    the run goes to (`cluster`: a kind or scheduler address; None: the `mapgen.cluster` setting) has GPUs.
    `precision` defaults to bf16 on CUDA and fp32 elsewhere; `batch` (windows per forward pass) to the
    `mapgen.gpu-batch` setting on CUDA (at most what a block's task runs) and the product's elsewhere.
    `region_name` is what a product's `{region}` stands for (its checkpoint per region, its mosaics' names)."""
    check_product(product)
    dates = run_dates(years)
    network, model_inputs = check_model_contract(product, dates)
    scheme = tile_scheme(product, block_size)
    plan = plan_region(region, scheme, dates)
    inputs = source if isinstance(source, Inputs) else open_inputs(product, source, dates)
    coverage = check_inputs(inputs, product, dates, region)
    chosen, checkpoint_note = region_checkpoint(product, checkpoint, region_name)
    ckpt_path, sha256 = resolve_checkpoint(chosen, product.model.architecture)
    device = resolve_device(device, cluster or setting("cluster"))
    if precision is None:
        precision = "bf16" if device.startswith("cuda") else "fp32"
    if batch is None and device.startswith("cuda"):
        # never more than a block's task runs, else most of a batch is padding (UGS: 36 windows a block)
        batch = min(int(setting("gpu-batch")), task_windows(product, scheme, network, dates))
    elif batch is None:
        batch = product.window.batch
    if batch < 1:
        raise RunError(f"batch {batch}: give at least one window per forward pass")
    model = ModelRef(str(ckpt_path), sha256, product.model.architecture, device, precision)
    out_dir = Path(out_dir).resolve()
    run_dir = runfolder.run_dir(out_dir)
    identity = run_identity(product, region, dates, str(scheme.block_size), sha256, inputs, region_name)
    largest = max(tile_space_needed(t.extent.scaled(scheme.scale)) for t in plan.tiles)
    open_run_dir(run_dir, identity, restart=restart, space_needed=largest)
    scale = scheme.scale
    extent = plan.extent().scaled(scale)
    labels = {o.name: output_labels(o, dates) for o in product.outputs}
    store = RunStore.open(run_dir / STORE, extent, labels, scheme.block_px * scale)
    ctx = RunContext(
        product=product, scheme=scheme, inputs=inputs,
        model=model, batch=batch, dates=dates, run_dir=str(run_dir), out_dir=str(out_dir), store_path=store.path,
        store_extent=(extent.row, extent.col, extent.height, extent.width),
        frames=getattr(network, "frames", 1), model_inputs=model_inputs,
        model_heads=tuple(getattr(network, "heads", {})), region_name=region_name,
        coverage=coverage,
        warnings=tuple(coverage_warnings(coverage, inputs)) + ((checkpoint_note,) if checkpoint_note else ()),
    )
    return ctx, plan


@dataclass(frozen=True)
class RunTasks:
    """The functions a run's tasks call (the tests swap them for cheap ones to stream a national plan)."""

    block: Callable = process_block
    export: Callable = export_tile
    check_block: Callable = check_block
    check_tile: Callable = check_tile


class _Progress:
    """Which blocks of which tiles are still open, for the tiles being worked on only."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}  # tile key → blocks not yet voted
        self.tiles: dict[str, Tile] = {}
        self.broken: dict[str, str] = {}  # tile key → first failed block id
        self.block_tile: dict[str, str] = {}  # block id → tile key, for the blocks in flight
        self.block_years: dict[str, int] = {}  # block id → its block-years its task is to do
        self.exports: dict[str, str] = {}  # export ident → tile file name, for the exports in flight
        self.checking: dict[str, Block | Tile] = {}  # block id / tile key → what is being verified


def execute(client, ctx: RunContext, plan: Plan, *, progress: Callable[[int, int, str], None] | None = None,
            max_in_flight: int = 256, retries: int = 2, gpu: bool | None = None, gpu_blocks: int = 2,
            tasks: RunTasks = RunTasks(), stac_href: str | None = None) -> RunReport:
    """Run the plan on `client` (a distributed.Client); returns the report, also written as JSON.

    Blocks are drawn from the plan tile by tile as the cluster takes them: one task per block reads and
    predicts each year still to do and votes; a tile's export tasks go once all its blocks are voted. At
    most `max_in_flight` tasks are live. Block tasks ask for 1/`gpu_blocks` of a `GPU` resource when `gpu`
    (default: when the model runs on CUDA), so that a GPU works on that many blocks at once, one reading
    while another runs the model. A task that keeps failing is reported with its block and error; the rest
    goes on. Interrupted (Ctrl-C), the live tasks are cancelled and the report says so. A finished run writes
    the VRTs, a QGIS style beside each tile and VRT, and the STAC catalog (absolute hrefs under `stac_href`).
    """
    started = time.perf_counter()
    gpu = ctx.model.device.startswith("cuda") if gpu is None else gpu
    if gpu_blocks < 1:
        raise ValueError(f"gpu_blocks must be at least 1, not {gpu_blocks}")
    if stac_href is not None:
        check_href(stac_href)  # before any work, not at its end
    model_resources = {"GPU": 1 / gpu_blocks} if gpu else None
    client.register_plugin(PreloadModel(ctx.model))
    report = RunReport(product=ctx.product.name, years=list(ctx.years) if ctx.annual else list(ctx.dates),
                       tiles=len(plan.tiles),
                       blocks=plan.block_count, checkpoint=ctx.model.path, checkpoint_sha256=ctx.model.sha256,
                       area_km2=round(plan.area_km2(), 3), device=ctx.model.device,
                       precision=ctx.model.precision, batch=ctx.batch, cluster=describe_cluster(client, gpu),
                       versions={p: version(p) for p in ("mapgen", "torch", "rasterio", "dask", "distributed",
                                                         "zarr")},
                       inputs=ctx.inputs.describe(), coverage=ctx.coverage or {}, warnings=list(ctx.warnings))
    stream = TaskStream(client, max_in_flight=max_in_flight, retries=retries)
    state = _Progress()
    groups = ctx.groups
    maps = [(output, label) for output in ctx.outputs for label in ctx.labels(output)]  # one tile file each
    dates_per_group = len(ctx.dates) // len(groups)
    total = plan.block_count + len(plan.tiles) * len(maps)
    done = 0

    def tick(kind: str, n: int = 1) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total, kind)

    def count_verified(kind: str, n: int) -> None:
        if n:
            report.verified[kind] = report.verified.get(kind, 0) + n

    def tile_names(tile: Tile) -> list[str]:
        return [ctx.tile_path(tile.row, tile.col, label, output).name for output, label in maps]

    def submit_exports(tile: Tile, good: tuple[str, ...] | None = None) -> None:
        """Export the tile's maps; `good`: the export keys verified as written (None: verify what markers
        claim)."""
        keys = [export_key(tile, output, label) for output, label in maps]
        if good is None and any(marker(ctx.run_dir, "export", key).exists() for key in keys):
            state.checking[tile.key] = tile  # a resume: check the tiles before skipping them
            stream.submit("verify", tile.key, tasks.check_tile, ctx, tile)
            return
        for key, (output, label) in zip(keys, maps, strict=True):
            path = ctx.tile_path(tile.row, tile.col, label, output)
            if good and key in good:
                report.tiles_skipped += 1
                tick("skipped")
            else:
                state.exports[key] = path.name
                stream.submit("export", key, tasks.export, ctx, tile, output, label)

    def block_work(tile: Tile, block: Block) -> None:
        if marker(ctx.run_dir, "vote", block.id).exists() or any(
                marker(ctx.run_dir, "predict", block_key(block, g)).exists() for g in groups):
            # a resume: check what the markers vouch for before skipping it
            state.block_tile[block.id] = tile.key
            state.checking[block.id] = block
            stream.submit("check", block.id, tasks.check_block, ctx, block)
            return
        submit_block(tile, block)

    def submit_block(tile: Tile, block: Block) -> None:
        if is_done(ctx.run_dir, "vote", block.id):
            report.block_years_skipped += len(ctx.dates)
            report.blocks_skipped += 1
            tick("skipped")
            close_block(tile.key)
            return
        skipped = sum(len(g) for g in groups if is_done(ctx.run_dir, "predict", block_key(block, g)))
        report.block_years_skipped += skipped
        state.block_tile[block.id] = tile.key
        state.block_years[block.id] = len(ctx.dates) - skipped
        stream.submit("block", block.id, tasks.block, ctx, block, resources=model_resources)

    def close_block(tile_key: str) -> None:
        state.open[tile_key] -= 1
        if state.open[tile_key] == 0:
            tile = state.tiles.pop(tile_key)
            del state.open[tile_key]
            if tile_key in state.broken:
                names = tile_names(tile)
                report.tiles_failed += names
                report.failed.append(f"tile {tile.key} ({', '.join(names)}): not written, block "
                                     f"{state.broken.pop(tile_key)} failed")
                tick("failed", len(maps))
            else:
                submit_exports(tile)

    def work():
        for tile in plan.tiles:
            state.open[tile.key] = len(tile)
            state.tiles[tile.key] = tile
            for block in tile.blocks:
                yield lambda tile=tile, block=block: block_work(tile, block)

    try:
        for finished in stream.results(work()):
            kind, ident, result = finished.kind, finished.ident, finished.result
            tick(kind)
            if kind == "verify":
                tile = state.checking.pop(ident)
                if finished.error is not None:
                    names = tile_names(tile)
                    report.tiles_failed += names
                    report.failed.append(f"verify {tile.key}: {finished.error}")
                    tick("failed", len(maps))
                else:
                    count_verified("tiles", len(result["good"]))
                    report.recomputed += [f"tile {name}" for name in result["failed"]]
                    submit_exports(tile, tuple(result["good"]))
                continue
            if kind == "export":
                name = state.exports.pop(ident)
                if finished.error is not None:
                    report.tiles_failed.append(name)
                    report.failed.append(f"export {name}: {finished.error}")
                else:
                    report.tiles_written.append(result["tile"])
                    report.stage_seconds["export"] = report.stage_seconds.get("export", 0.0) + result["seconds"]
                continue
            block_id = ident
            tile_key = state.block_tile[block_id]
            if kind == "check":
                block = state.checking.pop(block_id)
                if finished.error is not None:
                    report.blocks_failed.append(block_id)
                    report.failed.append(f"check {ident}: {finished.error}")
                    state.broken.setdefault(tile_key, block_id)
                    del state.block_tile[block_id]
                    close_block(tile_key)
                    continue
                count_verified("blocks", int(result["voted"]))
                count_verified("block-years", len(result["predicted"]) * dates_per_group)
                report.recomputed += result["failed"]
                del state.block_tile[block_id]
                submit_block(state.tiles[tile_key], block)  # now as the verified markers say
                continue
            years = state.block_years.pop(block_id)
            del state.block_tile[block_id]
            if finished.error is not None:
                report.blocks_failed.append(block_id)
                report.failed.append(f"{kind} {ident}: {finished.error}")
                state.broken.setdefault(tile_key, block_id)
            else:
                report.block_years_done += years
                report.windows += result["windows"]
                report.blocks_voted += 1
                for stage in ("read", "model", "predict", "read_wait", "vote"):
                    report.stage_seconds[stage] = report.stage_seconds.get(stage, 0.0) + result[f"{stage}_seconds"]
                report.worker_threads[result["worker"]] = {"torch": result["torch_threads"],
                                                           "numba": result["numba_threads"]}
            close_block(tile_key)
        report.status = "failed" if report.failed else "finished"
    except BaseException:
        report.status = "interrupted"
        raise
    finally:
        report.peak_in_flight = stream.peak_in_flight
        try:
            ledger = stream.ledger() if report.status != "interrupted" else {}
        finally:
            stream.close()
        for key in ledger.get("retried", []):
            kind = key.split("-", 1)[0]
            report.retried[kind] = report.retried.get(kind, 0) + 1
        report.seconds = time.perf_counter() - started
        report.throughput = _throughput(report)
        try:
            if report.status == "finished":
                for output, label in maps:
                    write_vrt(ctx.vrt_path(label, output),
                              [ctx.tile_path(t.row, t.col, label, output) for t in plan.tiles], output,
                              scratch_dir=ctx.scratch_dir)
                    write_styles([ctx.vrt_path(label, output),
                                  *(ctx.tile_path(t.row, t.col, label, output) for t in plan.tiles)], output,
                                 scratch_dir=ctx.scratch_dir)
                write_catalog(ctx, plan.tiles, href=stac_href)
            _write_report(ctx, report, plan.tiles)
        finally:
            lock.release(ctx.run_dir)
    return report


def _throughput(report: RunReport) -> dict[str, float]:
    if not report.seconds:
        return {}
    return {
        "windows_per_s": report.windows / report.seconds,
        "block_years_per_hour": report.block_years_done * 3600 / report.seconds,
        "km2_years_per_s": report.area_km2 * len(report.years) * report.block_years_done
        / max(1, report.blocks * len(report.years)) / report.seconds,
    }


def _write_report(ctx: RunContext, report: RunReport, tiles: Sequence[Tile] = ()) -> None:
    """report.json, then report.html beside it with quick-looks of the maps of `tiles` that exist. A page that
    cannot be written never costs report.json: it becomes a warning of the report (and of its summary)."""
    path = Path(ctx.run_dir) / REPORT
    atomic.write_text(path, json.dumps(asdict(report), indent=2, sort_keys=True))
    try:
        write_report_html(ctx, report, tiles)
    except Exception as exc:  # the run's outcome stands whatever the page's; say why it is missing
        report.warnings.append(f"{REPORT_HTML}: not written ({type(exc).__name__}: {exc})")
        atomic.write_text(path, json.dumps(asdict(report), indent=2, sort_keys=True))


@contextmanager
def local_client(workers: int = 2, threads_per_worker: int | None = None) -> Iterator:
    """The embedded default as a context: a client of a LocalCluster of worker processes on this machine
    sharing its cores (see cluster.local_cluster), closed with its cluster on leaving."""
    from .cluster import close_client, make_client

    client = make_client("local", workers=workers, threads_per_worker=threads_per_worker)
    try:
        yield client
    finally:
        close_client(client)
