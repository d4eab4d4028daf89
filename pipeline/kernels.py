"""Per-pixel post-processing kernels (numba), on the run store's class codes.

The codes are defined in `classes` (255 = no data, binary products 0 = background and 1 = foreground) and
re-exported here for older importers. Each kernel is a pure function with a plain NumPy reference in the
tests. The public functions check their arguments and call a compiled kernel.

How the kernels are fast (`benchmarks/kernels.py` times each against its NumPy reference and a plain copy):

- each runs `numba.prange` over rows (over input rows where the output is upsampled), so that a call uses
  the calling thread's numba threads (`set_threads`);
- the work on one row is a small compiled function whose loop runs over contiguous memory without branches
  or integer division, so that it vectorises (the same loop written inline in the prange body did not, at
  4 × the time);
- what depends on an input pixel only (validity, the layer's value, its comparison with the threshold) is
  worked out once per input row, expanded to output columns, and reused for that input row's `scale`
  output rows; the expansion takes its factor as a constant for scales 1, 2 and 4;
- the outputs are allocated by NumPy and passed in: NumPy asks the kernel for transparent huge pages on a
  large array, numba's allocator does not, and faulting in a fresh output 4 KiB at a time cost more than
  the kernels themselves (115 ms for a 6 × 4452² stack on the 2-core development machine).

Threads: the kernels run in Dask worker threads, two at a time in one process, so numba's threading layer
must be thread-safe: importing this module asks numba for one ("threadsafe": tbb, else omp; never
workqueue, which aborts the process on concurrent calls), and the first kernel call checks that it got one.
GNU OpenMP (the omp layer of a pip install) is not fork-safe: a process forked from one that has run a
kernel must not run one (numba terminates it); spawned processes, Dask's default, are fine.
"""

from __future__ import annotations

import numba
import numpy as np

from .classes import BACKGROUND, FOREGROUND, MAX_CODES, NODATA

__all__ = [
    "BACKGROUND", "FOREGROUND", "NODATA", "RESAMPLINGS",
    "argmax", "change", "majority_vote", "mask_below", "set_threads", "threads", "threshold",
]

# how `mask_below` brings its layer to output resolution
RESAMPLINGS = ("bilinear", "nearest")

# the layers numba may pick that are safe for concurrent calls from several threads
THREADSAFE_LAYERS = ("tbb", "omp")
if str(numba.config.THREADING_LAYER).lower() not in (*THREADSAFE_LAYERS, "threadsafe", "safe"):
    # must happen before numba launches its threads (the first parallel call or thread query)
    numba.config.THREADING_LAYER = "threadsafe"
_layer_checked = False


def _check_layer() -> None:
    """Launch numba's threads (once) and refuse a layer that is not thread-safe (another module may have
    launched them first, with its own choice)."""
    global _layer_checked
    if _layer_checked:
        return
    numba.get_num_threads()  # launches the threading layer
    layer = numba.threading_layer()
    if layer not in THREADSAFE_LAYERS:
        raise RuntimeError(f"numba's threading layer is {layer!r}, which aborts on concurrent calls; the kernels "
                           f"need one of {', '.join(THREADSAFE_LAYERS)} (NUMBA_THREADING_LAYER=threadsafe)")
    _layer_checked = True


def set_threads(n: int) -> None:
    """Let the kernels that this thread calls from now on use `n` threads (clamped to 1 … NUMBA_NUM_THREADS,
    the threads numba launched: by default the machine's cores).

    numba keeps the count per calling thread (thread-local): this does not change what other threads'
    calls use, and a thread that never called it uses NUMBA_NUM_THREADS. So a worker calls it in each task,
    in the task's own thread.
    """
    _check_layer()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


def threads() -> int:
    """The threads the kernels use when called from this thread (see `set_threads`)."""
    _check_layer()
    return numba.get_num_threads()


