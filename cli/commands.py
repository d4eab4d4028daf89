"""The `mapgen` commands: they parse the command line and call the library (mapgen.pipeline, mapgen.tiles,
mapgen.workflows, mapgen.synthetic, mapgen.training, mapgen.models)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mapgen.tiles import RegionError, load_region
from mapgen.workflows import ProductError, load_product, parse_dates
from mapgen.workflows.dates import parse_years

# Errors that mean "bad input": shown as one line, exit status 2, nothing started.
_INPUT_ERRORS: tuple[type[Exception], ...] = (RegionError, ProductError, ValueError, FileNotFoundError)


class _ListType(click.ParamType):
    """A list option parsed by a library function, whose ValueError becomes click's one-line usage error."""

    def __init__(self, name: str, parse) -> None:
        self.name, self.parse = name, parse

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


YEARS = _ListType("YEARS", parse_years)
DATES = _ListType("DATES", parse_dates)


def _run_dates(years: list[int] | None, dates: list[str] | None) -> list:
    """The run's dates from --years or --dates (exactly one of them)."""
    if (years is None) == (dates is None):
        raise click.UsageError("give the run's dates as --years 2016-2021 or --dates 2018-08,2020-08 (one of them)")
    return years if years is not None else dates


def _region_name(region: str, name: str | None) -> str:
    """What {region} stands for (per-region checkpoints, mosaic names): --region-name, else the region file's
    own name (a `name` property), else its stem."""
    from mapgen.tiles import region_name

    return name or region_name(region)


def _fail(exc: Exception) -> None:
    click.echo(f"mapgen: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
    sys.exit(2)


class _OneLineUsageError(click.UsageError):
    """A bad option or argument shown as one `mapgen: error:` line (invariant 8), not click's usage block;
    still a click.UsageError, exit status 2."""

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message(), error.ctx)

    def show(self, file=None) -> None:
        hint = f" (see {self.ctx.command_path} --help)" if self.ctx is not None else ""
        click.echo(f"mapgen: error: {self.format_message().rstrip('.')}{hint}", err=True)


def _one_line(error: click.UsageError) -> click.UsageError:
    # A bare `mapgen workflow` asks for the help text, which is no error.
    if isinstance(error, (_OneLineUsageError, click.exceptions.NoArgsIsHelpError)):
        return error
    return _OneLineUsageError(error)


class _Command(click.Command):
    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None


class _Group(_Command, click.Group):
    command_class = _Command
    group_class = type  # subgroups are _Groups too

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise _one_line(exc) from None


@click.group(cls=_Group)
@click.version_option(package_name="mapgen")
def main() -> None:
    """Map production from satellite imagery: plan, run and check national map products."""


def _common(fn):
    fn = click.option("--block-size", default=None, help="Processing block size in degrees "
                      "(default: the product's).")(fn)
    fn = click.option("--region", required=True, type=click.Path(dir_okay=False),
                      help="Region of interest: GeoJSON or any vector file.")(fn)
    fn = click.option("--dates", default=None, type=DATES,
                      help="The run's dates instead of --years, e.g. 2018-08,2020-08 (one precision).")(fn)
    fn = click.option("--years", default=None, type=YEARS,
                      help="e.g. 2016-2021, 2016,2018 or 2016-last (the last complete year).")(fn)
    fn = click.option("--product", required=True, help="Product name (e.g. cbra) or product .toml file.")(fn)
    return fn


@main.command()
@_common
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--list-tiles/--no-list-tiles", default=True, show_default=True, help="List the tile names.")
def plan(product: str, years: list[int] | None, dates: list[str] | None, region: str, block_size: str | None,
         as_json: bool, list_tiles: bool) -> None:
    """Show the tiles, blocks, area, windows and compute of a run without running anything."""
    from mapgen.pipeline.context import tile_scheme
    from mapgen.pipeline.estimate import estimate
    from mapgen.pipeline.post import check_product
    from mapgen.tiles import plan_region

    try:
        when = _run_dates(years, dates)
        spec = load_product(product)
        check_product(spec)
        the_plan = plan_region(load_region(region), tile_scheme(spec, block_size), when)
    except _INPUT_ERRORS as exc:
        _fail(exc)
    summary = {"product": spec.name, **the_plan.summary()}
    summary["compute"] = estimate(the_plan, spec)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    first, last = the_plan.dates[0], the_plan.dates[-1]
    kind = "years" if years is not None else "dates"
    size = (f"{summary['tile_size_deg']}°" if summary["tile_width_deg"] == summary["tile_height_deg"]
            else f"{summary['tile_width_deg']:.6g}° × {summary['tile_height_deg']:.6g}°")
    frames = " (GB/T 13989 1:25,000 map frames)" if summary["grid_kind"] == "map_frame" else ""
    click.echo(f"product {spec.name}: {spec.title}")
    click.echo(f"{kind} {first}–{last} ({len(the_plan.dates)}), region bounds {summary['bounds']}")
    click.echo(f"tiles {summary['tiles']} ({size}){frames}, blocks {summary['blocks']:,} "
               f"({summary['block_size_deg']:.6g}°), block-dates {summary['block_years']:,}")
    click.echo(f"area {summary['area_km2']:,.1f} km² in blocks ({summary['region_area_km2']:,.1f} km² of region)")
    click.echo(f"pixels per year: input {summary['input_pixels_per_year']:,}, "
               f"output {summary['output_pixels_per_year']:,}")
    _print_compute(summary["compute"], spec)
    if list_tiles:
        for name in next(iter(summary["tile_names"].values())):
            click.echo(f"  {name}")


