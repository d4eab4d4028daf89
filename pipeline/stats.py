"""`mapgen stats`: the area of each class in each zone on each date of a finished run.

Zones are polygons of any vector file in any CRS (provinces, counties, …). exactextract gives each map
cell's coverage fraction by a zone; each cell weighs its area on the ellipsoid of the map's CRS (the
output grid is geographic, so a cell's area shrinks with its latitude: one row of cells, one area, from
`pyproj.Geod`), and a class's area in a zone is the sum of coverage × cell area over its cells. No-data
cells are counted as the class "no data", never as background, and a zone's part outside the maps shows
as the difference between its `zone_km2` and the sum of its rows.

The maps are read per zone, in windows of at most `max_cells` cells (exactextract's own reading), so a
national run is never held in memory.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from exactextract.raster import RasterioRasterSource, RasterSource
from pyproj import CRS, Geod

from mapgen.files import write_bytes
from mapgen.workflows import OutputClass, OutputSpec, Product

from .classes import BACKGROUND
from .context import mosaic_name, output_labels
from .identity import definition_digest, definition_product
from .runfolder import MANIFEST, REPORT, RUN_DIR, SCRATCH

if TYPE_CHECKING:
    import geopandas
    import pandas

NO_DATA = "no data"  # the class name of no-data cells in the table
COLUMNS = ["zone", "output", "date", "class", "value", "area_km2", "share", "zone_km2"]
# Projected zones are densified to this length (metres) before they are reprojected: an edge straight in
# its own CRS is a curve on the map's grid, and a 1 km chord of that curve is off by far less than a cell.
DENSIFY_M = 1000.0
EDGE_DEG = 0.01  # the longest piece of parallel a cell's area is computed with (see `CellAreas.row_area`)


class StatsError(ValueError):
    """Statistics that cannot be computed: one line saying what and where."""


# --------------------------------------------------------------------------------------------------
# A finished run: its product (as the run had it), dates and mosaics


@dataclass(frozen=True)
class RunMaps:
    """The published maps of a finished run: one mosaic (VRT) per output and date (or pair of dates)."""

    out_dir: Path
    product: Product  # as the run's manifest defines it, whatever the product files say today
    dates: tuple[str, ...]
    region_name: str = ""

    @classmethod
    def open(cls, out_dir: str | Path) -> RunMaps:
        """The maps of the run in `out_dir`; StatsError unless the run there finished and its mosaics exist."""
        out_dir = Path(out_dir)
        run_dir = out_dir / RUN_DIR
        manifest_path, report_path = run_dir / MANIFEST, run_dir / REPORT
        if not manifest_path.is_file():
            raise StatsError(f"{out_dir}: not a mapgen run folder (no {RUN_DIR}/{MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text())
            definition = manifest["product"]["definition"]
            if definition_digest(definition) != manifest["product"]["sha256"]:
                raise ValueError("its product definition does not match its sha256")
            product = definition_product(definition)
            dates = tuple(str(d) for d in manifest["dates"])
            region_name = str(manifest.get("region_name", ""))
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not the manifest mapgen run writes
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0]}" if str(exc) else type(exc).__name__
            raise StatsError(f"{manifest_path}: not a mapgen run manifest ({reason})") from None
        try:
            status = json.loads(report_path.read_text()).get("status", "?")
        except (OSError, ValueError, AttributeError):
            raise StatsError(f"{out_dir}: the run is not finished (no readable {RUN_DIR}/{REPORT}); "
                             "run `mapgen run` there to the end first") from None
        if status != "finished":
            raise StatsError(f"{out_dir}: the run is not finished ({RUN_DIR}/{REPORT} says {status}); "
                             "run `mapgen run` there again to finish it")
        maps = cls(out_dir, product, dates, region_name)
        missing = [path for _, _, path in maps.mosaics() if not path.is_file()]
        if missing:
            raise StatsError(f"{out_dir}: the run is not finished ({missing[0]} is missing)")
        return maps

    def mosaics(self) -> list[tuple[OutputSpec, str, Path]]:
        """(output, label, VRT path) of every map of the run, in output then date order."""
        return [(output, label, self.out_dir / mosaic_name(self.product, output, label, self.region_name))
                for output in self.product.outputs for label in output_labels(output, self.dates)]


def output_name(product: Product, output: OutputSpec) -> str:
    """What the table calls an output: its name, or the product's for a product's only output."""
    return output.name or product.name


# --------------------------------------------------------------------------------------------------
# Rasters as exactextract reads them


class _AllValues(RasterioRasterSource):
    """A map band with every value kept, its nodata value included: no-data cells are counted (as
    "no data"), not left out of the sums as exactextract leaves out masked cells."""

    def nodata_value(self):
        return None

    def read_window(self, x0, y0, nx, ny):
        from rasterio.windows import Window

        return self.ds.read(self.band_idx, window=Window(x0, y0, nx, ny))


class CellAreas(RasterSource):
    """The area (m²) of each cell of a geographic raster on its CRS's ellipsoid: the weights of the sums.

    Every cell of a row has the same area, computed once per row."""

    def __init__(self, ds: rasterio.DatasetReader, name: str = "cell_area") -> None:
        super().__init__()
        crs = CRS.from_wkt(ds.crs.wkt)
        if not crs.is_geographic:  # mapgen's grids are; a projected map would need areas per cell, not per row
            raise StatsError(f"{ds.name}: its CRS {crs.name} is not geographic; mapgen's maps are in degrees")
        self.ds = ds
        self.geod: Geod = crs.get_geod()
        t = ds.transform
        self.west, self.dx, self.north, self.dy = t.c, t.a, t.f, t.e
        self.rows: dict[int, float] = {}
        self.set_name(name)

    def res(self):
        return RasterioRasterSource.res(self)

    def extent(self):
        return RasterioRasterSource.extent(self)

    def srs_wkt(self):
        return self.ds.crs.wkt

    def nodata_value(self):
        return None

    def row_area(self, row: int) -> float:
        if row not in self.rows:
            top = self.north + row * self.dy
            bottom = top + self.dy
            # the cell's top and bottom follow parallels, which geodesics between its corners cut short: edges
            # of at most EDGE_DEG keep the difference below 1e-8 of the area (5e-5 for a 1° cell undivided)
            lons = np.linspace(self.west, self.west + self.dx, math.ceil(abs(self.dx) / EDGE_DEG) + 1)
            area, _ = self.geod.polygon_area_perimeter(np.concatenate([lons, lons[::-1]]),
                                                       np.concatenate([np.full(lons.size, bottom),
                                                                       np.full(lons.size, top)]))
            self.rows[row] = abs(area)
        return self.rows[row]

    def read_window(self, x0, y0, nx, ny):
        column = np.array([self.row_area(y0 + i) for i in range(ny)], dtype=np.float64)
        return np.repeat(column[:, None], nx, axis=1)


# --------------------------------------------------------------------------------------------------
# Zones


def read_zones(path: str | Path, field: str | None, crs: CRS) -> geopandas.GeoDataFrame:
    """The zones of a vector file as a GeoDataFrame with a `zone` column (the `field`'s value; default the
    `name` field, else the feature number from 1), one row per zone (features of one name dissolved), in
    `crs`. A file without a CRS is taken as EPSG:4326, as GeoJSON is by definition."""
    import geopandas

    path = Path(path)
    if not path.exists():
        raise StatsError(f"zones {path}: no such file")
    try:
        frame = geopandas.read_file(path)
    except Exception as exc:  # noqa: BLE001 - pyogrio's errors share no base class
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StatsError(f"zones {path}: cannot be read as a vector file ({reason})") from None
    polygonal = frame.geometry.notna() & frame.geom_type.isin(["Polygon", "MultiPolygon"])
    if frame.empty or not polygonal.any():
        raise StatsError(f"zones {path}: the file holds no polygons")
    if not polygonal.all():
        first = int(np.flatnonzero(~polygonal.to_numpy())[0])
        kind = frame.geom_type.iloc[first] if frame.geometry.iloc[first] is not None else "no geometry"
        raise StatsError(f"zones {path}: feature {first} is not a polygon ({kind}); zones are polygons")
    invalid = np.flatnonzero(~frame.geometry.is_valid.to_numpy())
    if invalid.size:
        from shapely.validation import explain_validity

        raise StatsError(f"zones {path}: feature {invalid[0]} has an invalid geometry "
                         f"({explain_validity(frame.geometry.iloc[invalid[0]])})")
    if field is None:
        names = frame["name"] if "name" in frame.columns else [str(i + 1) for i in range(len(frame))]
    elif field not in frame.columns or field == frame.geometry.name:
        fields = [c for c in frame.columns if c != frame.geometry.name]
        raise StatsError(f"zones {path}: no field {field!r}; its fields are {', '.join(fields) or '(none)'}")
    else:
        names = frame[field]
    missing = np.flatnonzero(frame.assign(zone=names)["zone"].isna().to_numpy())
    if missing.size:
        raise StatsError(f"zones {path}: feature {missing[0]} has no {field or 'name'}; every zone needs a name")
    frame = geopandas.GeoDataFrame({"zone": [str(n) for n in names]}, geometry=list(frame.geometry),
                                   crs=frame.crs or "EPSG:4326")
    if frame.crs.is_projected:
        metres = frame.crs.axis_info[0].unit_conversion_factor
        frame = frame.set_geometry(frame.geometry.segmentize(DENSIFY_M / metres))
    return frame.to_crs(crs).dissolve(by="zone", sort=False, as_index=False)[["zone", "geometry"]]


def zone_areas_km2(zones: geopandas.GeoDataFrame, crs: CRS) -> list[float]:
    """Each zone's area on the ellipsoid of `crs` (the zones in it), km²."""
    import shapely

    geod = crs.get_geod()
    # Geod counts an exterior ring counter-clockwise and a hole clockwise as positive and negative areas
    return [geod.geometry_area_perimeter(g)[0] / 1e6 for g in shapely.orient_polygons(zones.geometry.to_numpy())]


