"""`mapgen evaluate`: the accuracy of a finished run's maps, measured as the papers do (CBRA §4.5, §5.2;
UGS-1m Eq. 7–11).

- The pixel metrics (TP, FP, TN, FN, IoU, OA, precision, recall, F1) per year, per tile (a UGS map frame)
  and overall, against a reference raster (any GDAL raster, warped onto
  the map's grid, > 0 = foreground) or vector polygons (rasterised by rasterio).
- Flicker: the share of pixels whose class changes between consecutive years where the reference does
  not change, before the vote (the run store's per-year classes) and after it (the tiles).
- R² between the foreground fraction of the map and of another product (or the reference) on a
  0.1° grid, as Fig. 15 compares CBRA with CLCD and GAIA.
- Window level against map level: the model on isolated windows (no overlap, no stitching, no mask,
  no vote) beside the finished map, on the same pixels, so that the pipeline can be seen not to lose
  accuracy.

The run is read block by block, so memory does not grow with the region.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from rasterio.enums import Resampling

from mapgen.tiles import Box, Grid, TileScheme
from mapgen.workflows import Product, load_product

from .classes import FOREGROUND, NODATA, lookup_table
from .context import mosaic_name, tile_scheme
from .metrics import Confusion, block_fraction, flicker, r_squared
from .normalise import normalise
from .runfolder import MANIFEST, RUN_DIR, STORE
from .sources.base import SourceError
from .sources.read import read_box
from .sources.vector import VECTOR_SUFFIXES, rasterise, read_polygons


class EvaluationError(ValueError):
    """Evaluation that cannot start; the message is one line."""


# --------------------------------------------------------------------------------------------------
# Layers read onto the map's grid: the reference, or another product


@dataclass(frozen=True)
class Layer:
    """A raster or vector per year: `spec` may hold {year}; without it the same file serves every year."""

    spec: str
    label: str = "reference"

    def path(self, year: int) -> str:
        return self.spec.replace("{year}", str(year))

    @property
    def is_vector(self) -> bool:
        return Path(self.spec).suffix.lower() in VECTOR_SUFFIXES

    def check(self, years: tuple[int, ...]) -> None:
        """Refuse, before any block is read, a file that is missing or that is no raster (or vector file)
        with a coordinate reference system: it would otherwise fail mid-way with a traceback."""
        for year in years:
            path = self.path(year)
            if not Path(path).exists():
                raise EvaluationError(f"{self.label} {path}: no such file (year {year})")
            if not Path(path).is_file():
                raise EvaluationError(f"{self.label} {path}: not a file (year {year})")
            kind = "vector file" if self.is_vector else "raster"
            try:
                if self.is_vector:
                    read_polygons(path)
                    continue
                import rasterio

                with rasterio.open(path) as src:
                    has_crs = src.crs is not None
            except SourceError as exc:
                raise EvaluationError(f"{self.label} {exc}; give a GeoTIFF (or any GDAL raster) or a vector file "
                                      f"({', '.join(sorted(VECTOR_SUFFIXES))})") from None
            except Exception as exc:  # GDAL's errors share no base class
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise EvaluationError(f"{self.label} {path}: cannot be read as a {kind} ({reason}); give a GeoTIFF "
                                      f"(or any GDAL raster) or a vector file ({', '.join(sorted(VECTOR_SUFFIXES))})"
                                      ) from None
            if not has_crs:
                raise EvaluationError(f"{self.label} {path}: the raster has no coordinate reference system, so it "
                                      "cannot be laid on the map")

    def read(self, year: int, grid: Grid, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """(foreground, known) boolean arrays of `box` on `grid`."""
        if self.is_vector:
            return rasterise(read_polygons(self.path(year)), grid, box).astype(bool), np.ones(box.shape, dtype=bool)
        values = read_box(self.path(year), grid, box, resampling=Resampling.nearest)[0]
        known = np.isfinite(values)
        return known & (np.nan_to_num(values) > 0), known


# --------------------------------------------------------------------------------------------------
# A finished run


@dataclass(frozen=True)
class FinishedRun:
    out_dir: Path
    product: Product
    years: tuple[int | str, ...]  # the run's dates (years as int)
    grid: Grid  # output grid
    input_grid: Grid
    scale: int
    extent: Box  # output-grid box of the run store
    chunk: int  # output pixels per block side
    checkpoint_sha256: str
    scheme: TileScheme
    region_name: str = ""

    @classmethod
    def open(cls, out_dir: str | Path) -> FinishedRun:
        out_dir = Path(out_dir)
        manifest_path = out_dir / RUN_DIR / MANIFEST
        if not manifest_path.is_file():
            raise EvaluationError(f"{out_dir}: not a mapgen run folder (no {RUN_DIR}/{MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text())
            product = load_product(manifest["product"]["name"])
            scheme = tile_scheme(product, manifest["block_size"])
            years = tuple(manifest["years"] if "years" in manifest else manifest["dates"])
            region_name = str(manifest.get("region_name", ""))
            sha256 = manifest["checkpoint_sha256"]
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not the manifest mapgen run writes
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0]}" if str(exc) else type(exc).__name__
            raise EvaluationError(f"{manifest_path}: not a mapgen run manifest ({reason})") from None
        store = out_dir / RUN_DIR / STORE
        try:
            attrs = dict(zarr.open_group(str(store), mode="r").attrs)
            extent, chunk = Box(*attrs["extent"]), int(attrs["chunk"])
        except (OSError, KeyError, TypeError, ValueError) as exc:  # zarr's "no group" errors are among these
            raise EvaluationError(f"{out_dir}: the run is not finished (its store {store} cannot be read: "
                                  f"{type(exc).__name__})") from None
        run = cls(out_dir, product, years, scheme.output_grid, scheme.input_grid, scheme.scale, extent, chunk,
                  sha256, scheme, region_name)
        missing = [str(run.vrt(y)) for y in years if not run.vrt(y).is_file()]
        if missing:
            raise EvaluationError(f"{out_dir}: the run is not finished ({missing[0]} is missing)")
        return run

    def vrt(self, year: int | str) -> Path:
        return self.out_dir / mosaic_name(self.product, self.product.output, str(year), self.region_name)

    def tile_name(self, year: int | str, box: Box) -> str:
        """The file name of the tile (e.g. the map frame) a block of the run store lies in."""
        scheme = self.scheme.with_naming(self.product.output.naming) if self.product.output.naming else self.scheme
        tile_row, tile_col = scheme.tile_of_block(box.row // self.chunk, box.col // self.chunk)
        return scheme.tile_name(tile_row, tile_col, year)

    def blocks(self) -> Iterator[Box]:
        e, c = self.extent, self.chunk
        for row in range(e.row, e.row_stop, c):
            for col in range(e.col, e.col_stop, c):
                yield Box(row, col, min(c, e.row_stop - row), min(c, e.col_stop - col))

    def final(self, year: int, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """(foreground, valid) of the published map (the year's VRT over its COG tiles)."""
        values = read_box(str(self.vrt(year)), self.grid, box, resampling=Resampling.nearest)[0]
        out = self.product.output
        valid = np.isfinite(values) & (values != out.nodata)
        foreground = lookup_table(out.values, out.nodata)[FOREGROUND]  # the value code 1 is published as
        return valid & (values == foreground), valid

    def before_vote(self, box: Box) -> np.ndarray:
        """(T, H, W) class codes before the temporal chain, from the run store."""
        array = zarr.open_array(str(self.out_dir / RUN_DIR / STORE / "classes"), mode="r")
        rows, cols = box.slices_in(self.extent)
        return array[:, rows, cols]


# --------------------------------------------------------------------------------------------------
# Window level: the model alone on isolated windows


class IsolatedWindows:
    """The model's threshold (the product's first post step; CBRA: sigmoid > 0.5) on non-overlapping windows of
    the global lattice, each on its own."""

    def __init__(self, run: FinishedRun, source: str, checkpoint: str | None, threads: int = 2) -> None:
        import torch  # noqa: I001 (heavy: only when asked for)

        from mapgen.models import load_checkpoint

        from .checkpoints import resolve_checkpoint
        from .sources import open_inputs

        product = run.product
        path, sha256 = resolve_checkpoint(checkpoint or product.model.checkpoint, product.model.architecture)
        self.model = load_checkpoint(path, sha256=sha256, architecture=product.model.architecture)[0].eval()
        self.sha256 = sha256
        self.inputs = open_inputs(product, source, run.years, mask="none")  # the model sees the image only
        image = product.image_input
        self.image = image
        self.run, self.size, self.batch = run, product.window.size, product.window.batch
        torch.set_num_threads(threads)

    def predict(self, year: int, out_box: Box) -> np.ndarray:
        """(H, W) foreground of `out_box` (output grid), False where the input has no data."""
        from .scoring import product_codes, stitched_confidence
        from .windows import WindowLattice

        scale = self.run.scale
        box = Box(out_box.row // scale, out_box.col // scale, -(-out_box.height // scale),
                  -(-out_box.width // scale))
        lattice = WindowLattice(self.size, self.size)
        read, origins = lattice.covering(box)
        pixels = self.inputs.read(self.image, year, self.run.input_grid, read)
        valid = np.isfinite(pixels).all(axis=0)
        x = normalise(pixels, self.image.mean, self.image.std, valid=valid)
        canvas = stitched_confidence(self.model, x, read, origins, lattice, self.batch,
                                     activation=self.run.product.model.output, channel=None)
        # the model's own threshold: the product's first post step, as the run applies it
        fg = product_codes(self.run.product, canvas, valid, lambda _name: None, scale, steps=1) == FOREGROUND
        rows, cols = out_box.slices_in(read.scaled(scale))
        return fg[rows, cols]


# --------------------------------------------------------------------------------------------------
# The evaluation


@dataclass
class Evaluation:
    years: tuple[int | str, ...]
    per_year: dict[int | str, Confusion] = field(default_factory=dict)
    per_tile: dict[str, Confusion] = field(default_factory=dict)  # by tile file name (a frame and a date)
    flips: dict[str, list[int]] = field(default_factory=lambda: {"before_vote": [0, 0], "after_vote": [0, 0]})
    stable_pixels: int = 0
    fractions: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    cell_deg: float | str | Fraction = 0.1
    compare_label: str = "reference"
    window_level: Confusion | None = None
    map_level: Confusion | None = None

    @property
    def overall(self) -> Confusion:
        total = Confusion()
        for c in self.per_year.values():
            total += c
        return total

    def to_dict(self) -> dict[str, Any]:
        def rate(pair: list[int]) -> float | None:
            return round(pair[0] / pair[1], 6) if pair[1] else None

        pooled = [p for year in self.years for p in self.fractions.get(year, [])]
        out: dict[str, Any] = {
            "years": {str(y): self.per_year[y].to_dict() for y in self.years},
            "tiles": {name: c.to_dict() for name, c in sorted(self.per_tile.items())},
            "overall": self.overall.to_dict(),
            "flicker": {
                "stable_pixels": self.stable_pixels,
                **{k: {"flips": v[0], "pairs": v[1], "rate": rate(v)} for k, v in self.flips.items()},
            },
            "r2": {
                "against": self.compare_label, "cell_deg": float(self.cell_deg), "cells": len(pooled),
                "pooled": _nan_none(r_squared(*zip(*pooled, strict=True)) if pooled else float("nan")),
                "years": {str(y): _nan_none(r_squared(*zip(*self.fractions[y], strict=True)))
                          for y in self.years if self.fractions.get(y)},
            },
        }
        if self.window_level is not None and self.map_level is not None:
            out["window_vs_map"] = {"window_level": self.window_level.to_dict(), "map_level": self.map_level.to_dict()}
        return out

    def table(self) -> str:
        d = self.to_dict()
        rows = ([(y, d["years"][y]) for y in d["years"]] + [(t, d["tiles"][t]) for t in d["tiles"]]
                + [("overall", d["overall"])])
        width = max(8, *(len(str(name)) for name, _ in rows))
        lines = [f"{'year / tile':>{width}} {'TP %':>7} {'FP %':>7} {'TN %':>7} {'FN %':>7} {'IoU %':>7} {'OA %':>7} "
                 f"{'Pre %':>7} {'Recall %':>9} {'F1 %':>7}"]
        for name, m in rows:
            lines.append(f"{name:>{width}} " + " ".join(f"{100 * m[k]:>7.2f}" for k in
                                                       ("tp", "fp", "tn", "fn", "iou", "oa", "precision"))
                         + f" {100 * m['recall']:>9.2f} {100 * m['f1']:>7.2f}")
        f = d["flicker"]
        for k in ("before_vote", "after_vote") if len(self.years) > 1 else ():  # one date: no pairs to flip
            rate = f[k]["rate"]
            lines.append(f"flicker {k.replace('_', ' ')}: {'n/a' if rate is None else f'{100 * rate:.3f} %'} of "
                         f"{f[k]['pairs']:,} year pairs over {f['stable_pixels']:,} unchanged pixels")
        r2 = d["r2"]
        lines.append(f"R² of the foreground fraction against the {r2['against']} on a {r2['cell_deg']}° grid: "
                     f"{'n/a' if r2['pooled'] is None else round(r2['pooled'], 4)} ({r2['cells']} cell-years)")
        if "window_vs_map" in d:
            w, m = d["window_vs_map"]["window_level"], d["window_vs_map"]["map_level"]
            lines.append(f"window level (isolated windows, no mask, no vote): F1 {100 * w['f1']:.2f} %, "
                         f"IoU {100 * w['iou']:.2f} %; map level on the same pixels: F1 {100 * m['f1']:.2f} %, "
                         f"IoU {100 * m['iou']:.2f} %")
        return "\n".join(lines)


def _nan_none(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 6)


def evaluate_run(out_dir: str | Path, reference: str, *, years: list[int] | None = None, compare: str | None = None,
                 cell_deg: float | str | Fraction = 0.1, source: str | None = None, checkpoint: str | None = None,
                 threads: int = 2, progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """Evaluate a finished run (its output folder) against a reference; see the module's docstring.

    `compare` names the other product of the R² (default: the reference); `source` (with the product's or
    the given checkpoint) adds the window-level F1.
    """
    run = FinishedRun.open(out_dir)
    years_t = tuple(years) if years else run.years
    unknown = [y for y in years_t if y not in run.years]
    if unknown:
        raise EvaluationError(f"year {unknown[0]} is not in the run ({run.years[0]}–{run.years[-1]})")
    ref = Layer(reference, "reference")
    ref.check(years_t)
    other = Layer(compare, "compared product") if compare else ref
    other.check(years_t)
    cell_px = run.grid.pixels(cell_deg)
    if cell_px < 1:
        raise EvaluationError(f"cell {cell_deg}° is smaller than a pixel")
    windows = IsolatedWindows(run, source, checkpoint, threads) if source else None

    result = Evaluation(years_t, {y: Confusion() for y in years_t}, cell_deg=cell_deg,
                        compare_label="reference" if other is ref else compare,
                        window_level=Confusion() if windows else None, map_level=Confusion() if windows else None)
    index = [run.years.index(y) for y in years_t]
    blocks = list(run.blocks())
    for n, box in enumerate(blocks):
        finals = [run.final(y, box) for y in years_t]
        truths = [ref.read(y, run.grid, box) for y in years_t]
        for year, (fg, valid), (truth, known) in zip(years_t, finals, truths, strict=True):
            both = valid & known
            result.per_year[year].add(fg[both], truth[both])
            if both.any():
                result.per_tile.setdefault(run.tile_name(year, box), Confusion()).add(fg[both], truth[both])
            map_frac = block_fraction(fg, valid, cell_px)
            other_fg, other_known = (truth, known) if other is ref else other.read(year, run.grid, box)
            other_frac = block_fraction(other_fg, other_known, cell_px)
            result.fractions.setdefault(year, []).extend(
                (float(a), float(b)) for a, b in zip(map_frac.ravel(), other_frac.ravel(), strict=True)
                if np.isfinite(a) and np.isfinite(b))
            if windows is not None:
                alone = windows.predict(year, box)
                result.window_level.add(alone[both], truth[both])
                result.map_level.add(fg[both], truth[both])
        # Unchanged according to the reference: known in every year and the same in every year.
        known_all = np.logical_and.reduce([k for _, k in truths])
        stable = known_all & np.logical_and.reduce([t == truths[0][0] for t, _ in truths])
        result.stable_pixels += int(np.count_nonzero(stable))
        after = np.stack([fg for fg, _ in finals]).astype(np.uint8)
        after_valid = np.stack([v for _, v in finals])
        codes = run.before_vote(box)[index]
        for key, stack, valid in (("after_vote", after, after_valid),
                                  ("before_vote", (codes == FOREGROUND).astype(np.uint8),
                                   codes != NODATA)):
            flips, pairs = flicker(stack, valid, stable)
            result.flips[key][0] += flips
            result.flips[key][1] += pairs
        if progress is not None:
            progress(n + 1, len(blocks))
    return result