def _hours(hours: float) -> str:
    return f"{hours:,.1f}" if hours >= 10 else f"{hours:.3g}"  # a city's plan is minutes, not 0.0 h


def _print_compute(compute: dict, spec) -> None:
    """The plan's windows, the ideal bound of its full network on an H100 (at the bf16 peak and at the goal's
    share of it) and, beside it, the hours at each throughput measured for the product's architecture."""
    model = compute["model"]
    if compute["full_model_flop"] is None:
        click.echo(f"windows {compute['windows']:,} ({spec.window.size} px, stride {spec.window.stride}); "
                   f"model {model['architecture']}: {model['note']}")
    else:
        click.echo(f"windows {compute['windows']:,} ({spec.window.size} px, stride {spec.window.stride}); the full "
                   f"{model['architecture']} ({model['gflop_per_window']:.1f} GFLOP a window) needs "
                   f"{compute['full_model_flop']:.2e} FLOP")
        click.echo(f"  ideal bound: {_hours(compute['h100_bf16_peak_hours'])} GPU-hours of one H100 at its bf16 peak "
                   f"({compute['h100_bf16_peak_tflops']:.1f} TFLOP/s), {_hours(compute['h100_bf16_goal_hours'])} at "
                   f"{100 * compute['goal_share_of_peak']:.0f} % of it (the goal; a bound, not a measurement)")
    for m in compute["measured"]:
        unit = "GPU-hours" if m["kind"] == "gpu" else "CPU-hours"
        detail = [f"{m['km2_per_s']:,.1f} km²/s"] if m.get("km2_per_s") is not None else []
        if m.get("tflops") is not None:
            share = m.get("share_of_peak")
            detail.append(f"{m['tflops']:,.1f} TFLOP/s" + ("" if share is None else f" = {100 * share:.1f} % of "
                                                                                  "its bf16 peak"))
        if m.get("peak_memory_gib") is not None:
            detail.append(f"{m['peak_memory_gib']:.1f} GiB")
        if m.get("deterministic") is not None:
            detail.append("deterministic" if m["deterministic"] else "NOT deterministic")
        click.echo(f"  {_hours(m['hours'])} {unit} at {m['windows_per_s']:,.1f} windows/s"
                   + (f" ({', '.join(detail)})" if detail else "")
                   + f": {model['architecture']} {m['config']}, {m['precision']}, batch {m['batch']} on {m['device']} "
                   f"(measured {m['date']})")
    if compute["full_model_flop"] is not None and not any(m["kind"] == "gpu" for m in compute["measured"]):
        click.echo(f"  GPU-hours: no GPU figure of {model['architecture']} measured yet; on a GPU machine run "
                   "python benchmarks/gpu.py --record")


SOURCE_HELP = ("Where the inputs come from: a pattern like data/{year}/{layer}.tif or imagery/rgbn_{year}.tif, a "
               "raster, a STAC catalog (dir or .json), a STAC API URL, ee://PROJECT (Earth Engine), or an input "
               "cache made by mapgen fetch. Planetary Computer's API "
               "(https://planetarycomputer.microsoft.com/api/stac/v1) and catalogs of assets on "
               "*.blob.core.windows.net are signed with SAS tokens by themselves.")


