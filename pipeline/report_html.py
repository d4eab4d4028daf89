"""The run report to look at: `OUT/mapgen-run/report.html`, one self-contained page beside report.json.

It shows what report.json records (status, counts, time per stage, throughput, coverage per input and date,
warnings, failures with their errors, inputs, checkpoint, versions, cluster) and a quick-look image of each
output's map per date. A quick-look is the map read decimated (GDAL then reads the COGs' overviews), coloured
by the output's classes with no data transparent, and embedded as a PNG `data:` URI: the page refers to no
other file, runs no script and loads no font, so it opens the same from a mail attachment as from the disk.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import MemoryFile
from rasterio.merge import merge

from mapgen.files import write_text
from mapgen.workflows import OutputSpec

from .export import colormap
from .runfolder import REPORT_HTML

if TYPE_CHECKING:
    from mapgen.tiles import Tile

    from .context import RunContext
    from .run import RunReport

QUICKLOOK_PX = 512  # a quick-look's longer side, at most


@dataclass(frozen=True)
class QuickLook:
    """One map's picture in the report: its PNG, or None and the reason there is none."""

    output: str  # the output's name ("" for a product's only output)
    label: str  # the map's date or pair of dates
    png: bytes | None
    note: str  # what it was read from, or why there is no picture


def quicklook_rgba(sources: Sequence[str | Path], spec: OutputSpec, max_px: int = QUICKLOOK_PX) -> np.ndarray:
    """The (H, W, 4) uint8 RGBA picture of one map mosaicked from `sources` (a VRT, or the tiles of one date),
    at most `max_px` on its longer side: the output's class colours, no data and unknown values transparent."""
    datasets = [rasterio.open(path) for path in sources]
    try:
        west = min(d.bounds.left for d in datasets)
        east = max(d.bounds.right for d in datasets)
        south = min(d.bounds.bottom for d in datasets)
        north = max(d.bounds.top for d in datasets)
        res_x, res_y = datasets[0].res
        width, height = round((east - west) / res_x), round((north - south) / res_y)
        # never finer than the maps themselves, and at least a pixel across; GDAL reads each source's
        # overview nearest to this resolution
        factor = max(1.0, max(width, height) / max_px)
        width, height = max(1, round(width / factor)), max(1, round(height / factor))
        res = ((east - west) / width, (north - south) / height)
        pixels, _ = merge(datasets, bounds=(west, south, east, north), res=res, nodata=spec.nodata, indexes=[1],
                          resampling=Resampling.nearest)
    finally:
        for d in datasets:
            d.close()
    palette = np.zeros((256, 4), np.uint8)  # values that name no class stay transparent
    for value, rgba in colormap(spec).items():
        palette[value] = rgba
    return palette[pixels[0]]


def encode_png(rgba: np.ndarray) -> bytes:
    """An (H, W, 4) uint8 RGBA array as PNG bytes (GDAL's PNG driver, in memory)."""
    height, width, _ = rgba.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a picture, not a map
        with MemoryFile() as mem:
            with mem.open(driver="PNG", width=width, height=height, count=4, dtype="uint8") as dst:
                dst.write(np.moveaxis(rgba, -1, 0))
            return mem.read()


def map_sources(ctx: RunContext, report: RunReport, tiles: Sequence[Tile], output: OutputSpec,
                label: str) -> tuple[list[Path], str]:
    """What one map's quick-look is read from, and a note saying so: the VRT of a finished run; else the tiles
    of this run that exist (a failed or interrupted run writes no VRT, and a tile it failed to write may be an
    older one)."""
    vrt = ctx.vrt_path(label, output)
    if report.status == "finished" and vrt.exists():
        return [vrt], vrt.name
    failed = set(report.tiles_failed)
    paths = [ctx.tile_path(t.row, t.col, label, output) for t in tiles]
    found = [p for p in paths if p.name not in failed and p.exists()]
    if not found:
        return [], "no map: none of its tiles was written"
    return found, f"{len(found)} of {len(paths)} tile(s)"


def quicklooks(ctx: RunContext, report: RunReport, tiles: Sequence[Tile],
               max_px: int = QUICKLOOK_PX) -> list[QuickLook]:
    """A quick-look of each output and date (or pair) of the run; a map that cannot be read says why."""
    looks = []
    for output in ctx.outputs:
        for label in ctx.labels(output):
            sources, note = map_sources(ctx, report, tiles, output, label)
            png = None
            if sources:
                try:
                    png = encode_png(quicklook_rgba(sources, output, max_px))
                except (RasterioError, OSError, ValueError) as exc:
                    # the report is still written: it says which map could not be read and why
                    png, note = None, f"quick-look unreadable ({note}): {type(exc).__name__}: {exc}"
            looks.append(QuickLook(output.name, label, png, note))
    return looks


