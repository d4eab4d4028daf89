"""The kinds of task a run is made of; each runs on a worker and writes its result to disk.

process_block: one task per block (asks for a share of a GPU): for each group of dates not yet predicted,
              read_block (the next group is read in a second thread while the model runs on this one),
              group_windows → the model (BatchStream) → store_group; then vote_block
  read_block:    a block + the halo of its windows for one group of dates (each date alone, or all of them
                 for a model that sees several), every input on its own lattice, and the mask layers
  group_windows: the windows that see data, per model input
  store_group:   heads → stitch per head → crop → each output's post chain → store `classes`
  vote_block:    all maps of each output of a block → temporal chain → store `final`
export_tile:  the blocks of a tile → one COG per output and map, under its final name

A task per block rather than per block-year keeps the scheduler's work per block-year small (a national
run has half a million block-years) while a block's reads still overlap its model.

Each leaves a marker with the sha256 of what it wrote; a task that reads what another wrote checks it
against that marker first. On a resume, check_block and check_tile verify what the run would skip and
drop the markers that do not match, so that step is done again.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from mapgen.models.contract import ModelMeta
from mapgen.tiles import Block, Box, Grid, Tile, as_fraction
from mapgen.workflows import InputSpec, OutputSpec
from mapgen.workflows.dates import is_year, source_date

from .classes import NODATA, lookup_table
from .context import RunContext, group_key
from .export import write_tile
from .inference import BatchStream, get_model
from .normalise import normalise
from .post import apply_post, apply_temporal, mask_layers
from .sources import open_box
from .stitch import stitch
from .store import RunStore, digest, file_digest, is_done, mark_done, read_marker, tile_matches, unmark

# Chunk side of a block's read: a 0.1° block + halo (~1,250 px) is one chunk, so one source request (a file
# read, a STAC search + load, an Earth Engine call, which splits itself under its request limits).
CHUNK = 2048


def _store(ctx: RunContext) -> RunStore:
    labels = {o.name: ctx.labels(o) for o in ctx.outputs}
    return RunStore(ctx.store_path, Box(*ctx.store_extent), labels, ctx.scheme.block_px * ctx.scheme.scale)


def _load(array) -> np.ndarray:
    # in this task's own thread: the task is already the unit of parallelism on the cluster
    return array.compute(scheduler="synchronous").values


def map_key(output: OutputSpec, label: str) -> str:
    """How markers name a map: its label ('2019') for a product's only output, else 'landuse/2018-08'."""
    return f"{output.name}/{label}" if output.name else label


def _split_key(key: str) -> tuple[str, str]:
    name, _, label = key.rpartition("/")
    return name, label


def maps_digest(maps: dict[str, str]) -> str:
    """One sha256 over the digests of the maps a task wrote (the marker's own checksum)."""
    return hashlib.sha256(json.dumps(maps, sort_keys=True).encode()).hexdigest()


def block_key(block: Block, group: tuple[str, ...]) -> str:
    return f"{block.id}-{group_key(group)}"


def own_ratio(ctx: RunContext, spec: InputSpec) -> int:
    """Primary input pixels per pixel of this input's own lattice (1: the same lattice)."""
    own = as_fraction(spec.resolution) if spec.resolution else ctx.scheme.input_grid.res
    return int(own / ctx.scheme.input_grid.res)


def chip_origins(origins: np.ndarray, window: int, ratio: int, context: int) -> np.ndarray:
    """(N, 2) own-lattice origins of the `context`-pixel chips centred on each window (to the nearest own
    pixel): the window's centre (2·origin + window)/2 primary px is (2·origin + window)/(2·ratio) own px."""
    twice_centre = 2 * origins.astype(np.int64) + window
    return (twice_centre - ratio * context + ratio) // (2 * ratio)