def _source_options(fn):
    opts = [
        click.option("--source", required=True, help=SOURCE_HELP),
        click.option("--mask", default=None, help="Source of the mask input (e.g. built) when --source lacks it "
                     "or to replace it: a raster, a pattern, a catalog, 'worldcover' (ESA WorldCover's built-up class "
                     "from Planetary Computer; worldcover:CATALOG_OR_API_URL for another STAC), or 'none' to skip "
                     "the mask step."),
        click.option("--bands", default=None, help="The image file's bands in file order, e.g. red,green,blue,nir "
                     "(names: B2 B3 B4 B8 or blue green red nir)."),
        click.option("--scale", type=float, default=None, help="Image values = DN × scale + offset "
                     "(default: the file's own scale; integer data needs one)."),
        click.option("--offset", type=float, default=None, help="See --scale."),
        click.option("--nodata", type=float, default=None, help="The image file's no-data value, if it does not "
                     "declare one."),
        click.option("--collection", default="sentinel-2-l2a", show_default=True,
                     help="STAC collection of the scenes."),
        click.option("--cloud-cover", default=20.0, show_default=True,
                     help="STAC scenes with eo:cloud_cover at or above this (%) are left out (paper: 20)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _inputs(spec, years: list[int], source: str, mask: str | None, bands: str | None, scale: float | None,
            offset: float | None, nodata: float | None, collection: str, cloud_cover: float):
    from mapgen.pipeline.sources import BandMap, open_inputs

    order = tuple(b.strip() for b in bands.split(",")) if bands else None
    return open_inputs(spec, source, years, mask=mask, bands=BandMap(order, scale, offset, nodata),
                       collection=collection, cloud_cover=cloud_cover)


def _progress_bar(enabled: bool, unit: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=0, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _cluster_options(fn):
    opts = [
        click.option("--cluster", default=None, help="Where the workers come from: local (default), slurm, "
                     "kubernetes (settings: mapgen config)."),
        click.option("--scheduler", default=None, help="Address of a running Dask scheduler instead "
                     "(tcp://host:8786)."),
        click.option("--cluster-config", default=None, type=click.Path(dir_okay=False),
                     help="YAML file of cluster settings over the defaults (see mapgen config)."),
        # At least 1: a 0 used to fall back to the default without a word, and -1 hung.
        click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes of a local "
                     "cluster (default 2, or one per GPU)."),
        click.option("--threads-per-worker", type=click.IntRange(min=1), default=None),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@main.command()
@_common
@_source_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder for the tiles.")
@_cluster_options
@click.option("--checkpoint", default=None, help="Checkpoint path or bundled name (default: the product's).")
@click.option("--device", default="auto", show_default=True, help="torch device of the workers: cpu, cuda, or "
              "auto (cuda when the cluster's workers have GPUs).")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="auto: bf16 on CUDA, fp32 on the CPU.")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Windows per forward pass (default: the "
              "product's on the CPU, mapgen.gpu-batch on a GPU).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--force-restart", is_flag=True, help="OUT holds a run of other inputs or settings: start this one "
              "over there (its tiles are remade; the old run's progress is dropped).")
@click.option("--region-name", default=None, help="The region's name, for a product with a checkpoint per region "
              "({region}) and mosaics named by region (default: the region file's name, e.g. wuhan).")
@click.option("--stac-href", default=None, help="The URL OUT will be published at: the STAC catalog's hrefs become "
              "absolute under it (default: relative, a self-contained catalog).")
def run(product: str, years: list[int] | None, dates: list[str] | None, region: str, block_size: str | None,
        source: str, mask: str | None,
        bands: str | None, scale: float | None, offset: float | None, nodata: float | None, collection: str,
        cloud_cover: float, out: str, cluster: str | None, scheduler: str | None, cluster_config: str | None,
        workers: int | None, threads_per_worker: int | None, checkpoint: str | None, device: str, precision: str,
        batch: int | None, progress: bool, force_restart: bool, region_name: str | None,
        stac_href: str | None) -> None:
    """Produce the product's tiles over a region and years (or dates)."""
    _run(**locals())


def _run(*, product: str, years: list[int] | None, dates: list[str] | None, region: str, block_size: str | None,
         source: str, mask: str | None, bands: str | None, scale: float | None, offset: float | None,
         nodata: float | None, collection: str, cloud_cover: float, out: str, cluster: str | None,
         scheduler: str | None, cluster_config: str | None, workers: int | None, threads_per_worker: int | None,
         checkpoint: str | None, device: str, precision: str, batch: int | None, progress: bool,
         force_restart: bool, region_name: str | None, stac_href: str | None = None) -> None:
    """`mapgen run` once its options are parsed (also what `mapgen workflow run` calls)."""
    from mapgen.pipeline.catalog import check_href
    from mapgen.pipeline.cluster import ClusterError, check_settings, cluster_kind, load_config, make_client
    from mapgen.pipeline.run import RunError

    try:
        if stac_href is not None:
            check_href(stac_href)
        if cluster_config:
            load_config(cluster_config)
        check_settings()
        kind = cluster_kind(cluster, scheduler)
        ctx, the_plan = _prepare_run(
            product=product, years=_run_dates(years, dates), region=region, block_size=block_size, source=source,
            mask=mask, bands=bands, scale=scale, offset=offset, nodata=nodata, collection=collection,
            cloud_cover=cloud_cover, out=out, checkpoint=checkpoint, device=device, precision=precision, batch=batch,
            cluster=kind, restart=force_restart, region_name=_region_name(region, region_name))
    except (*_INPUT_ERRORS, RunError, ClusterError) as exc:
        _fail(exc)
    summary = the_plan.summary()
    when = f"{len(ctx.dates)} year(s)" if ctx.annual else f"{len(ctx.dates)} date(s)"
    click.echo(f"{ctx.product.name}: {summary['tiles']} tile(s), {summary['blocks']} block(s) × {when} → "
               f"{ctx.out_dir} ({ctx.model.device}, {ctx.model.precision})", err=True)
    for line in ctx.warnings:
        click.echo(f"mapgen: warning: {line}", err=True)
    try:
        client = make_client(cluster, scheduler=scheduler, workers=workers, threads_per_worker=threads_per_worker)
    except ClusterError as exc:
        _fail(exc)
    _stream_run(client, ctx, the_plan, progress, stac_href)


def _prepare_run(*, product: str, years: list, region: str, block_size: str | None, source: str,
                 mask: str | None, bands: str | None, scale: float | None, offset: float | None,
                 nodata: float | None, collection: str, cloud_cover: float, out: str, checkpoint: str | None,
                 device: str, precision: str, batch: int | None, cluster: str | None, restart: bool = False,
                 region_name: str = ""):
    """Every check of a run, before any cluster starts: (context, plan). `cluster` is the kind or scheduler
    address the run will go to (None: the `mapgen.cluster` setting), for `--device auto`."""
    from mapgen.pipeline.run import prepare

    spec = load_product(product)
    inputs = _inputs(spec, years, source, mask, bands, scale, offset, nodata, collection, cloud_cover)
    return prepare(spec, load_region(region), years, inputs, out, checkpoint=checkpoint, block_size=block_size,
                   device=device, cluster=cluster, precision=None if precision == "auto" else precision,
                   batch=batch, restart=restart, region_name=region_name)


def _stream_run(client, ctx, the_plan, progress: bool, stac_href: str | None = None) -> None:
    """Stream the plan through the client's cluster and print the summary; exit 1 if anything failed, 130 if
    interrupted (the same command resumes). Closes the client and the cluster it made."""
    from mapgen.pipeline.cluster import close_client, setting
    from mapgen.pipeline.run import execute

    bar = _progress_bar(progress, "task")

    def on_progress(done: int, total: int, kind: str) -> None:
        if bar is not None:
            bar.total = total
            bar.set_postfix_str(kind)
            bar.update(done - bar.n)

    try:
        report = execute(client, ctx, the_plan, progress=on_progress, max_in_flight=int(setting("max-in-flight")),
                         retries=int(setting("retries")), gpu_blocks=int(setting("gpu-blocks")),
                         stac_href=stac_href)
    except KeyboardInterrupt:
        click.echo(f"mapgen: interrupted; finished blocks are kept, the same command resumes "
                   f"({Path(ctx.run_dir) / 'report.json'})", err=True)
        sys.exit(130)
    finally:
        if bar is not None:
            bar.close()
        close_client(client)  # and the cluster it made; a cluster given by --scheduler stays up
    click.echo(report.summary(), err=True)
    if report.failed:
        sys.exit(1)


@main.command()
@_common
@_source_options
@click.option("--cache", required=True, type=click.Path(file_okay=False), help="Folder of the input cache "
              "(a Zarr v3 store); give it to mapgen run as --source.")
@_cluster_options
@click.option("--progress/--no-progress", default=True, show_default=True)
def fetch(product: str, years: list[int] | None, dates: list[str] | None, region: str, block_size: str | None,
          source: str, mask: str | None,
          bands: str | None, scale: float | None, offset: float | None, nodata: float | None, collection: str,
          cloud_cover: float, cache: str, cluster: str | None, scheduler: str | None, cluster_config: str | None,
          workers: int | None, threads_per_worker: int | None, progress: bool) -> None:
    """Fetch the inputs of every block-year into a local Zarr cache (resumable, parallel)."""
    from mapgen.pipeline.cluster import (
        ClusterError,
        check_settings,
        close_client,
        cluster_kind,
        load_config,
        make_client,
        setting,
    )
    from mapgen.pipeline.fetch import execute_fetch, prepare_fetch

    try:
        if cluster_config:
            load_config(cluster_config)
        check_settings()
        cluster_kind(cluster, scheduler)
        years = _run_dates(years, dates)
        spec = load_product(product)
        inputs = _inputs(spec, years, source, mask, bands, scale, offset, nodata, collection, cloud_cover)
        job = prepare_fetch(spec, load_region(region), years, inputs, cache, block_size=block_size)
        for line in job.warnings:
            click.echo(f"mapgen: warning: {line}", err=True)
        client = make_client(cluster, scheduler=scheduler, workers=workers, threads_per_worker=threads_per_worker)
    except (*_INPUT_ERRORS, ClusterError) as exc:
        _fail(exc)
    bar = _progress_bar(progress, "piece")

    def on_progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        report = execute_fetch(client, job, progress=on_progress, max_in_flight=int(setting("max-in-flight")),
                               retries=int(setting("retries")))
    finally:
        if bar is not None:
            bar.close()
        close_client(client)
    click.echo(report.summary(), err=True)
    click.echo(f"run with: mapgen run ... --source {cache}", err=True)
    if report.failed:
        sys.exit(1)


@main.command()
@click.option("--product", "product_name", type=click.Choice(["cbra", "ugs"]), default="cbra", show_default=True,
              help="cbra: a multi-year Sentinel-2-like scene; ugs: a ~1 m RGB city scene with urban green space "
              "ground truth and a GUB-like 2018 urban boundary.")
@click.option("--region", required=True, type=click.Path(dir_okay=False))
@click.option("--years", required=True, type=YEARS, help="The years (cbra), or the one year of the imagery (ugs).")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True)
@click.option("--style", default=None, help="ugs only: the imagery's look, auto (drawn from the seed, Google-Earth-"
              "like), far (warm, hazy, flat) or gf2 (Gaofen-2-like) [default: auto].")