# --------------------------------------------------------------------------------------------------
# The table


def value_areas(paths: Sequence[str | Path], zones: geopandas.GeoDataFrame, *,
                max_cells: int = 30_000_000) -> list[dict[str, tuple[float, dict[int, float]]]]:
    """For each raster (one band, a geographic CRS) and zone (`read_zones`: a `zone` column, the rasters'
    CRS): the zone's area within the raster and the area of each pixel value there, in m² on the CRS's
    ellipsoid; no-data values are values like the others. exactextract reads the rasters in windows of
    at most `max_cells` cells."""
    from exactextract import exact_extract
    from exactextract.operation import Operation

    datasets = [rasterio.open(path) for path in paths]
    try:
        # one cell-area raster per grid (the VRTs of a run share theirs), its sum the zone's area in the maps
        areas: dict[tuple, CellAreas] = {}
        ops, rasters, totals = [], [], []
        for i, ds in enumerate(datasets):
            key = (tuple(ds.transform), ds.shape, ds.crs.wkt)
            if key not in areas:
                areas[key] = CellAreas(ds, name=f"cell_area_{len(areas)}")
                rasters.append(areas[key])
                ops.append(Operation("sum", f"total_{len(areas) - 1}", areas[key]))
            totals.append(f"total_{list(areas).index(key)}")
            values = _AllValues(ds, name=f"map_{i}")
            rasters.append(values)
            ops += [Operation("unique", f"unique_{i}", values, areas[key]),
                    Operation("weighted_frac", f"frac_{i}", values, areas[key])]
        # a zone at a time (memory bounded by max_cells; on the demo 18.5 s against 23.2 s raster-sequential)
        result = exact_extract(rasters, zones[["zone", "geometry"]], ops, include_cols=["zone"], output="pandas",
                               strategy="feature-sequential", max_cells_in_memory=max_cells)
    finally:
        for ds in datasets:
            ds.close()
    found: list[dict[str, tuple[float, dict[int, float]]]] = [{} for _ in datasets]
    for _, row in result.iterrows():
        for i in range(len(datasets)):
            total = float(row[totals[i]]) if np.isfinite(row[totals[i]]) else 0.0
            fractions = zip(np.atleast_1d(row[f"unique_{i}"]), np.atleast_1d(row[f"frac_{i}"]), strict=True)
            found[i][row["zone"]] = (total, {int(v): float(f) * total for v, f in fractions})
    return found


