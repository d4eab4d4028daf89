"""Per-pixel post-processing kernels (numba), on the run store's class codes.

The codes are defined in `classes` (255 = no data, binary products 0 = background and 1 = foreground) and
re-exported here for older importers. Each kernel is a pure function with a plain NumPy reference in the
tests. The public functions check their arguments and call a compiled kernel; their inner loops run over
one contiguous row without branches, so that they vectorise.
"""

from __future__ import annotations

import numba
import numpy as np

from .classes import BACKGROUND, FOREGROUND, MAX_CODES, NODATA

__all__ = [
    "BACKGROUND", "FOREGROUND", "NODATA", "RESAMPLINGS",
    "argmax", "change", "majority_vote", "mask_below", "threshold",
]

# how `mask_below` brings its layer to output resolution
RESAMPLINGS = ("bilinear", "nearest")


def _check_scaled(out_shape: tuple[int, ...], in_shape: tuple[int, ...], scale: int, what: str) -> None:
    """Refuse an output of a shape other than `scale` × the input's (the kernels would read past it)."""
    if scale < 1:
        raise ValueError(f"scale must be ≥ 1, not {scale}")
    if tuple(out_shape) != (in_shape[0] * scale, in_shape[1] * scale):
        raise ValueError(f"{what}: output shape {tuple(out_shape)} is not {scale} × input shape {tuple(in_shape)}")


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
def _argmax(scores: np.ndarray, valid: np.ndarray, offset: int, scale: int) -> np.ndarray:
    k_len, out_h, out_w = scores.shape
    out = np.empty((out_h, out_w), dtype=np.uint8)
    best = np.empty(out_w, dtype=scores.dtype)
    index = np.empty(out_w, dtype=np.int64)
    bad = np.empty(out_w, dtype=np.bool_)
    for i in range(out_h):
        # class by class over a whole row: every read is contiguous, unlike class by class per pixel
        first, ok = scores[0, i], valid[i // scale]
        for j in range(out_w):
            best[j] = first[j]
            index[j] = 0
            bad[j] = np.isnan(first[j]) | (not ok[j // scale])
        for k in range(1, k_len):
            row = scores[k, i]
            for j in range(out_w):
                v = row[j]
                # strictly greater: the first class wins a tie, as in numpy.argmax
                take = v > best[j]
                best[j] = v if take else best[j]
                index[j] = k if take else index[j]
                bad[j] |= np.isnan(v)
        for j in range(out_w):
            out[i, j] = NODATA if bad[j] else np.uint8(index[j] + offset)
    return out


def argmax(scores: np.ndarray, valid: np.ndarray, offset: int, scale: int) -> np.ndarray:
    """Class codes of per-class scores: the index of the largest score + `offset`.

    scores: (K, scale·H, scale·W) float32 scores at output resolution, one plane per class.
    valid:  (H, W) bool, whether each input pixel had data.
    A tie goes to the first class (as numpy.argmax). An output pixel is NODATA where its input pixel is
    not valid or any of its K scores is NaN. Refuses (ValueError) a K + offset − 1 above 254 (the largest
    code would reach NODATA), K = 0, a negative offset, or shapes that do not fit.
    """
    scores, valid = np.asarray(scores), np.asarray(valid, dtype=np.bool_)
    if scores.ndim != 3 or valid.ndim != 2:
        raise ValueError(f"argmax: scores must be (K, H, W) and valid (H, W), not {scores.shape} and {valid.shape}")
    k_len = scores.shape[0]
    if k_len < 1:
        raise ValueError("argmax: scores have no class (K = 0)")
    if offset < 0:
        raise ValueError(f"argmax: offset = {offset} must be ≥ 0")
    if k_len + offset - 1 > MAX_CODES - 1:
        raise ValueError(f"argmax: {k_len} classes from code {offset} need codes up to {k_len + offset - 1}; "
                         f"class codes end at {MAX_CODES - 1} ({NODATA} is no data)")
    _check_scaled(scores.shape[1:], valid.shape, scale, "argmax")
    return _argmax(scores, valid, int(offset), int(scale))


@numba.njit(cache=True, nogil=True)
def _mask_bilinear(codes: np.ndarray, layer: np.ndarray, layer_threshold: float, scale: int,
                   fill: np.uint8) -> np.ndarray:
    out_h, out_w = codes.shape
    out = np.empty_like(codes)
    # the column geometry is the same on every row: work it out once
    x0s = np.empty(out_w, dtype=np.int64)
    fxs = np.empty(out_w, dtype=np.float64)
    for j in range(out_w):
        x = (j + 0.5) / scale - 0.5
        x0s[j] = int(np.floor(x))
        fxs[j] = x - x0s[j]
    for i in range(out_h):
        y = (i + 0.5) / scale - 0.5
        y0 = int(np.floor(y))
        fy = y - y0
        pi = i // scale
        top, bottom, mid = layer[y0 + 1], layer[y0 + 2], layer[pi + 1]
        src, dst = codes[i], out[i]
        for j in range(out_w):
            centre = mid[j // scale + 1]
            code = src[j]
            if np.isnan(centre):
                dst[j] = NODATA
                continue
            # NODATA stays, and so does `fill` (for binary codes, background): skip the interpolation,
            # which for a sparse map like CBRA's is most pixels
            if code == NODATA or code == fill:
                dst[j] = code
                continue
            x0, fx = x0s[j], fxs[j]
            a = top[x0 + 1]
            b = top[x0 + 2]
            c = bottom[x0 + 1]
            d = bottom[x0 + 2]
            # a neighbour without a value takes the centre's, so edges of no data do not bleed inward
            a = centre if np.isnan(a) else a
            b = centre if np.isnan(b) else b
            c = centre if np.isnan(c) else c
            d = centre if np.isnan(d) else d
            # the same expression, in the same order and precision, as the first kernel: bit-identical
            up = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy
            dst[j] = fill if up < layer_threshold else code
    return out


@numba.njit(cache=True, nogil=True)
def _mask_nearest(codes: np.ndarray, layer: np.ndarray, layer_threshold: float, scale: int,
                  fill: np.uint8) -> np.ndarray:
    out_h, out_w = codes.shape
    out = np.empty_like(codes)
    for i in range(out_h):
        mid, src, dst = layer[i // scale + 1], codes[i], out[i]
        for j in range(out_w):
            v = mid[j // scale + 1]
            code = src[j]
            masked = fill if (v < layer_threshold) & (code != NODATA) else code
            dst[j] = NODATA if np.isnan(v) else masked
    return out


def mask_below(codes: np.ndarray, layer: np.ndarray, layer_threshold: float, scale: int, *,
               resampling: str = "bilinear", fill: int = BACKGROUND) -> np.ndarray:
    """Turn every class code into `fill` where `layer`, upsampled by `scale`, is below layer_threshold.

    codes: (scale·H, scale·W) class codes; NODATA stays NODATA.
    layer: (H + 2, W + 2) float32 at input resolution with a one-pixel halo, so that the upsampling at
           the block's edge uses the real neighbours and blocks stay independent.
    resampling: "bilinear" aligns pixel centres as GDAL and skimage do (output pixel i sits at
           (i + 0.5)/scale − 0.5 input pixels), a missing neighbour taking the centre's value;
           "nearest" gives output pixel i the input pixel i // scale (the halo is then unused).
    fill:  the code masked pixels take, BACKGROUND by default (for binary codes this is the first kernel:
           foreground below the threshold becomes background).
    Where the layer has no value (NaN) at the pixel's own input pixel the output is NODATA, whatever
    the code.
    """
    codes, layer = np.asarray(codes), np.asarray(layer)
    if resampling not in RESAMPLINGS:
        raise ValueError(f"mask: resampling {resampling!r} is not one of {', '.join(RESAMPLINGS)}")
    if not 0 <= int(fill) <= 255:
        raise ValueError(f"mask: fill = {fill} is not a uint8 code")
    if codes.ndim != 2 or layer.ndim != 2:
        raise ValueError(f"mask: codes and layer must be 2-D, not {codes.shape} and {layer.shape}")
    _check_scaled(codes.shape, (layer.shape[0] - 2, layer.shape[1] - 2), scale, "mask (layer with its halo)")
    kernel = _mask_bilinear if resampling == "bilinear" else _mask_nearest
    return kernel(codes, layer, float(layer_threshold), int(scale), np.uint8(fill))


@numba.njit(cache=True, nogil=True)
def _majority_vote(stack: np.ndarray) -> np.ndarray:
    t_len, h, w = stack.shape
    out = stack.copy()
    for t in range(1, t_len - 1):
        for i in range(h):
            prev, this, nxt, dst = stack[t - 1, i], stack[t, i], stack[t + 1, i], out[t, i]
            for j in range(w):
                p, c, n = prev[j], this[j], nxt[j]
                # the mode of three is prev when prev == next, else this (also when all three differ);
                # prev == next != NODATA covers both neighbours, so one more test covers all three
                dst[j] = p if (p == n) & (p != NODATA) & (c != NODATA) else c
    return out


def majority_vote(stack: np.ndarray) -> np.ndarray:
    """Three-date majority vote along axis 0 of a (T, H, W) stack of class codes, any number of classes.

    Every date with a date on each side takes the mode of (previous, itself, next) as they were before
    the vote; when all three differ it keeps its own code. The first and last dates are left as they
    are, and so is any pixel where one of the three dates is NODATA.
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"majority_vote: the stack must be (T, H, W), not {stack.shape}")
    return _majority_vote(stack)


@numba.njit(cache=True, nogil=True)
def _change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    h, w = before.shape
    out = np.empty((h, w), dtype=np.uint8)
    for i in range(h):
        b_row, a_row, dst = before[i], after[i], out[i]
        for j in range(w):
            b, a = b_row[j], a_row[j]
            dst[j] = NODATA if (b == NODATA) | (a == NODATA) else np.uint8(b != a)
    return out


def change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Change map of two (H, W) class-code maps: 0 = no change, 1 = change, NODATA where either is NODATA."""
    before, after = np.asarray(before), np.asarray(after)
    if before.ndim != 2 or before.shape != after.shape:
        raise ValueError(f"change: before and after must be (H, W) of one shape, not {before.shape} and "
                         f"{after.shape}")
    return _change(before, after)