@click.option("--scenes", default=0, show_default=True, help="Also write this many cloudy Sentinel-2-like scenes "
              "a year (plus one over the cloud limit) as a STAC catalog in OUT/scenes (cbra only).")
def synth(product_name: str, region: str, years: list[int], out: str, seed: int, style: str | None,
          scenes: int) -> None:
    """Make a synthetic scene over a region (COGs + a STAC catalog), usable as --source."""
    try:
        if product_name == "ugs":
            from mapgen.synthetic.ugs import generate_ugs_scene

            if len(years) != 1:
                raise ValueError(f"--product ugs takes one year of imagery, got {len(years)} ({years[0]}-{years[-1]})")
            if scenes:
                raise ValueError("--scenes makes Sentinel-2-like scenes: it goes with --product cbra, not ugs")
            geometry = load_region(region)
            generate_ugs_scene(geometry.bounds, years[0], out, seed=seed, style=style or "auto",
                               progress=lambda msg: click.echo(msg, err=True))
            click.echo(f"scene written to {Path(out)} (catalog.json, synth.json, gub.geojson)", err=True)
            return
        from mapgen.synthetic import generate_scene
        from mapgen.synthetic.scenes import write_scene_catalog

        if style is not None:
            raise ValueError("--style goes with --product ugs (the cbra scene draws a style per year)")
        geometry = load_region(region)
        generate_scene(geometry.bounds, years, out, seed=seed, progress=lambda msg: click.echo(msg, err=True))
        if scenes:
            write_scene_catalog(out, Path(out) / "scenes", years, per_year=scenes, seed=seed)
    except _INPUT_ERRORS as exc:
        _fail(exc)
    click.echo(f"scene written to {Path(out)} (catalog.json, synth.json"
               f"{', scenes/catalog.json' if scenes else ''})", err=True)