def zonal_areas(run: RunMaps | str | Path, zones_path: str | Path, *, field: str | None = None,
                max_cells: int = 30_000_000) -> pandas.DataFrame:
    """Area per zone, output, date and class of a finished run (its folder, or its `RunMaps`): a tidy
    DataFrame with the `COLUMNS` zone, output, date, class (a class name or "no data"), value (the pixel
    value), area_km2, share (of the zone's area within the maps, on that date) and zone_km2 (the zone's
    whole area). Every class has a row for every zone and date, 0 where it is absent; a value that names
    no class (there should be none) gets a row of its own, "value N"."""
    import pandas

    maps = run if isinstance(run, RunMaps) else RunMaps.open(run)
    mosaics = maps.mosaics()
    with rasterio.open(mosaics[0][2]) as first:
        crs = CRS.from_wkt(first.crs.wkt)
        bounds = [first.bounds]
    zones = read_zones(zones_path, field, crs)
    _check_overlap(zones, bounds, crs, zones_path)
    zone_km2 = dict(zip(zones["zone"], zone_areas_km2(zones, crs), strict=True))
    found = value_areas([path for _, _, path in mosaics], zones, max_cells=max_cells)
    rows = []
    for zone in zones["zone"]:
        for (output, label, _), by_zone in zip(mosaics, found, strict=True):
            total, by_value = by_zone.get(zone, (0.0, {}))
            named = [(c.name, c.value) for c in output.classes] + [(NO_DATA, output.nodata)]
            known = {value for _, value in named}
            named += [(f"value {v}", v) for v in sorted(by_value) if v not in known]
            for name, value in named:
                area = by_value.get(value, 0.0)
                rows.append((zone, output_name(maps.product, output), label, name, value, area / 1e6,
                             area / total if total else 0.0, zone_km2[zone]))
    return pandas.DataFrame(rows, columns=COLUMNS)