# --- the page ---

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1200px;
padding:0 16px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;
padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:4px 0 8px}td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f6f8fa;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{white-space:pre-wrap;word-break:break-word;margin:0}
.status{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.finished{background:#1a7f37}.failed{background:#cf222e}.interrupted{background:#9a6700}.running{background:#57606a}
.maps{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;border:1px solid #d0d7de;border-radius:6px;padding:6px;background:#f6f8fa}
figcaption{font-size:12px;color:#57606a;max-width:260px;word-break:break-word}
.look{width:256px;height:256px;object-fit:contain;image-rendering:pixelated;display:block;
background-color:#fff;background-image:linear-gradient(45deg,#e6e6e6 25%,transparent 25%),
linear-gradient(-45deg,#e6e6e6 25%,transparent 25%),linear-gradient(45deg,transparent 75%,#e6e6e6 75%),
linear-gradient(-45deg,transparent 75%,#e6e6e6 75%);background-size:16px 16px;
background-position:0 0,0 8px,8px -8px,-8px 0}
.none{width:256px;height:256px;display:flex;align-items:center;justify-content:center;color:#57606a;
text-align:center;font-size:12px;padding:8px;box-sizing:border-box}
.swatch{display:inline-block;width:12px;height:12px;border:1px solid #888;vertical-align:-2px;margin-right:4px}
.legend span.item{margin-right:14px}
.bar{background:#0969da;height:12px;display:inline-block;vertical-align:middle}
.barcell{width:320px}
ul.warn li{color:#9a6700}ul.fail li{color:#cf222e}
"""


def _e(value: object) -> str:
    """Any value as escaped text (dicts and lists as JSON)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str) \
        if isinstance(value, dict | list | tuple) else str(value)
    return escape(text, quote=True)


def _rows(pairs: Sequence[tuple[object, object]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs)


def _table(pairs: Sequence[tuple[object, object]], empty: str = "none") -> str:
    return f"<table>{_rows(pairs)}</table>" if pairs else f"<p>{_e(empty)}</p>"


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min ({s:.0f} s)"


def _legend(spec: OutputSpec) -> str:
    items = "".join(
        f'<span class="item"><span class="swatch" style="background:rgba({r},{g},{b},{a / 255:.3f})"></span>'
        f"{_e(c.name)} ({c.value})</span>" for c, (r, g, b, a) in ((c, c.rgba) for c in spec.classes))
    items += (f'<span class="item"><span class="swatch" style="background:transparent"></span>'
              f"no data ({spec.nodata}, transparent)</span>")
    return f'<p class="legend">{items}</p>'


def _maps(looks: Sequence[QuickLook], outputs: Sequence[OutputSpec]) -> str:
    parts = []
    for spec in outputs:
        mine = [look for look in looks if look.output == spec.name]
        if len(outputs) > 1:
            parts.append(f"<h3>{_e(spec.name)}: {_e(spec.band_description)}</h3>")
        else:
            parts.append(f"<h3>{_e(spec.band_description)}</h3>")
        parts.append(_legend(spec))
        figures = []
        for look in mine:
            title = f"{spec.name + ' ' if spec.name else ''}{look.label}"
            caption = f"<b>{_e(look.label)}</b>"
            if look.png is not None:
                uri = "data:image/png;base64," + base64.b64encode(look.png).decode("ascii")
                picture = f'<img class="look" alt="{_e(title)}" src="{uri}">'
                caption += f" · {_e(look.note)}"
            else:  # the reason in the picture's place
                picture = f'<div class="none">{_e(look.note)}</div>'
            figures.append(f"<figure>{picture}<figcaption>{caption}</figcaption></figure>")
        parts.append(f'<div class="maps">{"".join(figures)}</div>' if figures else "<p>no maps</p>")
    return "".join(parts)


def _stages(stage_seconds: dict[str, float]) -> str:
    if not stage_seconds:
        return "<p>no stage ran (everything was skipped or failed)</p>"
    most = max(stage_seconds.values()) or 1.0
    total = sum(stage_seconds.values()) or 1.0
    rows = "".join(
        f'<tr><th>{_e(k)}</th><td class="n">{v:.1f} s</td><td class="n">{100 * v / total:.0f} %</td>'
        f'<td class="barcell"><span class="bar" style="width:{300 * v / most:.0f}px"></span></td></tr>'
        for k, v in sorted(stage_seconds.items(), key=lambda kv: -kv[1]))
    return f"<table><tr><th>stage</th><th>worker time</th><th>share</th><th></th></tr>{rows}</table>"


def _coverage(coverage: dict[str, dict]) -> str:
    if not coverage:
        return "<p>not measured</p>"
    dates = sorted({str(d) for shares in coverage.values() for d in shares})
    head = "".join(f"<th>{_e(d)}</th>" for d in dates)
    rows = []
    for layer, shares in sorted(coverage.items()):
        by_date = {str(d): v for d, v in shares.items()}
        cells = "".join(f'<td class="n">{100 * by_date[d]:.1f} %</td>' if d in by_date else "<td>–</td>"
                        for d in dates)
        rows.append(f"<tr><th>{_e(layer)}</th>{cells}</tr>")
    return f"<table><tr><th>input</th>{head}</tr>{''.join(rows)}</table>"


def _list(items: Sequence[str], cls: str, empty: str) -> str:
    if not items:
        return f"<p>{_e(empty)}</p>"
    return f'<ul class="{cls}">' + "".join(f"<li><pre>{_e(i)}</pre></li>" for i in items) + "</ul>"


def render(report: RunReport, looks: Sequence[QuickLook], outputs: Sequence[OutputSpec]) -> str:
    """The report page: one HTML string with its CSS inline and its pictures as data: URIs."""
    r = report
    tp = r.throughput
    status = r.status if r.status in ("finished", "failed", "interrupted") else "running"
    dates = ", ".join(str(d) for d in r.years)
    overview = [
        ("product", r.product), ("dates", dates or "none"),
        ("region", f"{r.area_km2:,.1f} km², {r.blocks} block(s) in {r.tiles} tile(s)"),
        ("block-years", f"computed {r.block_years_done}, skipped (already done) {r.block_years_skipped}"),
        ("blocks", f"voted {r.blocks_voted}, skipped {r.blocks_skipped}, failed {len(r.blocks_failed)}"),
        ("tiles", f"written {len(r.tiles_written)}, skipped {r.tiles_skipped}, failed {len(r.tiles_failed)}"),
        ("windows", f"{r.windows:,}"),
        ("time", _seconds(r.seconds)),
        ("throughput", f"{tp.get('windows_per_s', 0):.1f} windows/s, {tp.get('block_years_per_hour', 0):.1f} "
                       f"block-years/hour, {tp.get('km2_years_per_s', 0):.2f} km²·year/s"),
        ("device", f"{r.device}, {r.precision}, batch {r.batch}"),
        ("tasks in flight (peak)", r.peak_in_flight),
    ]
    threads = [(w, f"model {t.get('torch')}, kernels {t.get('numba')}") for w, t in sorted(r.worker_threads.items())]
    checks = [(k, v) for k, v in sorted(r.verified.items())]
    retried = [(k, v) for k, v in sorted(r.retried.items()) if v]
    body = [
        f"<h1>mapgen run: {_e(r.product)} <span class=\"status {status}\">{_e(r.status)}</span></h1>",
        f"<p>{_e(dates)} · {len(r.failed)} failure(s) · {len(r.warnings)} warning(s) · "
        f"<code>{_e(REPORT_HTML)}</code> beside <code>report.json</code></p>",
        '<h2 id="overview">Overview</h2>', _table(overview),
        '<h2 id="maps">Maps</h2>', _maps(looks, outputs),
        '<h2 id="stages">Time per stage</h2>',
        "<p>summed over tasks (worker time), beside the run's wall time of " + _e(_seconds(r.seconds)) + "</p>",
        _stages(r.stage_seconds),
        '<h2 id="coverage">Coverage</h2><p>share of the region each input has data for, per date</p>',
        _coverage(r.coverage),
        f'<h2 id="warnings">Warnings ({len(r.warnings)})</h2>', _list(r.warnings, "warn", "none"),
        f'<h2 id="failed">Failed ({len(r.failed)})</h2>', _list(r.failed, "fail", "nothing failed"),
        "<h3>retried (error or lost worker)</h3>", _table(retried, "nothing"),
        "<h3>verified before skipping</h3>", _table(checks, "nothing"),
        f"<h3>redone, as they did not match their markers ({len(r.recomputed)})</h3>",
        _list(r.recomputed, "", "nothing"),
        '<h2 id="inputs">Inputs and checkpoint</h2>', _table(sorted(r.inputs.items())),
        _table([("checkpoint", r.checkpoint), ("sha256", r.checkpoint_sha256)]),
        '<h2 id="cluster">Cluster and versions</h2>', _table(sorted(r.cluster.items())),
        "<h3>threads per worker</h3>", _table(threads),
        "<h3>versions</h3>", _table(sorted(r.versions.items())),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>mapgen {_e(r.product)}: {_e(r.status)}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def write_report_html(ctx: RunContext, report: RunReport, tiles: Sequence[Tile]) -> Path:
    """Write `report.html` in the run folder (atomically, its temporary in the run's scratch folder), with a
    quick-look of each map of `tiles` that exists; returns its path."""
    path = Path(ctx.run_dir) / REPORT_HTML
    page = render(report, quicklooks(ctx, report, tiles), ctx.outputs)
    ctx.scratch_dir.mkdir(parents=True, exist_ok=True)
    write_text(path, page, scratch_dir=ctx.scratch_dir)
    return path
