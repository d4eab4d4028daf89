"""What every task of a run needs to know, resolved once on the client and shipped to the workers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from pyproj import CRS
from pyproj.exceptions import CRSError

from mapgen.models.contract import ModelMeta
from mapgen.tiles import Grid, TileScheme
from mapgen.tiles.scheme import TileSchemeError
from mapgen.workflows import OutputSpec, Product
from mapgen.workflows.dates import is_year, pair_key

from .inference import ModelRef
from .runfolder import SCRATCH
from .sources import Inputs
from .windows import WindowLattice


def lattice_crs(product: Product) -> str:
    """The product's [grid] crs, which must be geographic in degrees (the lattice is anchored at −180°, 90°):
    EPSG:4326 (WGS 84), EPSG:4490 (CGCS2000, China's own) and the like."""
    text = product.grid.crs
    try:
        crs = CRS.from_user_input(text)
    except CRSError:
        raise TileSchemeError(f"{product.source_file}: [grid] crs = {text!r} is not a CRS GDAL knows") from None
    if not crs.is_geographic or crs.axis_info[0].unit_name != "degree":
        raise TileSchemeError(f"{product.source_file}: [grid] crs = {text!r} must be geographic in degrees "
                              "(e.g. EPSG:4326 or EPSG:4490): the lattice is anchored at −180°, 90°")
    return text


def tile_scheme(product: Product, block_size: str | float | None = None) -> TileScheme:
    """The product's output tiling; `block_size` overrides the processing block (degrees). Refuses in one
    line (TileSchemeError) a grid or block size that cannot cut the lattice, naming where it came from."""
    g = product.grid
    crs = lattice_crs(product)
    try:
        scheme = TileScheme.create(input_res=g.input_resolution, scale=g.scale, tile_size=g.tile_size,
                                   block_size=g.block_size, naming=g.naming, kind=g.kind)
    except ValueError as exc:
        raise TileSchemeError(f"{product.source_file}: [grid] {exc}") from None
    if crs != scheme.input_grid.crs:
        scheme = replace(scheme, input_grid=Grid(scheme.input_grid.res, crs))
    if block_size is None:
        return scheme
    try:
        return scheme.with_block_size(block_size)
    except ValueError as exc:  # the override comes from the command line (mapgen run/plan/fetch)
        raise TileSchemeError(f"--block-size {block_size}: {exc}; {product.name}'s own is {g.block_size}") from None


def output_labels(output: OutputSpec, dates: tuple[str, ...]) -> tuple[str, ...]:
    """The maps an output has in a run: one per date, or one per pair of consecutive dates ('2018_2020')."""
    if output.per == "pair":
        return tuple(pair_key(a, b) for a, b in zip(dates, dates[1:], strict=False))
    return dates


def date_groups(frames: int | None, dates: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The dates the model sees together: each date alone (frames = 1) or all of them (None)."""
    return tuple((d,) for d in dates) if frames == 1 else (dates,)


def group_key(group: tuple[str, ...]) -> str:
    return group[0] if len(group) == 1 else pair_key(group[0], group[-1])


@dataclass(frozen=True)
class RunContext:
    product: Product
    scheme: TileScheme
    inputs: Inputs
    model: ModelRef
    dates: tuple[str, ...]
    run_dir: str
    out_dir: str
    store_path: str
    store_extent: tuple[int, int, int, int]  # output-grid box of the run store
    batch: int = 64  # windows per forward pass
    frames: int | None = 1  # the model's: dates it sees at once
    model_inputs: tuple[str, ...] = ("image",)  # the model's input names
    model_heads: tuple[str, ...] = ("seg",)  # the model's head names
    region_name: str = ""
    coverage: dict[str, dict] | None = None  # share of the region with data, per input and date
    warnings: tuple[str, ...] = ()

    @property
    def lattice(self) -> WindowLattice:
        return WindowLattice(self.product.window.size, self.product.window.stride)

    @property
    def years(self) -> tuple[int, ...]:
        """The dates as years, for an annual run."""
        return tuple(int(d) for d in self.dates)

    @property
    def annual(self) -> bool:
        return all(is_year(d) for d in self.dates)

    @property
    def groups(self) -> tuple[tuple[str, ...], ...]:
        return date_groups(self.frames, self.dates)

    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        return self.product.outputs

    def head(self, output: OutputSpec) -> str:
        """The model head an output is made from (the only one, unless the product names it)."""
        return output.head or self.model_heads[0]

    def labels(self, output: OutputSpec) -> tuple[str, ...]:
        return output_labels(output, self.dates)

    @cached_property
    def meta(self) -> ModelMeta:
        p = self.product
        return ModelMeta(bands={i.name: i.bands for i in p.image_inputs},
                         wavelengths={i.name: i.wavelengths for i in p.image_inputs},
                         gsd={i.name: i.gsd for i in p.image_inputs},
                         dates={},  # per group of dates: `group_windows` fills it in
                         task=p.task.kind if p.task else None, classes=p.task.classes if p.task else ())

    @property
    def scratch_dir(self) -> Path:
        """Where the run's writers keep their temporaries: inside the run folder (so never taken for an
        output, swept on resume) and on the same file system as the tiles (so a rename publishes one)."""
        return Path(self.run_dir) / SCRATCH

    def tile_name(self, tile_row: int, tile_col: int, label: str, output: OutputSpec | None = None) -> str:
        output = output or self.product.output
        scheme = self.scheme.with_naming(output.naming) if output.naming else self.scheme
        if output.per == "pair":
            first, second = label.split("_")
            return scheme.tile_name(tile_row, tile_col, pair=(first, second))
        return scheme.tile_name(tile_row, tile_col, int(label) if is_year(label) else label)

    def tile_path(self, tile_row: int, tile_col: int, label: str | int, output: OutputSpec | None = None) -> Path:
        return Path(self.out_dir) / self.tile_name(tile_row, tile_col, str(label), output)

    def vrt_path(self, label: str | int, output: OutputSpec | None = None) -> Path:
        return Path(self.out_dir) / mosaic_name(self.product, output or self.product.output, str(label),
                                                self.region_name)


def mosaic_name(product: Product, output: OutputSpec, label: str, region_name: str = "") -> str:
    """The file name of an output's mosaic (VRT) of one date or pair: the output's `mosaic` template, else
    `{PRODUCT}[_{OUTPUT}]_{label}.vrt`."""
    if output.mosaic:
        first, _, second = label.partition("_")
        return output.mosaic.format(year=label[:4], date=label, region=region_name,
                                    **({"from": first, "to": second} if second else {}))
    stem = product.name.upper() + (f"_{output.name.upper()}" if len(product.outputs) > 1 else "")
    return f"{stem}_{label}.vrt"


def uses_region_name(product: Product) -> bool:
    """Whether the region's name shapes a run of `product` (a checkpoint per region, mosaics named after it)."""
    model = product.model
    return any("{region}" in t for t in (model.checkpoint, model.adapted or "",
                                         *(o.mosaic or "" for o in product.outputs)))