def _check_overlap(zones: geopandas.GeoDataFrame, bounds: Sequence[tuple[float, float, float, float]], crs: CRS,
                   zones_path: str | Path) -> None:
    import shapely

    extent = shapely.union_all([shapely.box(*b) for b in bounds])
    if not zones.geometry.intersects(extent).any():
        west, south, east, north = zones.total_bounds
        raise StatsError(f"zones {zones_path}: none of its {len(zones)} zone(s) (within {west:.4f}, {south:.4f}, "
                         f"{east:.4f}, {north:.4f}) meets the maps "
                         f"({', '.join(f'{v:.4f}' for v in extent.bounds)}, {crs.to_string()})")


# --------------------------------------------------------------------------------------------------
# What `mapgen stats` prints and writes


def foreground_classes(output: OutputSpec) -> list[OutputClass]:
    """The classes a chart shows: all but the background (code 0), i.e. a binary product's foreground."""
    return [c for code, c in enumerate(output.classes) if code != BACKGROUND]


def summary(table: pandas.DataFrame, product: Product) -> str:
    """The table as people read it: per output and non-background class, km² per zone (rows) and date
    (columns), then the share of no data where there is any."""
    blocks = []
    for output in product.outputs:
        part = table[table["output"] == output_name(product, output)]
        shown = [(c.name, f"{c.name} (km²)") for c in foreground_classes(output)] + [(NO_DATA, "no data (%)")]
        for name, title in shown:
            rows = part[part["class"] == name]
            column = "share" if name == NO_DATA else "area_km2"
            if name == NO_DATA and not (rows["share"] > 0).any():
                continue
            pivot = rows.pivot(index="zone", columns="date", values=column).reindex(
                index=list(dict.fromkeys(rows["zone"])), columns=list(dict.fromkeys(rows["date"])))
            pivot = pivot * 100 if name == NO_DATA else pivot
            pivot.index.name, pivot.columns.name = None, None
            head = f"{output_name(product, output)}: {title}"
            blocks.append(head + "\n" + pivot.to_string(float_format=lambda v: f"{v:,.3f}"))
    return "\n\n".join(blocks)


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "zone"