@dataclass(frozen=True)
class BlockInputs:
    """What `read_block` hands to `predict_block` for one group of dates: each model input on the box it was
    read over (normalised, zero where there is no data), where the primary input has data at each date, and
    the mask layers with a one-pixel halo (None: switched off)."""

    read: Box  # of the primary input (block + the windows' halo)
    images: dict[str, np.ndarray]  # input → (T, C, H, W) float32 on its box
    boxes: dict[str, Box]  # input → the box it was read over, on its own lattice
    valid: np.ndarray  # (T, H, W) bool on `read`: the primary input at each date of the group
    layers: dict[tuple[str, str], np.ndarray | None] = field(default_factory=dict)  # (layer, date) →
    seconds: float = 0.0


def _read(ctx: RunContext, spec: InputSpec, dates: tuple[str, ...], grid: Grid, box: Box) -> np.ndarray:
    """(T, C, H, W) float32 pixels of an input at `dates`, NaN where there is no data."""
    source = ctx.inputs.source(spec.name)
    return np.stack([_load(open_box(source, spec, source_date(d), grid, box, chunks=CHUNK)) for d in dates])


def read_block(ctx: RunContext, block: Block, group: tuple[str, ...]) -> BlockInputs:
    """Read one block's inputs for a group of dates (no GPU: runs beside the model, so the next block is
    ready in time)."""
    started = time.perf_counter()
    product = ctx.product
    read, origins = ctx.lattice.covering(block.box)
    primary = product.image_input
    images, boxes = {}, {}
    valid = None
    for spec in product.image_inputs:
        ratio = own_ratio(ctx, spec)
        if spec is primary:
            grid, box = block.grid, read
        else:
            grid = Grid(block.grid.res * ratio, block.grid.crs)
            size = spec.context or 0
            corners = chip_origins(origins, ctx.lattice.size, ratio, size)
            rows, cols = corners[:, 0], corners[:, 1]
            box = Box(int(rows.min()), int(cols.min()), int(rows.max() - rows.min()) + size,
                      int(cols.max() - cols.min()) + size)
        pixels = _read(ctx, spec, spec.read_dates(group), grid, box)
        ok = np.isfinite(pixels).all(axis=1)  # (T, H, W): every band has data
        if spec.normalised:
            x = normalise(pixels, spec.mean, spec.std, valid=ok[:, None])
        else:  # the model takes raw values; no data is still zero
            x = np.where(ok[:, None], pixels, 0.0).astype(np.float32)
        images[spec.name], boxes[spec.name] = x, box
        if spec is primary:
            valid = ok
    layers: dict[tuple[str, str], np.ndarray | None] = {}
    for name in {layer for o in ctx.outputs for layer in mask_layers(o)}:
        spec = product.input(name)
        for date in (spec.dates or group):
            if name in ctx.inputs.absent:
                layers[name, date] = None  # switched off by the user: the step is skipped
            else:
                layers[name, date] = _read(ctx, spec, (date,), block.grid, block.box.grown(1))[0, 0]
    return BlockInputs(read, images, boxes, valid, layers, time.perf_counter() - started)


def _windows(ctx: RunContext, inputs: BlockInputs, origins: np.ndarray) -> dict[str, np.ndarray]:
    """Each model input's windows, (N, C, h, w) for a model that sees one date, else (N, T, C, h, w)."""
    product, lattice = ctx.product, ctx.lattice
    primary = product.image_input
    single = len(ctx.model_inputs) == 1
    out = {}
    for spec in product.image_inputs:
        image, box = inputs.images[spec.name], inputs.boxes[spec.name]
        if spec is primary:
            local = origins - np.array([box.row, box.col])
            n = lattice.size
            valid = inputs.valid
        else:
            local = chip_origins(origins, lattice.size, own_ratio(ctx, spec), spec.context) - np.array(
                [box.row, box.col])
            n = spec.context
            valid = None
        windows = np.stack([image[:, :, r:r + n, c:c + n] for r, c in local]) if len(local) else np.zeros(
            (0, *image.shape[:2], n, n), np.float32)
        if valid is not None and product.window.padding == "reflect":
            windows = _reflect(windows, np.stack([valid[:, r:r + n, c:c + n] for r, c in local]))
        if ctx.frames == 1:  # one date: the contract's B × C × H × W
            windows = windows[:, 0]
        out[ctx.model_inputs[0] if single else spec.name] = windows
    return out