def _check_scaled(out_shape: tuple[int, ...], in_shape: tuple[int, ...], scale: int, what: str) -> None:
    """Refuse an output of a shape other than `scale` × the input's (the kernels would read past it)."""
    if scale < 1:
        raise ValueError(f"scale must be ≥ 1, not {scale}")
    if tuple(out_shape) != (in_shape[0] * scale, in_shape[1] * scale):
        raise ValueError(f"{what}: output shape {tuple(out_shape)} is not {scale} × input shape {tuple(in_shape)}")


# ---- work on one row (compiled apart, so that each loop vectorises) -------------------------------------

@numba.njit(cache=True, nogil=True)
def _repeat_by(src: np.ndarray, s: int, dst: np.ndarray) -> None:
    n = dst.shape[0]
    full = n // s
    for q in range(full):
        v = src[q]
        for m in range(s):
            dst[q * s + m] = v
    for j in range(full * s, n):
        dst[j] = src[full]


@numba.njit(cache=True, nogil=True)
def _repeat(src: np.ndarray, scale: int, dst: np.ndarray) -> None:
    """dst[j] = src[j // scale] for every j of dst, without a division per element."""
    # a constant factor for the usual scales (UGS's 1, CBRA's 4): numba compiles `_repeat_by` for each such
    # literal, where its inner loop unrolls and the whole vectorises; a loop of `scale` steps known only at
    # run time does not
    if scale == 1:
        _repeat_by(src, 1, dst)
    elif scale == 2:
        _repeat_by(src, 2, dst)
    elif scale == 4:
        _repeat_by(src, 4, dst)
    else:
        _repeat_by(src, scale, dst)


@numba.njit(cache=True, nogil=True)
def _copy(src: np.ndarray, dst: np.ndarray) -> None:
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@numba.njit(cache=True, nogil=True)
def _threshold_row(conf: np.ndarray, ok: np.ndarray, conf_threshold: float, dst: np.ndarray) -> None:
    for j in range(dst.shape[0]):
        c = conf[j]
        code = FOREGROUND if c > conf_threshold else BACKGROUND
        dst[j] = code if ok[j] & (not np.isnan(c)) else NODATA


@numba.njit(cache=True, nogil=True)
def _argmax_first(first: np.ndarray, ok: np.ndarray, best: np.ndarray, index: np.ndarray,
                  bad: np.ndarray) -> None:
    for j in range(best.shape[0]):
        best[j] = first[j]
        index[j] = 0
        bad[j] = np.int32(np.isnan(first[j]) | (not ok[j]))


@numba.njit(cache=True, nogil=True)
def _argmax_next(row: np.ndarray, k: np.int32, best: np.ndarray, index: np.ndarray, bad: np.ndarray) -> None:
    for j in range(best.shape[0]):
        v = row[j]
        # strictly greater: the first class wins a tie, as in numpy.argmax
        take = v > best[j]
        best[j] = v if take else best[j]
        index[j] = k if take else index[j]
        bad[j] |= np.int32(np.isnan(v))


@numba.njit(cache=True, nogil=True)
def _argmax_codes(index: np.ndarray, bad: np.ndarray, offset: int, dst: np.ndarray) -> None:
    for j in range(dst.shape[0]):
        dst[j] = NODATA if bad[j] else np.uint8(index[j] + offset)