def _bounds(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise click.BadParameter(f"{text!r}: give bounds as WEST,SOUTH,EAST,NORTH")
    return values  # type: ignore[return-value]


def _seeds(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give seeds as integers separated by commas, e.g. 101,102,103") from None


@main.command()
@click.option("--product", default="cbra", show_default=True, help="Product whose inputs and normalisation to use.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write (.safetensors).")
@click.option("--scenes-dir", required=True, type=click.Path(file_okay=False),
              help="Where the synthetic scenes are generated from their seeds (or found, if made before).")
@click.option("--train-seeds", default="101,102,103", show_default=True, help="Training scene seeds.")
@click.option("--train-bounds", multiple=True, help="W,S,E,N of training scenes, cycled over the seeds "
              "(default: four regions far from the demo).")
@click.option("--eval-seed", default=999, show_default=True, help="Held-out scene seed.")
@click.option("--eval-bounds", default="118.0,37.0,118.1,37.1", show_default=True)
@click.option("--years", default="2016-2021", show_default=True, type=YEARS)
@click.option("--config", "arch", type=click.Choice(["small", "full", "custom"]), default="small",
              show_default=True, help="STSR-Seg size; custom = small with the widths below.")
@click.option("--sr-features", type=int, help="EDSR features (custom).")
@click.option("--sr-blocks", type=int, help="EDSR residual blocks (custom).")
@click.option("--encoder-width", type=int, help="ResNet-D width (custom).")
@click.option("--steps", default=3000, show_default=True)
@click.option("--batch-hr", default=32, show_default=True, help="High-resolution pairs per step (paper: 32).")
@click.option("--batch-lr", default=48, show_default=True, help="Low-resolution pairs per step (paper: 48).")
@click.option("--lr", default=1.5e-4, show_default=True, help="Adam learning rate (paper: 1.5e-4).")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True)
@click.option("--warmup", default=0, show_default=True, help="Steps of linear warm-up.")
@click.option("--loss-weights", default="200:1:5", show_default=True,
              help="α:φ:ω of Eq. 7 for HR:TC:SG (paper: 200:1:5).")
@click.option("--sg-mean", default=0.44, show_default=True, help="μ of the SG loss's reference Gaussian.")
@click.option("--sg-std", default=0.01, show_default=True, help="σ of the SG loss's reference Gaussian.")
@click.option("--sg-from-scenes", is_flag=True, help="Measure μ and σ on the training scenes' reference pairs "
              "(the paper's §4.3 alternative) instead of --sg-mean/--sg-std.")
@click.option("--seed", default=0, show_default=True, help="Seeds the weights and the window sampler.")
@click.option("--threads", default=2, show_default=True, help="torch CPU threads.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 … (auto: cuda if present).")
@click.option("--log-every", default=100, show_default=True)
@click.option("--checkpoint-every", default=250, show_default=True, help="Steps between resumable states.")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="UGS: crops per step (paper: 8).")
@click.option("--crop", type=click.IntRange(min=64), default=256, show_default=True,
              help="UGS: crop side in pixels, a multiple of 32 (paper: 512).")