def _reflect(windows: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Windows reaching past the data mirror the data at its edge (numpy's 'symmetric'), window by window so
    that a window's input depends on nothing but its own pixels; holes inside the data stay zero."""
    out = windows.copy()
    for i in range(len(windows)):
        for t in range(windows.shape[1]):
            ok = valid[i, t]
            if ok.all() or not ok.any():
                continue
            rows, cols = np.flatnonzero(ok.any(axis=1)), np.flatnonzero(ok.any(axis=0))
            r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            h, w = ok.shape
            crop = windows[i, t, :, r0:r1, c0:c1]
            out[i, t] = np.pad(crop, ((0, 0), (r0, h - r1), (c0, w - c1)), mode="symmetric")
    return out


def _map_valid(output: OutputSpec, valid: np.ndarray, t: int, frames: int | None) -> np.ndarray:
    """Where the input had data for map t of an output: the date's, or both dates' of a pair."""
    if frames == 1:
        return valid[0]
    return valid[t] & valid[t + 1] if output.per == "pair" else valid[t]


def _map_dates(ctx: RunContext, output: OutputSpec, group: tuple[str, ...]) -> list[tuple[str, str]]:
    """(label, date of its mask layers) of each map of the output that this group makes."""
    if output.per == "pair":
        return [(f"{a}_{b}", b) for a, b in zip(group, group[1:], strict=False)]
    return [(d, d) for d in group]


@dataclass(frozen=True)
class GroupWindows:
    """One group of dates of a block, ready for the model: its inputs, the origins of the windows that see
    any data, each model input's windows, and the metadata the network gets with them."""

    group: tuple[str, ...]
    inputs: BlockInputs
    origins: np.ndarray  # (N, 2) global input-lattice origins
    windows: dict[str, np.ndarray]  # model input → (N, …) windows; empty when N = 0
    meta: ModelMeta


def group_windows(ctx: RunContext, block: Block, group: tuple[str, ...], inputs: BlockInputs) -> GroupWindows:
    """Cut the windows of one block and group of dates that see any data (the others would only predict
    pixels that are no data anyway)."""
    lattice = ctx.lattice
    read, origins = lattice.covering(block.box)
    local = origins - np.array([read.row, read.col])
    n = lattice.size
    any_valid = inputs.valid.any(axis=0)
    useful = np.array([any_valid[r:r + n, c:c + n].any() for r, c in local], dtype=bool)
    origins = origins[useful]
    # the metadata of this group: the dates each input's frames are at (STSUN encodes them)
    meta = replace(ctx.meta, dates={spec.name: spec.read_dates(group) for spec in ctx.product.image_inputs})
    windows = _windows(ctx, inputs, origins) if len(origins) else {}
    return GroupWindows(group, inputs, origins, windows, meta)


def model_heads(ctx: RunContext) -> dict[str, str]:
    """The heads the run's outputs are made of, each with its activation."""
    return {ctx.head(o): ctx.product.model.activation(o.head) for o in ctx.outputs if not o.of}


def store_group(ctx: RunContext, block: Block, prepared: GroupWindows, scores: dict[str, np.ndarray]) -> None:
    """Stitch each head's window scores, crop to the block, run each output's post chain, store the class
    codes and mark the block and group of dates predicted."""
    product, scale = ctx.product, ctx.scheme.scale
    group, inputs, origins = prepared.group, prepared.inputs, prepared.origins
    read = inputs.read
    store, out_box = _store(ctx), block.box.scaled(scale)
    rows, cols = out_box.slices_in(read.scaled(scale))
    vrows, vcols = block.box.slices_in(read)
    stitch_spec = product.stitch
    written: dict[str, str] = {}
    for output in (o for o in ctx.outputs if not o.of):  # the others are made of these maps by the vote
        head = scores.get(ctx.head(output))
        for t, (label, layer_date) in enumerate(_map_dates(ctx, output, group)):
            if head is None:  # no window had data: every pixel is no data
                codes = np.full(out_box.shape, NODATA, np.uint8)
            else:
                windows = head if ctx.frames == 1 else head[:, t]
                canvas = stitch(windows, origins, read, scale, stitch_spec.method, stitch_spec.border,
                                stitch_spec.weights)

                def layer(name: str, date: str = layer_date) -> np.ndarray | None:
                    spec = product.input(name)
                    return inputs.layers[name, spec.dates[0] if spec.dates else date]

                valid = _map_valid(output, inputs.valid, t, ctx.frames)[vrows, vcols]
                codes = apply_post(output.post, canvas[:, rows, cols], valid, layer, scale)
            store.write(output.name, "classes", label, out_box, codes)
            written[map_key(output, label)] = digest(codes)
    mark_done(ctx.run_dir, "predict", block_key(block, group), {"sha256": maps_digest(written), "maps": written})


class BlockError(RuntimeError):
    """Some groups of dates of a block could not be read or predicted (each named with its error); the
    others were, and keep their markers."""


def process_block(ctx: RunContext, block: Block) -> dict:
    """Predict every group of dates of `block` that has no predict marker yet, then vote the block.

    The next group is read in a second thread while the model runs on this one. For a network that does
    not read the dates, the windows of successive groups share batches (`BatchStream`), so only the
    block's last batch is padded. A group that fails does not stop the others: they are predicted and
    marked, and the task then raises one BlockError naming each failed group, so that a retry (or the
    next run) does only what is missing. The markers present when the task starts were verified before it
    was submitted, or written by an earlier attempt of it.
    """
    import torch

    from . import kernels

    started = time.perf_counter()
    kernels.set_threads(torch.get_num_threads())  # numba's count is per thread: this task's
    todo = [g for g in ctx.groups if not is_done(ctx.run_dir, "predict", block_key(block, g))]
    shared = not getattr(get_model(ctx.model), "reads_dates", True)
    stats = {"windows": 0, "model_seconds": 0.0, "read_seconds": 0.0, "predict_seconds": 0.0,
             "read_wait_seconds": 0.0}
    failures: list[str] = []
    streams: list[BatchStream] = []
    stream: BatchStream | None = None
    pending: dict[tuple[str, ...], GroupWindows] = {}  # groups cut into windows, not yet stored

    def store(done: list[tuple[object, dict[str, np.ndarray]]]) -> None:
        for group, scores in done:
            prepared = pending.pop(group)
            stored = time.perf_counter()
            try:
                store_group(ctx, block, prepared, scores)
            except Exception as exc:
                failures.append(f"predict {group_key(group)}: {type(exc).__name__}: {exc}")
            else:
                stats["windows"] += len(prepared.origins)
            stats["predict_seconds"] += time.perf_counter() - stored

    with ThreadPoolExecutor(1, thread_name_prefix="mapgen-read") as reader:
        ahead = reader.submit(read_block, ctx, block, todo[0]) if todo else None
        for i, group in enumerate(todo):
            waited = time.perf_counter()
            try:
                inputs = ahead.result()
            except Exception as exc:
                inputs = None
                failures.append(f"read {group_key(group)}: {type(exc).__name__}: {exc}")
            stats["read_wait_seconds"] += time.perf_counter() - waited
            ahead = reader.submit(read_block, ctx, block, todo[i + 1]) if i + 1 < len(todo) else None
            if inputs is None:
                continue
            stats["read_seconds"] += inputs.seconds
            cut = time.perf_counter()
            try:
                prepared = group_windows(ctx, block, group, inputs)
            except Exception as exc:
                failures.append(f"predict {group_key(group)}: {type(exc).__name__}: {exc}")
                continue
            finally:
                stats["predict_seconds"] += time.perf_counter() - cut
            pending[group] = prepared
            if not prepared.windows:  # no window sees data: every pixel is no data
                store([(group, {})])
                continue
            if stream is not None and not shared:  # a network that reads the dates: a stream per group
                store(stream.finish())
            if stream is None or not shared:
                streams.append(BatchStream(ctx.model, ctx.batch, activations=model_heads(ctx), meta=prepared.meta))
                stream = streams[-1]
            try:
                store(stream.add(group, prepared.windows))
            except Exception as exc:
                failures += [f"predict {group_key(g)}: {type(exc).__name__}: {exc}" for g in pending]
                pending.clear()
                stream = None  # what it held is lost with the failed batch; the next group starts afresh
        if stream is not None:
            try:
                store(stream.finish())
            except Exception as exc:
                failures += [f"predict {group_key(g)}: {type(exc).__name__}: {exc}" for g in pending]
    stats["model_seconds"] = sum(s.model_seconds for s in streams)
    if failures:
        raise BlockError(f"block {block.id}: " + "; ".join(failures))
    voted = vote_block(ctx, block)
    return {"block": block.id, "groups": len(todo), **stats, "vote_seconds": voted["seconds"],
            "seconds": time.perf_counter() - started, **worker_threads()}


def worker_threads() -> dict:
    """The threads this task's model and kernels used, and which worker it ran on (for the report)."""
    import torch

    from . import kernels

    try:
        from distributed import get_worker

        worker = get_worker().address
    except ValueError:  # not on a Dask worker (called directly)
        worker = "local"
    return {"worker": worker, "torch_threads": torch.get_num_threads(), "numba_threads": kernels.threads()}


class StoreMismatch(RuntimeError):
    """What a task was about to read is not what its marker vouched for (the store changed under the run)."""


def vote_block(ctx: RunContext, block: Block, *_predicted: dict) -> dict:
    """Apply each output's temporal chain once every map of the block is stored (and matches its marker)."""
    started = time.perf_counter()
    vouched: dict[str, str] = {}
    for group in ctx.groups:
        record = read_marker(ctx.run_dir, "predict", block_key(block, group))
        if record is None:
            raise RuntimeError(f"block {block.id}: {group_key(group)} is not predicted yet")
        vouched.update({k: (group, v) for k, v in record.get("maps", {}).items()})
    store, out_box = _store(ctx), block.box.scaled(ctx.scheme.scale)
    final: dict[str, str] = {}
    voted_maps: dict[str, np.ndarray] = {}
    for output in ctx.outputs:
        labels = ctx.labels(output)
        if output.of:  # a change map per pair of another output's final maps (outputs are listed before it)
            voted = apply_temporal(output.temporal, voted_maps[output.of])
            store.write_all(output.name, "final", out_box, voted)
            final.update({map_key(output, label): digest(voted[i]) for i, label in enumerate(labels)})
            continue
        stack = store.read(output.name, "classes", out_box)
        for i, label in enumerate(labels):
            group, sha = vouched.get(map_key(output, label), (ctx.groups[0], ""))
            if digest(stack[i]) != sha:
                unmark(ctx.run_dir, "predict", block_key(block, group))  # the same command redoes it
                raise StoreMismatch(f"block {block.id} {label}: the stored classes do not match their marker")
        voted = voted_maps[output.name] = apply_temporal(output.temporal, stack)
        store.write_all(output.name, "final", out_box, voted)
        final.update({map_key(output, label): digest(voted[i]) for i, label in enumerate(labels)})
    mark_done(ctx.run_dir, "vote", block.id, {"sha256": final})
    return {"block": block.id, "seconds": time.perf_counter() - started}


def _final_parts(ctx: RunContext, tile: Tile, output: OutputSpec, label: str):
    """(box, class codes) of each block of the tile, checked against its vote marker as it is read."""
    store, scale = _store(ctx), ctx.scheme.scale
    for block in tile.blocks:
        record = read_marker(ctx.run_dir, "vote", block.id)
        if record is None:
            raise RuntimeError(f"tile {tile.key}: block {block.id} is not voted yet")
        box = block.box.scaled(scale)
        codes = store.read(output.name, "final", box, label)
        if digest(codes) != record["sha256"].get(map_key(output, label)):
            unmark(ctx.run_dir, "vote", block.id)
            raise StoreMismatch(f"block {block.id} {label}: the stored map does not match its marker")
        yield box, codes


def export_key(tile: Tile, output: OutputSpec, label: str) -> str:
    return f"{tile.key}-{output.name}-{label}" if output.name else f"{tile.key}-{label}"


def tile_tags(ctx: RunContext, output: OutputSpec, label: str) -> dict[str, str]:
    when = {"YEAR": label} if is_year(label) else (
        {"DATES": label.replace("_", "/")} if output.per == "pair" else {"DATE": label})
    tags = {"PRODUCT": ctx.product.name, **when, "MODEL_ARCHITECTURE": ctx.model.architecture,
            "MODEL_SHA256": ctx.model.sha256, "VALUES": ", ".join(f"{c.value}={c.name}" for c in output.classes),
            "NODATA": f"{output.nodata} = no input data"}
    if output.name:
        tags["OUTPUT"] = output.name
    return tags


def export_tile(ctx: RunContext, tile: Tile, output: OutputSpec, label: str, *_voted: dict) -> dict:
    """Write one COG of an output's map for a tile from the voted blocks (atomically), and a marker with its
    size and sha256."""
    started = time.perf_counter()
    path = ctx.tile_path(tile.row, tile.col, label, output)
    write_tile(path, ctx.scheme.output_grid, tile.extent.scaled(ctx.scheme.scale),
               _final_parts(ctx, tile, output, label), output, tile_tags(ctx, output, label),
               scratch_dir=ctx.scratch_dir, table=lookup_table(output.values, output.nodata))
    size, sha256 = file_digest(path)
    mark_done(ctx.run_dir, "export", export_key(tile, output, label),
              {"file": path.name, "size": size, "sha256": sha256})
    return {"tile": path.name, "seconds": time.perf_counter() - started}


def check_block(ctx: RunContext, block: Block) -> dict:
    """Verify a block's markers against the store before a resume skips its steps. A vote marker whose maps
    do not match is dropped (and so are the group markers whose classes do not match), so the run redoes
    just those steps. Returns what failed verification, for the report."""
    store, box = _store(ctx), block.box.scaled(ctx.scheme.scale)
    failed: list[str] = []

    def bad_maps(stage: str, maps: dict) -> list[str]:
        return [key for key, sha in maps.items() if not store.matches(*_split_key(key)[:1], stage, box,
                                                                      _split_key(key)[1], sha)]

    vote = read_marker(ctx.run_dir, "vote", block.id)
    if vote is not None:
        expected = {map_key(o, label) for o in ctx.outputs for label in ctx.labels(o)}
        maps = vote["sha256"] if isinstance(vote["sha256"], dict) else {}
        bad = bad_maps("final", maps) if set(maps) == expected else sorted(expected)
        if not bad:
            return {"block": block.id, "voted": True, "predicted": [], "failed": []}
        unmark(ctx.run_dir, "vote", block.id)
        failed += [f"block {block.id} {key} (map)" for key in bad]
    predicted = []
    for group in ctx.groups:
        key = block_key(block, group)
        record = read_marker(ctx.run_dir, "predict", key)
        if record is None:
            continue
        maps = record.get("maps")
        if isinstance(maps, dict) and record["sha256"] == maps_digest(maps) and not bad_maps("classes", maps):
            predicted.append(group_key(group))
        else:
            unmark(ctx.run_dir, "predict", key)
            failed.append(f"block {block.id} {group_key(group)} (classes)")
    return {"block": block.id, "voted": False, "predicted": predicted, "failed": failed}


def check_tile(ctx: RunContext, tile: Tile) -> dict:
    """Verify the tiles of `tile` that export markers name (size, then sha256); drop the markers of those
    that do not match. Returns the export keys whose tile is as written, and what failed."""
    good, failed = [], []
    for output in ctx.outputs:
        for label in ctx.labels(output):
            key = export_key(tile, output, label)
            record = read_marker(ctx.run_dir, "export", key)
            if record is None:
                continue
            path = ctx.tile_path(tile.row, tile.col, label, output)
            if tile_matches(path, record):
                good.append(key)
            else:
                unmark(ctx.run_dir, "export", key)
                failed.append(path.name)
    return {"tile": tile.key, "good": good, "failed": failed}

