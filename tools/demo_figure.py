"""The README's pictures: the synthetic imagery, mapgen's map and the ground truth, side by side.

    python tools/demo_figure.py demo/scene demo/maps 2021 docs/demo.png            (CBRA rooftops)
    python tools/demo_figure.py demo/ugs-scene demo/ugs-maps 2021 docs/ugs.png ugs  (urban green space)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT


def on_grid(path: Path, like, band_indexes, resampling=Resampling.nearest) -> np.ndarray:
    with rasterio.open(path) as src, WarpedVRT(src, crs=like.crs, transform=like.transform, width=like.width,
                                               height=like.height, resampling=resampling) as vrt:
        return vrt.read(band_indexes, masked=True)


# product → (mosaic pattern, image file and its R, G, B bands, truth file, colour of the class, its name)
PRODUCTS = {
    "cbra": ("CBRA_{year}.vrt", "s2.tif", [3, 2, 1], "rooftops.tif", (228, 38, 44), "2.5 m"),
    "ugs": ("UGS_{year}_*.vrt", "rgb.tif", [1, 2, 3], "ugs.tif", (44, 160, 44), "1.1 m"),
}


def main(scene: str, maps: str, year: str, out: str, product: str = "cbra", size: int = 900) -> None:
    pattern, image, bands, truth_file, colour, gsd = PRODUCTS[product]
    vrt_path = sorted(Path(maps).glob(pattern.format(year=year)))[0]
    with rasterio.open(vrt_path) as like:
        ours = like.read(1, masked=True)
        rgb = on_grid(Path(scene) / year / image, like, bands).filled(0)
        truth = on_grid(Path(scene) / year / truth_file, like, 1).filled(0)
    # the densest size × size window of ground-truth rooftops, to show detail
    rows, cols = ours.shape
    step = size // 3
    best, at = -1, (0, 0)
    for r in range(0, max(rows - size, 0) + 1, step):
        for c in range(0, max(cols - size, 0) + 1, step):
            score = int((truth[r:r + size, c:c + size] == 255).sum())
            if score > best:
                best, at = score, (r, c)
    r, c = at
    window = (slice(r, r + size), slice(c, c + size))
    lo, hi = np.percentile(rgb[:, window[0], window[1]], [2, 98])
    composite = np.clip((rgb[:, window[0], window[1]] - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)

    def binary(mask: np.ndarray, valid: np.ndarray) -> np.ndarray:
        img = np.full((3, *mask.shape), 245, np.uint8)  # background: near white
        img[:, mask] = np.array(colour, np.uint8)[:, None]
        img[:, ~valid] = 180  # no data: grey
        return img

    ours_w = ours[window]
    panel_ours = binary(ours_w.filled(0) == 255, ~np.ma.getmaskarray(ours_w))
    panel_truth = binary(truth[window] == 255, np.ones(truth[window].shape, bool))
    gap = np.full((3, size, 12), 255, np.uint8)
    figure = np.concatenate([composite, gap, panel_ours, gap, panel_truth], axis=2)
    profile = {"driver": "PNG", "width": figure.shape[2], "height": size, "count": 3, "dtype": "uint8"}
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(figure)
    agree = (ours_w.filled(0) == 255) & (truth[window] == 255)
    f1 = 2 * agree.sum() / max((ours_w.filled(0) == 255).sum() + (truth[window] == 255).sum(), 1)
    print(f"wrote {out}: {size}×{size} px at {gsd} from row {r}, col {c} of {vrt_path.name}; F1 in view {f1:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:6])
