"""The four kinds of task a run is made of; each runs on a worker and writes its result to disk.

read_block_year:    a block + the halo of its windows, normalised, and its mask layers (no GPU)
predict_block_year: windows → model → max stitch → crop → post → store `classes` (asks for a GPU)
vote_block:         all years of a block → temporal chain → store `final`
export_tile_year:   the blocks of a tile → COG under its final name
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
from .store import RunStore, is_done, mark_done

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
    canvas = max_stitch(conf_windows, origins, read, scale)

    out_box = block.box.scaled(scale)
    rows, cols = out_box.slices_in(read.scaled(scale))
    vrows, vcols = block.box.slices_in(read)
    codes = apply_post(product.post, canvas[rows, cols], inputs.valid[vrows, vcols], inputs.layers.get, scale)
    _store(ctx).write("classes", year, out_box, codes)
    mark_done(ctx.run_dir, "predict", block_year_key(block, year))
    return {"block": block.id, "year": year, "windows": int(len(origins)),
            "seconds": time.perf_counter() - started, "read_seconds": inputs.seconds}


def vote_block(ctx: RunContext, block: Block, *_predicted: dict) -> dict:
    """Apply the temporal chain once every year of the block is stored."""
    started = time.perf_counter()
    missing = [y for y in ctx.years if not is_done(ctx.run_dir, "predict", block_year_key(block, y))]
    if missing:
        raise RuntimeError(f"block {block.id}: years {missing} are not predicted yet")
    store = _store(ctx)
    out_box = block.box.scaled(ctx.scheme.scale)
    stack = store.read("classes", out_box)
    store.write_years("final", out_box, apply_temporal(ctx.product.temporal, stack))
    mark_done(ctx.run_dir, "vote", block.id)
    return {"block": block.id, "seconds": time.perf_counter() - started}


def export_tile_year(ctx: RunContext, tile: Tile, year: int, *_voted: dict) -> dict:
    """Write one tile-year COG from the voted blocks (atomically)."""
    started = time.perf_counter()
    missing = [b.id for b in tile.blocks if not is_done(ctx.run_dir, "vote", b.id)]
    if missing:
        raise RuntimeError(f"tile {tile.key}: blocks {missing[:5]} are not voted yet")
    store, scale = _store(ctx), ctx.scheme.scale
    parts = ((b.box.scaled(scale), store.read("final", b.box.scaled(scale), year)) for b in tile.blocks)
    path = ctx.tile_path(tile.row, tile.col, year)
    tags = {
        "PRODUCT": ctx.product.name, "YEAR": str(year), "MODEL_ARCHITECTURE": ctx.model.architecture,
        "MODEL_SHA256": ctx.model.sha256,
        "VALUES": ", ".join(f"{c.value}={c.name}" for c in ctx.product.output.classes),
        "NODATA": f"{ctx.product.output.nodata} = no input data",
    }
    write_tile(path, ctx.scheme.output_grid, tile.extent.scaled(scale), parts, ctx.product.output, tags)
    mark_done(ctx.run_dir, "export", f"{tile.key}-{year}", path.name)
    return {"tile": path.name, "seconds": time.perf_counter() - started}
