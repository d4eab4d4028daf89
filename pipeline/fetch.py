"""`mapgen fetch`: fill an input cache with what a run will read, in parallel on the cluster, resumably.

What is fetched is exactly what the run's tasks read: every block plus the halo its windows and mask
step reach into, cut along the block lattice so that each piece is one chunk of the cache and one task.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shapely.geometry.base import BaseGeometry

from mapgen.files import atomic
from mapgen.tiles import Box, Grid, Plan, plan_region
from mapgen.workflows import Product

from . import lock
from .context import tile_scheme
from .sources import Inputs, check_inputs, coverage_warnings, open_inputs
from .sources.base import SourceError
from .sources.cache import InputCache
from .store import digest, mark_done, read_marker, unmark
from .stream import TaskStream
from .windows import WindowLattice


def fetch_pieces(plan: Plan, lattice: WindowLattice) -> dict[str, Box]:
    """Input-lattice boxes to fetch, one per block-lattice cell (key 'r{row}c{col}'): the part of the cell
    that some block's read (windows' cover, mask halo) reaches."""
    bp = plan.scheme.block_px
    pieces: dict[tuple[int, int], Box] = {}
    for block in plan.iter_blocks():
        read = lattice.covering(block.box)[0].union(block.box.grown(1))
        for r in range(read.row // bp, -(-read.row_stop // bp)):
            for c in range(read.col // bp, -(-read.col_stop // bp)):
                part = read.intersection(plan.scheme.block_box(r, c))
                if part is not None:
                    pieces[(r, c)] = pieces[(r, c)].union(part) if (r, c) in pieces else part
    return {f"r{r}c{c}": box for (r, c), box in sorted(pieces.items())}


@dataclass
class FetchReport:
    cache: str
    years: list[int]
    pieces: int
    done: int = 0
    skipped: int = 0  # fetched before, and verified against their markers
    refetched: list[str] = field(default_factory=list)  # fetched before, but did not match their markers
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    megabytes: float = 0.0
    inputs: dict[str, str] = field(default_factory=dict)
    coverage: dict[str, dict[int, float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"cache {self.cache}: {self.pieces} piece(s) × {len(self.years)} year(s)",
                 f"  fetched {self.done}, skipped (already there, verified) {self.skipped}, {self.megabytes:.1f} MB, "
                 f"{self.seconds:.1f} s"]
        if self.refetched:
            lines.append(f"  fetched again, as they did not match their markers: {len(self.refetched)}: "
                         + ", ".join(self.refetched[:5]) + (" …" if len(self.refetched) > 5 else ""))
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.failed:
            lines.append(f"  FAILED {len(self.failed)}: " + "; ".join(self.failed[:5]))
        return "\n".join(lines)


@dataclass(frozen=True)
class FetchJob:
    """Everything a fetch task needs, resolved on the client."""

    product: Product
    inputs: Inputs
    cache: InputCache
    grid: Grid
    pieces: dict[str, Box]
    coverage: dict[str, dict[int, float]]
    warnings: tuple[str, ...]


def prepare_fetch(product: Product, region: BaseGeometry, years: list[int] | tuple[int, ...], source: str | Inputs,
                  cache_dir: str | Path, *, block_size: str | float | None = None) -> FetchJob:
    """Plan and check the fetch (one line on any refusal, before any work) and create the cache."""
    odd = [s.name for s in product.inputs if s.dates or s.series or s.resolution or s.context]
    if odd or not all(str(y).isdigit() for y in years):
        what = f"input(s) {', '.join(odd)} have their own dates or lattice" if odd else "the dates are not years"
        raise SourceError(f"mapgen fetch caches inputs read once per year on the product's lattice; {product.name}: "
                          f"{what}; run from the source itself")
    scheme = tile_scheme(product, block_size)
    plan = plan_region(region, scheme, years)
    inputs = source if isinstance(source, Inputs) else open_inputs(product, source, plan.years)
    coverage = check_inputs(inputs, product, plan.years, region)
    pieces = fetch_pieces(plan, WindowLattice(product.window.size, product.window.stride))
    # The cache's extent is whole blocks, so that its chunks are the block lattice's cells and each piece
    # lies in one chunk: two tasks never write the same chunk.
    bp = scheme.block_px
    cells = [scheme.block_box(box.row // bp, box.col // bp) for box in pieces.values()]
    extent = cells[0]
    for cell in cells[1:]:
        extent = extent.union(cell)
    present = [s for s in product.inputs if s.name not in inputs.absent]
    cache_dir = Path(cache_dir).resolve()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire(cache_dir, owner=cache_dir)  # two fetches into one cache would race on its chunks
    except OSError as exc:
        raise SourceError(f"--cache {cache_dir}: cannot write there ({exc.strerror or exc})") from None
    except lock.LockedError as exc:
        raise SourceError(str(exc)) from None
    cache = InputCache.create(
        Path(cache_dir).resolve(), product=product.name, grid=scheme.input_grid, extent=extent, years=plan.years,
        chunk=scheme.block_px, inputs={s.name: s.bands for s in present},
        sources={s.name: inputs.source(s.name).description for s in present}, region=tuple(region.bounds),
        cells=len(pieces) * len(plan.years))
    return FetchJob(product, inputs, cache, scheme.input_grid, pieces, coverage,
                    tuple(coverage_warnings(coverage, inputs)))


def fetch_piece(job: FetchJob, key: str, year: int) -> dict:
    """Read one piece of every input for one year and store it; the marker comes after the data."""
    started = time.perf_counter()
    box = job.pieces[key]
    nbytes, digests = 0, {}
    for spec in job.product.inputs:
        if spec.name in job.inputs.absent:
            continue
        data = job.inputs.read(spec, year, job.grid, box)
        job.cache.write(spec.name, year, box, data)
        nbytes += data.nbytes
        digests[spec.name] = digest(data)
    mark_done(job.cache.path, "fetch", f"{key}-{year}", {"sha256": digests})
    return {"key": f"{key}-{year}", "bytes": nbytes, "seconds": time.perf_counter() - started}


def verify_piece(job: FetchJob, key: str, year: int) -> dict:
    """Whether a fetched piece-year is still what its marker vouched for; drops the marker if not."""
    marker_key = f"{key}-{year}"
    record = read_marker(job.cache.path, "fetch", marker_key)
    box = job.pieces[key]
    try:
        good = record is not None and all(
            digest(job.cache.read(spec.name, year, box, len(spec.bands))) == record["sha256"].get(spec.name)
            for spec in job.product.inputs if spec.name not in job.inputs.absent)
    except Exception:  # noqa: BLE001 - a chunk that cannot be decoded cannot be trusted
        good = False
    if not good:
        unmark(job.cache.path, "fetch", marker_key)
        for spec in job.product.inputs:  # a piece is the only one in its chunk: nothing else is lost
            if spec.name not in job.inputs.absent:
                job.cache.clear(spec.name, year, box, len(spec.bands))
    return {"key": marker_key, "good": good}


def execute_fetch(client, job: FetchJob, *, progress: Callable[[int, int], None] | None = None,
                  max_in_flight: int = 64, retries: int = 2) -> FetchReport:
    """Fetch every piece-year not fetched yet on `client`, at most `max_in_flight` at once; those fetched
    before are verified against their markers on the workers first, and fetched again if they differ."""
    started = time.perf_counter()
    report = FetchReport(cache=job.cache.path, years=list(job.cache.years), pieces=len(job.pieces),
                         inputs=job.inputs.describe(), coverage=job.coverage, warnings=list(job.warnings))
    stream = TaskStream(client, max_in_flight=max_in_flight, retries=retries, ledger=False)

    def submit(key: str, year: int) -> None:
        kind = "verify" if job.cache.marker(f"{key}-{year}").exists() else "fetch"
        stream.submit(kind, f"{key}-{year}", verify_piece if kind == "verify" else fetch_piece, job, key, year)

    total = len(job.pieces) * len(job.cache.years)
    work = (lambda key=key, year=year: submit(key, year) for key in job.pieces for year in job.cache.years)
    done = 0
    for finished in stream.results(work):
        if finished.kind == "verify" and finished.error is None and not finished.result["good"]:
            report.refetched.append(finished.ident)
            key, year = finished.ident.rsplit("-", 1)
            stream.submit("fetch", finished.ident, fetch_piece, job, key, int(year))
            continue
        done += 1
        if finished.error is not None:
            report.failed.append(f"{finished.kind} {finished.ident}: {finished.error}")
        elif finished.kind == "verify":
            report.skipped += 1
        else:
            report.done += 1
            report.megabytes += finished.result["bytes"] / 1e6
        if progress:
            progress(done, total)
    report.seconds = time.perf_counter() - started
    path = Path(job.cache.path) / "fetch-report.json"
    try:
        atomic.write_text(path, json.dumps(asdict(report), indent=2, sort_keys=True, default=float))
    finally:
        lock.release(job.cache.path)
    return report

