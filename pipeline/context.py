"""What every task of a run needs to know, resolved once on the client and shipped to the workers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mapgen.tiles import TileScheme
from mapgen.tiles.scheme import TileSchemeError
from mapgen.workflows import Product

from .inference import ModelRef
from .sources import Inputs
from .windows import WindowLattice

SCRATCH_DIR = "tmp"  # in the run folder: where writers keep their temporaries


def tile_scheme(product: Product, block_size: str | float | None = None) -> TileScheme:
    """The product's output tiling; `block_size` overrides the processing block (degrees). Refuses in one
    line (TileSchemeError) a grid or block size that cannot cut the lattice, naming where it came from."""
    g = product.grid
    try:
        scheme = TileScheme.create(input_res=g.input_resolution, scale=g.scale, tile_size=g.tile_size,
                                   block_size=g.block_size, naming=g.naming)
    except ValueError as exc:
        raise TileSchemeError(f"{product.source_file}: [grid] {exc}") from None
    if block_size is None:
        return scheme
    try:
        return scheme.with_block_size(block_size)
    except ValueError as exc:  # the override comes from the command line (mapgen run/plan/fetch)
        raise TileSchemeError(f"--block-size {block_size}: {exc}; {product.name}'s own is {g.block_size}") from None


@dataclass(frozen=True)
class RunContext:
    product: Product
    scheme: TileScheme
    inputs: Inputs
    model: ModelRef
    years: tuple[int, ...]
    run_dir: str
    out_dir: str
    store_path: str
    store_extent: tuple[int, int, int, int]  # output-grid box of the run store
    batch: int = 64  # windows per forward pass
    coverage: dict[str, dict[int, float]] | None = None  # share of the region with data, per input and year
    warnings: tuple[str, ...] = ()

    @property
    def lattice(self) -> WindowLattice:
        return WindowLattice(self.product.window.size, self.product.window.stride)

    @property
    def scratch_dir(self) -> Path:
        """Where the run's writers keep their temporaries: inside the run folder (so never taken for an
        output, swept on resume) and on the same file system as the tiles (so a rename publishes one)."""
        return Path(self.run_dir) / SCRATCH_DIR

    def tile_path(self, tile_row: int, tile_col: int, year: int) -> Path:
        return Path(self.out_dir) / self.scheme.tile_name(tile_row, tile_col, year)

    def vrt_path(self, year: int) -> Path:
        return Path(self.out_dir) / f"{self.product.name.upper()}_{year}.vrt"