def chart(table: pandas.DataFrame, product: Product, output: OutputSpec, zone: str):
    """A matplotlib Figure (no pyplot, no global state) of the area of each non-background class of
    `output` in `zone` over the run's dates."""
    from matplotlib.figure import Figure

    part = table[(table["zone"] == zone) & (table["output"] == output_name(product, output))]
    dates = list(dict.fromkeys(part["date"]))
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for cls in foreground_classes(output):
        rows = part[part["class"] == cls.name].set_index("date").reindex(dates)
        r, g, b, _ = cls.rgba
        ax.plot(range(len(dates)), rows["area_km2"].to_numpy(), marker="o", color=(r / 255, g / 255, b / 255),
                label=cls.name)
    ax.set_xticks(range(len(dates)), dates, rotation=45 if len(dates) > 8 else 0)
    ax.set_ylabel("area (km²)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"{output.band_description} in {zone}")
    if len(foreground_classes(output)) > 1:
        ax.legend(fontsize="small", ncols=2)
    return fig


def write_stats(table: pandas.DataFrame, product: Product, folder: str | Path, *,
                scratch_dir: str | Path | None = None) -> list[Path]:
    """Write the table as `areas.csv` and `areas.parquet` and one chart per zone and output as
    `charts/{zone}[_{output}].png` and `.svg` into `folder`, each atomically (its temporary in
    `scratch_dir`, default beside it); returns the paths written."""
    folder = Path(folder)
    (folder / "charts").mkdir(parents=True, exist_ok=True)
    written = []

    def publish(path: Path, data: bytes) -> None:
        write_bytes(path, data, scratch_dir=scratch_dir)
        written.append(path)

    publish(folder / "areas.csv", table.to_csv(index=False).encode())
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False, engine="pyarrow")
    publish(folder / "areas.parquet", buffer.getvalue())
    stems: set[str] = set()
    for zone in dict.fromkeys(table["zone"]):
        for output in product.outputs:
            if not foreground_classes(output):
                continue
            stem = _safe(zone) + (f"_{_safe(output_name(product, output))}" if len(product.outputs) > 1 else "")
            stem = next(s for s in (stem, *(f"{stem}_{n}" for n in range(2, len(stems) + 3))) if s not in stems)
            stems.add(stem)
            fig = chart(table, product, output, zone)
            for kind in ("png", "svg"):
                buffer = io.BytesIO()
                fig.savefig(buffer, format=kind, dpi=150)
                publish(folder / "charts" / f"{stem}.{kind}", buffer.getvalue())
    return written


def default_folder(out_dir: str | Path, zones_path: str | Path) -> Path:
    """Where `mapgen stats` writes by default: OUT/stats/{zones file's stem}."""
    return Path(out_dir) / "stats" / _safe(Path(zones_path).stem)


def run_stats(out_dir: str | Path, zones_path: str | Path, *, field: str | None = None,
              folder: str | Path | None = None) -> tuple[pandas.DataFrame, Product, list[Path]]:
    """`mapgen stats`: the table of `zonal_areas`, written by `write_stats` into `folder` (default
    `default_folder`); returns the table, the run's product and the paths written."""
    maps = RunMaps.open(out_dir)
    table, product = zonal_areas(maps, zones_path, field=field), maps.product
    folder = Path(folder) if folder is not None else default_folder(out_dir, zones_path)
    # inside OUT, temporaries go to the run's scratch folder (swept by a resume); elsewhere beside the files
    out_dir = Path(out_dir).resolve()
    inside = folder.resolve().is_relative_to(out_dir)
    scratch = out_dir / RUN_DIR / SCRATCH if inside else None
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    return table, product, write_stats(table, product, folder, scratch_dir=scratch)