@numba.njit(cache=True, nogil=True)
def _geometry(out_w: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear weights by output column: fx, and whether the left neighbour is the pixel's own input pixel
    (x0 = q, right of its centre) rather than the one before (x0 = q − 1); x0 as the first kernel computed it."""
    fxs = np.empty(out_w, dtype=np.float64)
    right = np.empty(out_w, dtype=np.bool_)
    for j in range(out_w):
        x = (j + 0.5) / scale - 0.5
        x0 = int(np.floor(x))
        fxs[j] = x - x0
        right[j] = x0 == j // scale
    return fxs, right


@numba.njit(cache=True, nogil=True)
def _lerp_by(row: np.ndarray, mid: np.ndarray, fxs: np.ndarray, right: np.ndarray, s: int,
             dst: np.ndarray) -> None:
    for q in range(dst.shape[0] // s):
        # the output pixels of input pixel q interpolate between q − 1, q and q + 1 (haloed: q, q + 1, q + 2);
        # a neighbour without a value takes the centre's, so edges of no data do not bleed inward
        c = mid[q + 1]
        a, b, d = row[q], row[q + 1], row[q + 2]
        a = c if np.isnan(a) else a
        b = c if np.isnan(b) else b
        d = c if np.isnan(d) else d
        for m in range(s):
            j = q * s + m
            fx, r = fxs[j], right[j]
            left_v = b if r else a
            right_v = d if r else b
            dst[j] = left_v * (1 - fx) + right_v * fx


@numba.njit(cache=True, nogil=True)
def _lerp_pow2(row: np.ndarray, mid: np.ndarray, fxs: np.ndarray, right: np.ndarray, s: int,
               dst: np.ndarray) -> None:
    # `_lerp_by` for a power-of-two s: there (j + 0.5)/s − 0.5 is exact, so fx and x0 − q depend on j mod s
    # only, and the first s columns' weights serve every input pixel (held in registers, not loaded)
    for q in range(dst.shape[0] // s):
        c = mid[q + 1]
        a, b, d = row[q], row[q + 1], row[q + 2]
        a = c if np.isnan(a) else a
        b = c if np.isnan(b) else b
        d = c if np.isnan(d) else d
        for m in range(s):
            fx = fxs[m]
            if right[m]:
                dst[q * s + m] = b * (1 - fx) + d * fx
            else:
                dst[q * s + m] = a * (1 - fx) + b * fx


@numba.njit(cache=True, nogil=True)
def _lerp(row: np.ndarray, mid: np.ndarray, fxs: np.ndarray, right: np.ndarray, scale: int,
          dst: np.ndarray) -> None:
    """dst[j]: haloed layer `row` interpolated at output column j, float64 in the first kernel's order (so
    bit-identical), where `mid` is the layer row of the output pixel's own input row."""
    if scale == 1:  # constant factors, as in `_repeat`
        _lerp_pow2(row, mid, fxs, right, 1, dst)
    elif scale == 2:
        _lerp_pow2(row, mid, fxs, right, 2, dst)
    elif scale == 4:
        _lerp_pow2(row, mid, fxs, right, 4, dst)
    else:
        _lerp_by(row, mid, fxs, right, scale, dst)


@numba.njit(cache=True, nogil=True)
def _below_row(top: np.ndarray, bottom: np.ndarray, fy: float, layer_threshold: float, below: np.ndarray) -> None:
    """below[j]: whether the layer interpolated between two interpolated rows is below the threshold."""
    for j in range(below.shape[0]):
        # the same expression, in the same order and precision, as the first kernel: bit-identical
        below[j] = top[j] * (1 - fy) + bottom[j] * fy < layer_threshold


@numba.njit(cache=True, nogil=True)
def _layer_flags(layer_row: np.ndarray, layer_threshold: float, below: np.ndarray, nan: np.ndarray) -> None:
    """Per input pixel of a haloed layer row (halo skipped): below the threshold, without a value."""
    for q in range(below.shape[0]):
        v = layer_row[q + 1]
        below[q] = v < layer_threshold
        nan[q] = np.isnan(v)


@numba.njit(cache=True, nogil=True)
def _nan_flags(layer_row: np.ndarray, nan: np.ndarray) -> None:
    for q in range(nan.shape[0]):
        nan[q] = np.isnan(layer_row[q + 1])


@numba.njit(cache=True, nogil=True)
def _mask_row(codes: np.ndarray, below: np.ndarray, nan: np.ndarray, fill: np.uint8, dst: np.ndarray) -> None:
    for j in range(dst.shape[0]):
        code = codes[j]
        # NODATA stays, and so does `fill` (masking it gives itself)
        masked = fill if below[j] & (code != NODATA) else code
        dst[j] = NODATA if nan[j] else masked


