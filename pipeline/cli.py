"""The `mapgen` command: a thin layer over mapgen.pipeline, mapgen.tiles and mapgen.workflows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mapgen.tiles import RegionError, load_region
from mapgen.workflows import ProductError, load_product

from .years import parse_years

# Errors that mean "bad input": shown as one line, exit status 2, nothing started.
_INPUT_ERRORS: tuple[type[Exception], ...] = (RegionError, ProductError, ValueError, FileNotFoundError)


class _YearsType(click.ParamType):
    name = "YEARS"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return parse_years(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


YEARS = _YearsType()


def _fail(exc: Exception) -> None:
    click.echo(f"mapgen: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(package_name="mapgen")
def main() -> None:
    """Map production from satellite imagery: plan, run and check national map products."""


def _common(fn):
    fn = click.option("--block-size", default=None, help="Processing block size in degrees "
                      "(default: the product's).")(fn)
    fn = click.option("--region", required=True, type=click.Path(dir_okay=False),
                      help="Region of interest: GeoJSON or any vector file.")(fn)
    fn = click.option("--years", required=True, type=YEARS, help="e.g. 2016-2021")(fn)
    fn = click.option("--product", required=True, help="Product name (e.g. cbra) or product .toml file.")(fn)
    return fn


@main.command()
@_common
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(product: str, years: list[int], region: str, block_size: str | None, as_json: bool) -> None:
    """Show the tiles, blocks, area and pixels of a run without running anything."""
    from mapgen.tiles import plan_region

    from .context import tile_scheme

    try:
        spec = load_product(product)
        the_plan = plan_region(load_region(region), tile_scheme(spec, block_size), years)
    except _INPUT_ERRORS as exc:
        _fail(exc)
    summary = {"product": spec.name, **the_plan.summary()}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"product {spec.name}: {spec.title}")
    click.echo(f"years {years[0]}–{years[-1]} ({len(years)}), region bounds {summary['bounds']}")
    click.echo(f"tiles {summary['tiles']} ({summary['tile_size_deg']}°), blocks {summary['blocks']} "
               f"({summary['block_size_deg']}°), block-years {summary['block_years']}")
    click.echo(f"area {summary['area_km2']:,.1f} km² in blocks ({summary['region_area_km2']:,.1f} km² of region)")
    click.echo(f"pixels per year: input {summary['input_pixels_per_year']:,}, "
               f"output {summary['output_pixels_per_year']:,}")
    for name in summary["tile_names"][str(years[0])]:
        click.echo(f"  {name}")


@main.command()
@_common
@click.option("--source", required=True, help="STAC catalog (dir or .json) or a pattern like data/{year}/{layer}.tif")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder for the tiles.")
@click.option("--workers", default=2, show_default=True, help="Worker processes of the local Dask cluster.")
@click.option("--threads-per-worker", default=1, show_default=True)
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler instead of a local one.")
@click.option("--checkpoint", default=None, help="Checkpoint path or bundled name (default: the product's).")
@click.option("--device", default="cpu", show_default=True, help="torch device of the workers, e.g. cuda.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def run(product: str, years: list[int], region: str, block_size: str | None, source: str, out: str,
        workers: int, threads_per_worker: int, scheduler: str | None, checkpoint: str | None, device: str,
        progress: bool) -> None:
    """Produce the product's tiles over a region and years."""
    from .run import RunError, execute, local_client, prepare

    try:
        spec = load_product(product)
        ctx, the_plan = prepare(spec, load_region(region), years, source, out, checkpoint=checkpoint,
                                block_size=block_size, device=device)
    except (*_INPUT_ERRORS, RunError) as exc:
        _fail(exc)
    summary = the_plan.summary()
    click.echo(f"{spec.name}: {summary['tiles']} tile(s), {summary['blocks']} block(s) × {len(years)} year(s) "
               f"→ {out}", err=True)
    if scheduler:
        from distributed import Client

        client = Client(scheduler)
    else:
        client = local_client(workers, threads_per_worker)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="task", file=sys.stderr, dynamic_ncols=True)

    def on_progress(done: int, total: int, kind: str) -> None:
        if bar is not None:
            bar.total = total
            bar.set_postfix_str(kind)
            bar.update(done - bar.n)

    try:
        report = execute(client, ctx, the_plan, progress=on_progress)
    finally:
        if bar is not None:
            bar.close()
        client.close()  # and the local cluster with it; a cluster given by --scheduler stays up
    click.echo(report.summary(), err=True)
    if report.failed:
        sys.exit(1)


@main.command()
@click.option("--region", required=True, type=click.Path(dir_okay=False))
@click.option("--years", required=True, type=YEARS)
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True)
def synth(region: str, years: list[int], out: str, seed: int) -> None:
    """Make a synthetic multi-year scene over a region (COGs + a STAC catalog), usable as --source."""
    from .synthetic import generate_scene

    try:
        geometry = load_region(region)
        generate_scene(geometry.bounds, years, out, seed=seed, progress=lambda msg: click.echo(msg, err=True))
    except _INPUT_ERRORS as exc:
        _fail(exc)
    click.echo(f"scene written to {Path(out)} (catalog.json, synth.json)", err=True)


@main.command()
def products() -> None:
    """List the products mapgen knows."""
    from mapgen.workflows import product_names

    for name in product_names():
        spec = load_product(name)
        click.echo(f"{name:8s} {spec.title}")
