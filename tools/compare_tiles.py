"""Two runs' tiles side by side: how many pixels differ, and the foreground share on output rows and
columns next to a window edge of the global lattice against the rest (a seam along the windows shows as a
ratio above 1).

    python tools/compare_tiles.py BEFORE_OUT AFTER_OUT [--product cbra]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio

from mapgen.pipeline.context import tile_scheme
from mapgen.workflows import load_product


def near_window_edge(index: np.ndarray, stride: int, overlap: int, reach: int) -> np.ndarray:
    """Output rows (or columns) on the global lattice within `reach` of a window's first or last pixel."""
    offset = index % stride
    return np.minimum(np.minimum(offset, stride - offset), np.abs(offset - overlap)) <= reach


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--product", default="cbra")
    args = parser.parse_args()
    product = load_product(args.product)
    scheme = tile_scheme(product)
    scale, grid = scheme.scale, scheme.output_grid
    stride, overlap = product.window.stride * scale, product.window.overlap_px * scale
    total = changed = 0
    counts = {"before": np.zeros(4, np.int64), "after": np.zeros(4, np.int64)}  # edge fg, edge, inner fg, inner
    nodata = product.output.nodata
    for after_path in sorted(args.after.glob("*.tif")):
        with rasterio.open(after_path) as a, rasterio.open(args.before / after_path.name) as b:
            after, before, transform = a.read(1), b.read(1), a.transform
        total += after.size
        changed += int((after != before).sum())
        row0 = round((90 - transform.f) / float(grid.res))
        col0 = round((transform.c + 180) / float(grid.res))
        edge = (near_window_edge(np.arange(after.shape[0]) + row0, stride, overlap, scale)[:, None]
                | near_window_edge(np.arange(after.shape[1]) + col0, stride, overlap, scale)[None, :])
        for name, data in (("before", before), ("after", after)):
            valid, fg = data != nodata, data == product.output.foreground
            counts[name] += [(fg & edge & valid).sum(), (edge & valid).sum(), (fg & ~edge & valid).sum(),
                             (~edge & valid).sum()]
    print(f"pixels that differ: {changed:,} of {total:,} ({100 * changed / total:.3f} %)")
    for name, (edge_fg, edge_n, inner_fg, inner_n) in counts.items():
        print(f"{name}: foreground share next to window edges {edge_fg / edge_n:.4f}, elsewhere "
              f"{inner_fg / inner_n:.4f}, ratio {edge_fg / edge_n / (inner_fg / inner_n):.3f}")


if __name__ == "__main__":
    main()