def train(product: str, out: str, scenes_dir: str, train_seeds: str, train_bounds: tuple[str, ...], eval_seed: int,
          eval_bounds: str, years: list[int], arch: str, sr_features: int | None, sr_blocks: int | None,
          encoder_width: int | None, steps: int, batch_hr: int, batch_lr: int, lr: float, schedule: str, warmup: int,
          loss_weights: str, sg_mean: float, sg_std: float, sg_from_scenes: bool, seed: int, threads: int,
          device: str, log_every: int, checkpoint_every: int, batch: int, crop: int) -> None:
    """Train the product's model on synthetic scenes and write a checkpoint: STSR-Seg (cbra) with the paper's
    HR, TC and SG losses, or UGSNet (ugs) with Dice + point CE.

    Interrupted, the same command goes on from its last saved state.
    """
    import dataclasses
    import shlex

    try:
        architecture = load_product(product).model.architecture
    except _INPUT_ERRORS as exc:
        _fail(exc)
    if architecture == "ugsnet":
        _train_ugs(out=out, scenes_dir=scenes_dir, train_seeds=train_seeds, train_bounds=train_bounds,
                   eval_seed=eval_seed, eval_bounds=eval_bounds, years=years, arch=arch, steps=steps, lr=lr,
                   seed=seed, threads=threads, device=device, log_every=log_every,
                   checkpoint_every=checkpoint_every, batch=batch, crop=crop)
        return

    from mapgen.models import LossConfig
    from mapgen.training import TrainConfig, TrainingError, rooftop_share_in_built, scenes_from_seeds
    from mapgen.training import train as run_training
    from mapgen.training.options import model_config as configure
    from mapgen.training.options import train_device
    from mapgen.training.scenes import ensure_scene

    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    try:
        load_product(product)
        hr_w, tc_w, sg_w = LossConfig.parse_weights(loss_weights)
        device = train_device(device)
        model_config = configure(arch, sr_features=sr_features, sr_blocks=sr_blocks, encoder_width=encoder_width)
        config = TrainConfig(
            steps=steps, batch_hr=batch_hr, batch_lr=batch_lr, lr=lr, schedule=schedule, warmup=warmup, seed=seed,
            loss=LossConfig(hr_weight=hr_w, tc_weight=tc_w, sg_weight=sg_w, sg_mean=sg_mean, sg_std=sg_std),
            log_every=log_every, checkpoint_every=checkpoint_every, device=device, threads=threads)
        root = Path(scenes_dir)
        train_dirs = scenes_from_seeds(root, _seeds(train_seeds), years,
                                       bounds=[_bounds(b) for b in train_bounds], log=log)
        eval_dir = ensure_scene(root / f"eval-{eval_seed}", _bounds(eval_bounds), years, eval_seed, 128, log)
        if sg_from_scenes:
            mean, std = rooftop_share_in_built(train_dirs)
            log(f"SG reference from the training scenes: μ {mean:.4f}, σ {std:.4f}")
            config = dataclasses.replace(config, loss=dataclasses.replace(config.loss, sg_mean=mean, sg_std=std))
    except (*_INPUT_ERRORS, TrainingError, click.BadParameter) as exc:
        _fail(exc)
    command = shlex.join(["mapgen", "train", *sys.argv[2:]])
    try:
        run_training(train_dirs, out, model_config=model_config, config=config, eval_scene_dir=eval_dir,
                     product=product, command=command, log=log)
    except TrainingError as exc:
        _fail(exc)


_STSR_ONLY = ("sr_features", "sr_blocks", "encoder_width", "batch_hr", "batch_lr", "schedule", "warmup",
              "loss_weights", "sg_mean", "sg_std", "sg_from_scenes")
_UGS_ONLY = ("batch", "crop")


def _given(*names: str) -> list[str]:
    """The options among `names` typed on the command line (not left at their defaults)."""
    ctx = click.get_current_context()
    return [f"--{n.replace('_', '-')}" for n in names
            if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]


def _train_ugs(*, out: str, scenes_dir: str, train_seeds: str, train_bounds: tuple[str, ...], eval_seed: int,
               eval_bounds: str, years: list[int], arch: str, steps: int, lr: float, seed: int, threads: int,
               device: str, log_every: int, checkpoint_every: int, batch: int, crop: int) -> None:
    """`mapgen train --product ugs`: the library's defaults (cities, date, steps, rate) unless typed."""
    import shlex

    from mapgen.models.ugsnet import UGSNetConfig
    from mapgen.training import TrainingError
    from mapgen.training.options import train_device
    from mapgen.training.ugs import (
        DEFAULT_EVAL_BOUNDS,
        CropConfig,
        UGSTrainConfig,
        ensure_ugs_scene,
        train_ugs,
        ugs_scenes_from_seeds,
    )

    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    stray = _given(*_STSR_ONLY)
    if stray:
        _fail(ValueError(f"{', '.join(stray)}: STSR-Seg's (cbra) training options; UGSNet's are --steps, --batch, "
                         "--crop, --lr, --seed"))
    if arch == "custom":
        _fail(ValueError("--config custom: UGSNet comes in small and full"))
    defaults = UGSTrainConfig()
    typed = set(_given("steps", "lr", "train_seeds", "eval_seed", "eval_bounds", "years"))
    try:
        if "--years" in typed and len(years) != 1:
            raise ValueError(f"--years {','.join(map(str, years))}: UGS scenes have one date; give one year")
        date = str(years[0]) if "--years" in typed else "2021"
        config = UGSTrainConfig(steps=steps if "--steps" in typed else defaults.steps, batch=batch,
                                lr=lr if "--lr" in typed else defaults.lr, seed=seed,
                                crops=CropConfig(size=crop), log_every=log_every if _given("log_every") else 50,
                                checkpoint_every=checkpoint_every if _given("checkpoint_every") else 100,
                                device=train_device(device), threads=threads)
        if crop % 32:
            raise ValueError(f"--crop {crop}: give a multiple of 32 (UGSNet's coarse map is 1/4, its layer4 1/16)")
        root = Path(scenes_dir)
        seeds = _seeds(train_seeds) if "--train-seeds" in typed else [201, 202, 203, 204, 205, 206]
        train_dirs = ugs_scenes_from_seeds(root, seeds, bounds=[_bounds(b) for b in train_bounds], date=date,
                                           log=log)
        held_out = eval_seed if "--eval-seed" in typed else 299
        eval_dir = ensure_ugs_scene(root / f"ugs-eval-{held_out}",
                                    _bounds(eval_bounds) if "--eval-bounds" in typed else DEFAULT_EVAL_BOUNDS,
                                    date, held_out, log=log)
        model_config = UGSNetConfig.full() if arch == "full" else UGSNetConfig.small()
    except (*_INPUT_ERRORS, TrainingError, click.BadParameter) as exc:
        _fail(exc)
    command = shlex.join(["mapgen", "train", *sys.argv[2:]])
    try:
        train_ugs(train_dirs, out, model_config=model_config, config=config, eval_scene_dir=eval_dir,
                  command=command, log=log)
    except TrainingError as exc:
        _fail(exc)


