"""Per-pixel post-processing kernels (numba), on the run store's class encoding.

Encoding shared by the kernels and the run store: 0 = background, 1 = foreground, 255 = no data. Each
kernel has a plain NumPy reference in the tests.
"""

from __future__ import annotations

import numba
import numpy as np

BACKGROUND = np.uint8(0)
FOREGROUND = np.uint8(1)
NODATA = np.uint8(255)


@numba.njit(cache=True, nogil=True)
def threshold(conf: np.ndarray, valid: np.ndarray, conf_threshold: float, scale: int) -> np.ndarray:
    """Class codes of a block's high-resolution confidence: foreground where conf > conf_threshold.

    conf:  (scale·H, scale·W) float32 confidence at output resolution.
    valid: (H, W) bool, whether each input pixel had data; an output pixel whose input pixel had none,
           or whose confidence is NaN, is no data.
    """
    out_h, out_w = conf.shape
    out = np.empty((out_h, out_w), dtype=np.uint8)
    for i in range(out_h):
        for j in range(out_w):
            c = conf[i, j]
            if not valid[i // scale, j // scale] or np.isnan(c):
                out[i, j] = NODATA
            elif c > conf_threshold:
                out[i, j] = FOREGROUND
            else:
                out[i, j] = BACKGROUND
    return out


@numba.njit(cache=True, nogil=True)
def mask_below(codes: np.ndarray, layer: np.ndarray, layer_threshold: float, scale: int) -> np.ndarray:
    """Keep foreground only where `layer`, upsampled bilinearly by `scale`, is ≥ layer_threshold.

    codes: (scale·H, scale·W) class codes.
    layer: (H + 2, W + 2) float32 at input resolution with a one-pixel halo, so that the upsampling at
           the block's edge uses the real neighbours and blocks stay independent. Pixel centres are
           aligned as in GDAL and skimage (output pixel i sits at (i + 0.5)/scale − 0.5 input pixels).
    Where the layer has no value at the pixel's own input pixel the output is no data; a missing
    neighbour takes that centre value.
    """
    out_h, out_w = codes.shape
    out = codes.copy()
    for i in range(out_h):
        y = (i + 0.5) / scale - 0.5
        y0 = int(np.floor(y))
        fy = y - y0
        pi = i // scale
        for j in range(out_w):
            pj = j // scale
            centre = layer[pi + 1, pj + 1]
            if np.isnan(centre):
                out[i, j] = NODATA
                continue
            if codes[i, j] != FOREGROUND:
                continue
            x = (j + 0.5) / scale - 0.5
            x0 = int(np.floor(x))
            fx = x - x0
            a = layer[y0 + 1, x0 + 1]
            b = layer[y0 + 1, x0 + 2]
            c = layer[y0 + 2, x0 + 1]
            d = layer[y0 + 2, x0 + 2]
            a = centre if np.isnan(a) else a
            b = centre if np.isnan(b) else b
            c = centre if np.isnan(c) else c
            d = centre if np.isnan(d) else d
            up = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy
            if up < layer_threshold:
                out[i, j] = BACKGROUND
    return out


@numba.njit(cache=True, nogil=True)
def majority_vote(stack: np.ndarray) -> np.ndarray:
    """Three-year majority vote along axis 0 of a (T, H, W) stack of class codes.

    Every year with a year on each side takes the majority of (previous, itself, next) as they were
    before the vote; the first and last years are left as they are, and so is any pixel where one of the
    three years has no data.
    """
    t_len, h, w = stack.shape
    out = stack.copy()
    for t in range(1, t_len - 1):
        for i in range(h):
            prev, this, nxt, dst = stack[t - 1, i], stack[t, i], stack[t + 1, i], out[t, i]
            for j in range(w):
                # codes are 0, 1 or 255: the sum reaches 255 exactly when a year has no data, so one
                # comparison tells both; branch-free so that the loop vectorises
                total = np.uint16(prev[j]) + np.uint16(this[j]) + np.uint16(nxt[j])
                vote = np.uint8(total >= 2)
                dst[j] = vote if total < 255 else this[j]
    return out
