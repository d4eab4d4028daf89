"""The kinds of task a run is made of; each runs on a worker and writes its result to disk.

read_block_year:    a block + the halo of its windows, normalised, and its mask layers (no GPU)
predict_block_year: windows → model → max stitch → crop → post → store `classes` (asks for a GPU)
vote_block:         all years of a block → temporal chain → store `final`
export_tile_year:   the blocks of a tile → COG under its final name

Each leaves a marker with the sha256 of what it wrote; a task that reads what another wrote checks it
against that marker first. On a resume, check_block and check_tile verify what the run would skip and
drop the markers that do not match, so that step is done again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mapgen.tiles import Block, Box, Tile

from .context import RunContext
from .export import write_tile
from .inference import predict_windows
from .post import apply_post, apply_temporal
from .sources import open_box
from .stitch import max_stitch
from .store import RunStore, digest, file_digest, mark_done, read_marker, tile_matches, unmark

# Chunk side of a block's read: a 0.1° block + halo (~1,250 px) is one chunk, so one source request (a file
# read, a STAC search + load, an Earth Engine call, which splits itself under its request limits).
CHUNK = 2048


def _store(ctx: RunContext) -> RunStore:
    return RunStore(ctx.store_path, Box(*ctx.store_extent), ctx.years, ctx.scheme.block_px * ctx.scheme.scale)


def _load(array) -> np.ndarray:
    # in this task's own thread: the task is already the unit of parallelism on the cluster
    return array.compute(scheduler="synchronous").values


def block_year_key(block: Block, year: int) -> str:
    return f"{block.id}-{year}"


@dataclass(frozen=True)
class BlockInputs:
    """What `read_block_year` hands to `predict_block_year`: the normalised image over the block and the
    halo its windows need (zero where there is no data), where there is data, and each mask layer with a
    one-pixel halo (None: switched off)."""

    read: Box
    image: np.ndarray  # (C, H, W) float32 on `read`
    valid: np.ndarray  # (H, W) bool on `read`
    layers: dict[str, np.ndarray | None]
    seconds: float


def read_block_year(ctx: RunContext, block: Block, year: int) -> BlockInputs:
    """Read one block-year's inputs (no GPU: runs beside the model, so the next block is ready in time)."""
    started = time.perf_counter()
    product = ctx.product
    image = product.image_input
    read, _ = ctx.lattice.covering(block.box)
    pixels = _load(open_box(ctx.inputs.source(image.name), image, year, block.grid, read, chunks=CHUNK))
    valid = np.isfinite(pixels).all(axis=0)
    mean = np.asarray(image.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(image.std, dtype=np.float32)[:, None, None]
    x = np.where(valid, (pixels - mean) / std, 0.0).astype(np.float32)  # zero padding where no data
    layers: dict[str, np.ndarray | None] = {}
    for step in product.post:
        if step.kernel == "mask":
            name = step["layer"]
            if name in ctx.inputs.absent:
                layers[name] = None  # switched off by the user: the step is skipped
            else:
                layers[name] = _load(open_box(ctx.inputs.source(name), product.input(name), year, block.grid,
                                              block.box.grown(1), chunks=CHUNK))[0]
    return BlockInputs(read, x, valid, layers, time.perf_counter() - started)


def predict_block_year(ctx: RunContext, block: Block, year: int, inputs: BlockInputs) -> dict:
    """Run the model over one block-year's windows, stitch, post-process and store its class codes."""
    started = time.perf_counter()
    product, scale, lattice = ctx.product, ctx.scheme.scale, ctx.lattice
    read, origins = lattice.covering(block.box)
    # Windows without a single pixel of data would only predict pixels that are no data anyway.
    local = origins - np.array([read.row, read.col])
    n = lattice.size
    useful = np.array([inputs.valid[r:r + n, c:c + n].any() for r, c in local], dtype=bool)
    origins = origins[useful]
    conf_windows = predict_windows(ctx.model, lattice.extract(inputs.image, read, origins), ctx.batch)
    canvas = max_stitch(conf_windows, origins, read, scale, product.stitch.border)

    out_box = block.box.scaled(scale)
    rows, cols = out_box.slices_in(read.scaled(scale))
    vrows, vcols = block.box.slices_in(read)
    codes = apply_post(product.post, canvas[rows, cols], inputs.valid[vrows, vcols], inputs.layers.get, scale)
    _store(ctx).write("classes", year, out_box, codes)
    mark_done(ctx.run_dir, "predict", block_year_key(block, year), {"sha256": digest(codes)})
    return {"block": block.id, "year": year, "windows": int(len(origins)),
            "seconds": time.perf_counter() - started, "read_seconds": inputs.seconds}


class StoreMismatch(RuntimeError):
    """What a task was about to read is not what its marker vouched for (the store changed under the run)."""


def vote_block(ctx: RunContext, block: Block, *_predicted: dict) -> dict:
    """Apply the temporal chain once every year of the block is stored (and matches its marker)."""
    started = time.perf_counter()
    records = {y: read_marker(ctx.run_dir, "predict", block_year_key(block, y)) for y in ctx.years}
    missing = [y for y, record in records.items() if record is None]
    if missing:
        raise RuntimeError(f"block {block.id}: years {missing} are not predicted yet")
    store = _store(ctx)
    out_box = block.box.scaled(ctx.scheme.scale)
    stack = store.read("classes", out_box)
    for i, year in enumerate(ctx.years):
        if digest(stack[i]) != records[year]["sha256"]:
            unmark(ctx.run_dir, "predict", block_year_key(block, year))  # the same command redoes it
            raise StoreMismatch(f"block {block.id} {year}: the stored classes do not match their marker")
    final = apply_temporal(ctx.product.temporal, stack)
    store.write_years("final", out_box, final)
    mark_done(ctx.run_dir, "vote", block.id, {"sha256": {str(y): digest(final[i]) for i, y in enumerate(ctx.years)}})
    return {"block": block.id, "seconds": time.perf_counter() - started}


def _final_parts(ctx: RunContext, tile: Tile, year: int):
    """(box, class codes) of each block of the tile, checked against its vote marker as it is read."""
    store, scale = _store(ctx), ctx.scheme.scale
    for block in tile.blocks:
        record = read_marker(ctx.run_dir, "vote", block.id)
        if record is None:
            raise RuntimeError(f"tile {tile.key}: block {block.id} is not voted yet")
        box = block.box.scaled(scale)
        codes = store.read("final", box, year)
        if digest(codes) != record["sha256"][str(year)]:
            unmark(ctx.run_dir, "vote", block.id)
            raise StoreMismatch(f"block {block.id} {year}: the stored map does not match its marker")
        yield box, codes


def export_tile_year(ctx: RunContext, tile: Tile, year: int, *_voted: dict) -> dict:
    """Write one tile-year COG from the voted blocks (atomically), and a marker with its size and sha256."""
    started = time.perf_counter()
    path = ctx.tile_path(tile.row, tile.col, year)
    tags = {
        "PRODUCT": ctx.product.name, "YEAR": str(year), "MODEL_ARCHITECTURE": ctx.model.architecture,
        "MODEL_SHA256": ctx.model.sha256,
        "VALUES": ", ".join(f"{c.value}={c.name}" for c in ctx.product.output.classes),
        "NODATA": f"{ctx.product.output.nodata} = no input data",
    }
    write_tile(path, ctx.scheme.output_grid, tile.extent.scaled(ctx.scheme.scale), _final_parts(ctx, tile, year),
               ctx.product.output, tags, scratch_dir=ctx.scratch_dir)
    size, sha256 = file_digest(path)
    mark_done(ctx.run_dir, "export", f"{tile.key}-{year}", {"file": path.name, "size": size, "sha256": sha256})
    return {"tile": path.name, "seconds": time.perf_counter() - started}


def check_block(ctx: RunContext, block: Block) -> dict:
    """Verify a block's markers against the store before a resume skips its steps. A vote marker whose map
    does not match is dropped (and so are the year markers whose classes do not match), so the run redoes
    just those steps. Returns what failed verification, for the report."""
    store, box = _store(ctx), block.box.scaled(ctx.scheme.scale)
    failed: list[str] = []
    vote = read_marker(ctx.run_dir, "vote", block.id)
    if vote is not None:
        bad = [y for y in ctx.years if not store.matches("final", box, y, vote["sha256"].get(str(y), ""))]
        if not bad:
            return {"block": block.id, "voted": True, "predicted": [], "failed": []}
        unmark(ctx.run_dir, "vote", block.id)
        failed += [f"block {block.id} {y} (map)" for y in bad]
    predicted = []
    for year in ctx.years:
        key = block_year_key(block, year)
        record = read_marker(ctx.run_dir, "predict", key)
        if record is None:
            continue
        if store.matches("classes", box, year, record["sha256"]):
            predicted.append(year)
        else:
            unmark(ctx.run_dir, "predict", key)
            failed.append(f"block {block.id} {year} (classes)")
    return {"block": block.id, "voted": False, "predicted": predicted, "failed": failed}


def check_tile(ctx: RunContext, tile: Tile) -> dict:
    """Verify the tiles of `tile` that export markers name (size, then sha256); drop the markers of those
    that do not match. Returns the years whose tile is as written, and what failed."""
    good, failed = [], []
    for year in ctx.years:
        key = f"{tile.key}-{year}"
        record = read_marker(ctx.run_dir, "export", key)
        if record is None:
            continue
        path = ctx.tile_path(tile.row, tile.col, year)
        if tile_matches(path, record):
            good.append(year)
        else:
            unmark(ctx.run_dir, "export", key)
            failed.append(path.name)
    return {"tile": tile.key, "good": good, "failed": failed}