@main.command()
@click.option("--product", default="ugs", show_default=True, help="Product whose model to adapt.")
@click.option("--region", required=True, type=click.Path(dir_okay=False), help="The city (a vector file).")
@click.option("--source", required=True, help="The city's own imagery (any --source of mapgen run).")
@click.option("--years", required=True, type=YEARS, help="The imagery's date (one year).")
@click.option("--region-name", default=None, help="The city's name (default: the region file's).")
@click.option("--checkpoint", default=None, help="Checkpoint to adapt (default: the product's).")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Checkpoint to write (default: the "
              "product's adapted name in the first checkpoint folder, where mapgen run finds it).")
@click.option("--scenes-dir", required=True, type=click.Path(file_okay=False),
              help="The labelled source scenes (the training cities; made from their seeds if missing).")
@click.option("--train-seeds", default="201,202,203,204,205,206", show_default=True)
@click.option("--steps", default=500, show_default=True, help="Iterations (paper: 10,000).")
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True, help="Paper: 2.")
@click.option("--crop", type=click.IntRange(min=64), default=256, show_default=True)
@click.option("--lr", default=1e-4, show_default=True, help="Adam rate of G and D (paper: 1e-4).")
@click.option("--adv-weight", default=1.0, show_default=True, help="λ of L_adv in L_G (paper: 1).")
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", default=2, show_default=True, help="torch CPU threads.")
@click.option("--device", default="auto", show_default=True)
def adapt(product: str, region: str, source: str, years: list[int], region_name: str | None, checkpoint: str | None,
          out: str | None, scenes_dir: str, train_seeds: str, steps: int, batch: int, crop: int, lr: float,
          adv_weight: float, seed: int, threads: int, device: str) -> None:
    """Adapt the product's model to one city by adversarial training on the city's own imagery (UGS-1m §4.2);
    write the city's checkpoint, which mapgen run then uses for that city."""
    import shlex

    from mapgen.pipeline.checkpoints import resolve_checkpoint, user_dirs
    from mapgen.training import TrainingError
    from mapgen.training.options import train_device
    from mapgen.training.ugs import AdaptConfig, CropConfig, adapt_ugs, ugs_scenes_from_seeds

    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    try:
        spec = load_product(product)
        if not spec.model.adapted:
            raise ValueError(f"{product}: the product has no checkpoints per region ([model] adapted) to make")
        if len(years) != 1:
            raise ValueError(f"--years {','.join(map(str, years))}: give the one date of the city's imagery")
        geometry = load_region(region)
        name = _region_name(region, region_name)
        base, _ = resolve_checkpoint(checkpoint or spec.model.checkpoint, spec.model.architecture)
        target = Path(out) if out else user_dirs()[0] / f"{spec.model.adapted.format(region=name)}.safetensors"
        config = AdaptConfig(steps=steps, batch=batch, lr=lr, adv_weight=adv_weight, seed=seed,
                             crops=CropConfig(size=crop), device=train_device(device), threads=threads)
        scenes = ugs_scenes_from_seeds(Path(scenes_dir), _seeds(train_seeds), log=log)  # the training cities
        command = shlex.join(["mapgen", "adapt", *sys.argv[2:]])
        adapt_ugs(base, scenes, source, str(years[0]), geometry, name, target, config=config, command=command,
                  log=log)
    except (*_INPUT_ERRORS, TrainingError, click.BadParameter) as exc:
        _fail(exc)
    click.echo(f"mapgen run --product {product} --region {region} uses it for {name}", err=True)


@main.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--reference", required=True, help="Ground truth: a raster or vector file; {year} in the path "
              "gives one per year (e.g. scene/{year}/rooftops.tif).")
@click.option("--years", type=YEARS, default=None, help="Years to evaluate (default: all of the run's).")
@click.option("--compare", default=None, help="Another product (raster/vector, {year} allowed) for the R² of "
              "foreground fractions (default: the reference).")