@numba.njit(cache=True, nogil=True)
def _vote_row(prev: np.ndarray, this: np.ndarray, nxt: np.ndarray, dst: np.ndarray) -> None:
    for j in range(dst.shape[0]):
        p, c, n = prev[j], this[j], nxt[j]
        # the mode of three is prev when prev == next, else this (also when all three differ);
        # prev == next != NODATA covers both neighbours, so one more test covers all three
        dst[j] = p if (p == n) & (p != NODATA) & (c != NODATA) else c


@numba.njit(cache=True, nogil=True)
def _change_row(before: np.ndarray, after: np.ndarray, dst: np.ndarray) -> None:
    for j in range(dst.shape[0]):
        b, a = before[j], after[j]
        dst[j] = NODATA if (b == NODATA) | (a == NODATA) else np.uint8(b != a)


# ---- threshold, argmax ----------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, parallel=True)
def _threshold(conf: np.ndarray, valid: np.ndarray, conf_threshold: float, scale: int, out: np.ndarray) -> None:
    out_h, out_w = conf.shape
    for pi in numba.prange((out_h + scale - 1) // scale):
        ok = np.empty(out_w, dtype=np.bool_)
        _repeat(valid[pi], scale, ok)
        for i in range(pi * scale, min(pi * scale + scale, out_h)):
            _threshold_row(conf[i], ok, conf_threshold, out[i])


def threshold(conf: np.ndarray, valid: np.ndarray, conf_threshold: float, scale: int) -> np.ndarray:
    """Class codes of a block's high-resolution confidence: foreground where conf > conf_threshold.

    conf:  (scale·H, scale·W) float32 confidence at output resolution.
    valid: (H, W) bool, whether each input pixel had data; an output pixel whose input pixel had none,
           or whose confidence is NaN, is no data.
    """
    conf, valid = np.ascontiguousarray(conf), np.ascontiguousarray(valid, dtype=np.bool_)
    _check_layer()
    out = np.empty(conf.shape, dtype=np.uint8)
    _threshold(conf, valid, float(conf_threshold), int(scale), out)
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _argmax(scores: np.ndarray, valid: np.ndarray, offset: int, scale: int, out: np.ndarray) -> None:
    k_len, out_h, out_w = scores.shape
    for pi in numba.prange(out_h // scale):
        ok = np.empty(out_w, dtype=np.bool_)
        _repeat(valid[pi], scale, ok)
        best = np.empty(out_w, dtype=scores.dtype)
        # 32-bit, as the float32 scores: lanes of one width vectorise (bytes here ran 7 × slower)
        index = np.empty(out_w, dtype=np.int32)
        bad = np.empty(out_w, dtype=np.int32)
        for i in range(pi * scale, pi * scale + scale):
            # class by class over a whole row: every read is contiguous, unlike class by class per pixel
            _argmax_first(scores[0, i], ok, best, index, bad)
            for k in range(1, k_len):
                _argmax_next(scores[k, i], np.int32(k), best, index, bad)
            _argmax_codes(index, bad, offset, out[i])


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
    _check_layer()
    out = np.empty(scores.shape[1:], dtype=np.uint8)
    _argmax(np.ascontiguousarray(scores), np.ascontiguousarray(valid), int(offset), int(scale), out)
    return out


# ---- mask -----------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, parallel=True)
def _mask_bilinear(codes: np.ndarray, layer: np.ndarray, layer_threshold: float, scale: int,
                   fill: np.uint8, out: np.ndarray) -> None:
    out_h, out_w = codes.shape
    # the column geometry is the same on every row: work it out once
    fxs, right = _geometry(out_w, scale)
    for pi in numba.prange(out_h // scale):
        mid = layer[pi + 1]
        nan_in = np.empty(layer.shape[1] - 2, dtype=np.bool_)
        _nan_flags(mid, nan_in)
        nan = np.empty(out_w, dtype=np.bool_)
        _repeat(nan_in, scale, nan)
        below = np.empty(out_w, dtype=np.bool_)
        top = np.empty(out_w, dtype=np.float64)
        bottom = np.empty(out_w, dtype=np.float64)
        rows = pi - 3  # the pair of layer rows last interpolated (y0 is pi − 1 or pi: none yet)
        for i in range(pi * scale, pi * scale + scale):
            y = (i + 0.5) / scale - 0.5
            y0 = int(np.floor(y))
            fy = y - y0
            # the horizontal interpolation is the same for all output rows between the same two layer rows,
            # and the lower row of the first pair is the upper row of the next: each layer row once per
            # input row (3 interpolations for CBRA's 4 output rows)
            if y0 == rows + 1:
                top, bottom = bottom, top
                _lerp(layer[y0 + 2], mid, fxs, right, scale, bottom)
            elif y0 != rows:
                _lerp(layer[y0 + 1], mid, fxs, right, scale, top)
                _lerp(layer[y0 + 2], mid, fxs, right, scale, bottom)
            rows = y0
            # floats, then bytes: two passes ran faster than one that mixes them
            _below_row(top, bottom, fy, layer_threshold, below)
            _mask_row(codes[i], below, nan, fill, out[i])


@numba.njit(cache=True, nogil=True, parallel=True)
def _mask_nearest(codes: np.ndarray, layer: np.ndarray, layer_threshold: float, scale: int,
                  fill: np.uint8, out: np.ndarray) -> None:
    out_h, out_w = codes.shape
    for pi in numba.prange(out_h // scale):
        # compare once per input pixel, then the per-pixel loop is on bytes only
        below_in = np.empty(layer.shape[1] - 2, dtype=np.bool_)
        nan_in = np.empty(layer.shape[1] - 2, dtype=np.bool_)
        _layer_flags(layer[pi + 1], layer_threshold, below_in, nan_in)
        below = np.empty(out_w, dtype=np.bool_)
        nan = np.empty(out_w, dtype=np.bool_)
        _repeat(below_in, scale, below)
        _repeat(nan_in, scale, nan)
        for i in range(pi * scale, pi * scale + scale):
            _mask_row(codes[i], below, nan, fill, out[i])


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
    _check_layer()
    kernel = _mask_bilinear if resampling == "bilinear" else _mask_nearest
    out = np.empty(codes.shape, dtype=codes.dtype)
    kernel(np.ascontiguousarray(codes), np.ascontiguousarray(layer), float(layer_threshold), int(scale),
           np.uint8(fill), out)
    return out


# ---- temporal -------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, parallel=True)
def _majority_vote(stack: np.ndarray, out: np.ndarray) -> None:
    t_len, h, w = stack.shape
    if t_len == 0:
        return
    for i in numba.prange(h):
        # the first and last dates are copied, the others computed: each output byte is written once
        _copy(stack[0, i], out[0, i])
        for t in range(1, t_len - 1):
            _vote_row(stack[t - 1, i], stack[t, i], stack[t + 1, i], out[t, i])
        if t_len > 1:
            _copy(stack[t_len - 1, i], out[t_len - 1, i])


def majority_vote(stack: np.ndarray) -> np.ndarray:
    """Three-date majority vote along axis 0 of a (T, H, W) stack of class codes, any number of classes.

    Every date with a date on each side takes the mode of (previous, itself, next) as they were before
    the vote; when all three differ it keeps its own code. The first and last dates are left as they
    are, and so is any pixel where one of the three dates is NODATA.
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"majority_vote: the stack must be (T, H, W), not {stack.shape}")
    _check_layer()
    out = np.empty(stack.shape, dtype=stack.dtype)
    _majority_vote(np.ascontiguousarray(stack), out)
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _change(before: np.ndarray, after: np.ndarray, out: np.ndarray) -> None:
    for i in numba.prange(before.shape[0]):
        _change_row(before[i], after[i], out[i])


def change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Change map of two (H, W) class-code maps: 0 = no change, 1 = change, NODATA where either is NODATA."""
    before, after = np.asarray(before), np.asarray(after)
    if before.ndim != 2 or before.shape != after.shape:
        raise ValueError(f"change: before and after must be (H, W) of one shape, not {before.shape} and "
                         f"{after.shape}")
    _check_layer()
    out = np.empty(before.shape, dtype=np.uint8)
    _change(np.ascontiguousarray(before), np.ascontiguousarray(after), out)
    return out
