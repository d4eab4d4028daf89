"""What every source is: the pixels of one product input, for any box of the lattice and any year.

A source is resolved and checked on the client, then shipped (pickled) to the workers, which call `read`
for the block + halo they process. Kinds: files (a pattern or a static catalog of yearly rasters), STAC
scenes (yearly median of cloud-masked Sentinel-2 scenes), Earth Engine, and the Zarr cache of
`mapgen fetch`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from shapely.geometry.base import BaseGeometry

from mapgen.tiles import Box, Grid
from mapgen.workflows.product import InputSpec

Bounds = tuple[float, float, float, float]


class SourceError(ValueError):
    """A source that cannot serve the run: one line saying what and where."""


def file_identity(path: str) -> dict:
    """A file's absolute path, size and modification time (a path GDAL reads that is no local file: the path)."""
    local = Path(path)
    try:
        stat = local.stat()
    except OSError:
        return {"path": path}
    return {"path": str(local.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def year_span(years: Sequence[int | str]) -> str:
    """'2016–2021', '2016, 2018', or dates as they are ('2018-08, 2020-08')."""
    years = sorted(years, key=str)
    if not years:
        return "no years"
    if not all(isinstance(y, int) for y in years):
        return ", ".join(map(str, years))
    if years == list(range(years[0], years[-1] + 1)):
        return f"{years[0]}–{years[-1]}" if len(years) > 1 else str(years[0])
    return ", ".join(map(str, years))


def intersects(a: Bounds, b: Bounds) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def covered_fraction(region: Bounds, footprints: Sequence[Bounds]) -> float:
    """Share of the region's bounding box that the union of footprints covers (in degrees², EPSG:4326)."""
    from shapely.geometry import box as shapely_box
    from shapely.ops import unary_union

    area = shapely_box(*region)
    if area.area == 0 or not footprints:
        return 0.0
    union = unary_union([shapely_box(*fp) for fp in footprints])
    return float(union.intersection(area).area / area.area)


class Source(ABC):
    """The pixels of one product input (a layer such as `s2` or `built`)."""

    @property
    @abstractmethod
    def description(self) -> str:
        """What the source is, for messages, the run manifest and the report (never a credential)."""

    def identity(self, years: Sequence[int]) -> dict:
        """What identifies the data this source gives for `years`, cheaply and whatever the working directory
        or the names typed (absolute paths with sizes and mtimes, catalog items, service filters): a resumed
        run whose sources' identities differ is refused. Plain JSON types; never a credential."""
        return {"kind": type(self).__name__, "description": self.description}

    @abstractmethod
    def check(self, spec: InputSpec, years: Sequence[int], bounds: Bounds | BaseGeometry) -> dict[int, float]:
        """Refuse, in one line (SourceError), a source that cannot give `spec`'s bands for every year over
        the region (its polygon in EPSG:4326, or a bounding box west, south, east, north), before any work.
        Returns, per year, the share of the region that has data: of its sampled pixels where the source
        can be sampled cheaply (files, the cache), else of its bounding box under the footprints. A
        `sample.Coverage` may carry warnings about the values (far from the training distribution)."""

    @abstractmethod
    def read(self, spec: InputSpec, year: int, grid: Grid, box: Box) -> np.ndarray:
        """(len(spec.bands), height, width) float32 over `box` on `grid`, in the product's units
        (reflectance, probability), bands in `spec.bands` order; NaN where there is no data."""


@dataclass(frozen=True)
class Inputs:
    """The source of each product input for a run. A mask input may be switched off (`absent`): the
    post step that uses it is then skipped, and the report says so."""

    sources: dict[str, Source] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()  # choices the user should know of (recorded in the report, warned)

    def source(self, layer: str) -> Source:
        try:
            return self.sources[layer]
        except KeyError:
            raise SourceError(f"no source for the '{layer}' input") from None

    def read(self, spec: InputSpec, year: int, grid: Grid, box: Box) -> np.ndarray | None:
        """The layer's pixels, or None when the layer was switched off."""
        if spec.name in self.absent:
            return None
        return self.source(spec.name).read(spec, year, grid, box)

    def identity(self, years: Sequence[int]) -> dict[str, dict]:
        """Each input's `Source.identity` ('none' for one switched off)."""
        out: dict[str, dict] = {name: src.identity(years) for name, src in sorted(self.sources.items())}
        out.update({name: {"kind": "none"} for name in sorted(self.absent)})
        return out

    def describe(self) -> dict[str, str]:
        out = {name: src.description for name, src in sorted(self.sources.items())}
        out.update({name: "none" for name in sorted(self.absent)})
        return out