@click.option("--cell", "cell_deg", default=0.1, show_default=True, help="Cell of the R² grid, in degrees.")
@click.option("--source", default=None, help="The run's input source: adds the model's F1 on isolated windows.")
@click.option("--checkpoint", default=None, help="Checkpoint for the window level (default: the product's).")
@click.option("--threads", default=2, show_default=True, help="torch CPU threads for the window level.")
@click.option("--json", "as_json", is_flag=True, help="Print the evaluation as JSON.")
def evaluate(out: str, reference: str, years: list[int] | None, compare: str | None, cell_deg: float,
             source: str | None, checkpoint: str | None, threads: int, as_json: bool) -> None:
    """Accuracy of a finished run's maps: Table 2 metrics per year, flicker before and after the vote,
    R² of foreground fractions, and (with --source) window level against map level."""
    from tqdm import tqdm  # noqa: I001

    from mapgen.pipeline.evaluate import EvaluationError, evaluate_run

    bars = []  # made on the first block, so that a refusal prints its line alone

    def on_progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="block", file=sys.stderr, dynamic_ncols=True, disable=as_json))
        bars[0].update(done - bars[0].n)

    try:
        result = evaluate_run(out, reference, years=years, compare=compare, cell_deg=cell_deg, source=source,
                              checkpoint=checkpoint, threads=threads, progress=on_progress)
    except (*_INPUT_ERRORS, EvaluationError) as exc:
        _fail(exc)
    finally:
        for bar in bars:
            bar.close()
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.table())


@main.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--zones", required=True, type=click.Path(dir_okay=False),
              help="Polygons to sum over (provinces, counties, …): any vector file, any CRS.")
@click.option("--field", default=None, help="The zones' name field (default: 'name', else the feature number).")
@click.option("--to", "folder", default=None, type=click.Path(file_okay=False),
              help="Folder for areas.csv, areas.parquet and charts/ (default: OUT/stats/{zones file's stem}).")
def stats(out: str, zones: str, field: str | None, folder: str | None) -> None:
    """Area per class per zone per date of a finished run (km² on the ellipsoid): prints the table and
    writes it as CSV and Parquet, with a chart per zone of the area over time (PNG and SVG)."""
    from mapgen.pipeline.stats import StatsError, run_stats, summary

    try:
        table, product, written = run_stats(out, zones, field=field, folder=folder)
    except (*_INPUT_ERRORS, StatsError) as exc:
        _fail(exc)
    click.echo(summary(table, product))
    click.echo(f"\nwrote {len(written)} file(s) to {written[0].parent}: areas.csv, areas.parquet, "
               f"{len(written) - 2} chart file(s) in charts/")


@main.command()
def products() -> None:
    """List the products mapgen knows."""
    from mapgen.workflows import product_names

    for name in product_names():
        spec = load_product(name)
        click.echo(f"{name:8s} {spec.title}")


@main.group()
def workflow() -> None:
    """Scheduled jobs: a TOML file (workflows/jobs/) says what a recurring run makes and where."""


@workflow.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
def workflow_show(file: str) -> None:
    """Print the `mapgen run` command a job file stands for today."""
    from mapgen.workflows import load_job

    try:
        job = load_job(file)
    except _INPUT_ERRORS as exc:
        _fail(exc)
    click.echo(job.command())


@workflow.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def workflow_run(file: str, extra: tuple[str, ...]) -> None:
    """Run a job file (resumable: run again, it goes on where it stopped). Options after FILE are passed to
    `mapgen run` and override the file's, e.g. --scheduler tcp://host:8786."""
    from mapgen.workflows import load_job

    try:
        job = load_job(file)
    except _INPUT_ERRORS as exc:
        _fail(exc)
    click.echo(f"mapgen: job {job.name}: {job.command()} {' '.join(extra)}".rstrip(), err=True)
    # the job's options, then those given after FILE, parsed as `mapgen run` parses its own; then the run
    with run.make_context("mapgen run", [*job.argv, *extra]) as run_ctx:
        _run(**run_ctx.params)


@main.command()
@click.option("--cluster-config", default=None, type=click.Path(dir_okay=False),
              help="A settings file to merge over the defaults first.")
@click.option("--kubernetes-spec", is_flag=True, help="Print the DaskCluster resource the kubernetes cluster "
              "would be made of instead.")
def config(cluster_config: str | None, kubernetes_spec: bool) -> None:
    """Print the cluster settings in force (Dask configuration, `mapgen.*`), as YAML."""
    import dask.config
    import yaml

    from mapgen.pipeline.cluster import DEFAULTS, ClusterError, check_settings, kubernetes_cluster_spec, load_config

    try:
        if cluster_config:
            load_config(cluster_config)
        check_settings()
        data = kubernetes_cluster_spec() if kubernetes_spec else {"mapgen": dask.config.get("mapgen")}
    except ClusterError as exc:
        _fail(exc)
    if not kubernetes_spec:
        click.echo(f"# defaults: {DEFAULTS}; overrides: --cluster-config, ~/.config/dask/*.yaml, DASK_MAPGEN__*")
    click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
