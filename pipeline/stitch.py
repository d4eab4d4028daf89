"""Stitching window predictions into a canvas, per model head, by the method the product declares.

`[stitch] method` chooses how overlapping windows combine, channel by channel:

- "max" (CBRA's paper): the maximum of the windows' confidences. A network sees least context at the
  border of its window (zero padding in every convolution), and out of its training range that is where
  it errs most. With a plain maximum the border of one window overrules the interior of its neighbour,
  so its errors draw lines along the window lattice. Each window therefore has a border of `border`
  input pixels that counts only where no window's interior covers the pixel.
- "mean" (FUSU's class probabilities): the weighted mean over every window covering the pixel, NaN
  values meaning "this window says nothing here". `weights = "flat"` weighs all windows alike;
  `"tent"` (STSUN's centre-weighted averaging of logits) weighs each window by a separable ramp that
  is largest at its centre, so the border, which sees least context, counts least without a hard cut;
  with a stride of half the window the ramps of overlapping windows sum to one along an axis.

Which windows cover a pixel depends only on the global lattice, not on the block being stitched, and
the windows are accumulated in the order of their global origins, so a pixel's float operations are the
same in every block: the result is bit for bit independent of how the region was cut into blocks.
"""

from __future__ import annotations

import numpy as np

from mapgen.tiles import Box

METHODS = ("max", "mean")
WEIGHTS = ("flat", "tent")


def tent_ramp(size: int) -> np.ndarray:
    """r(i) = min(i + 0.5, size − i − 0.5) / (size / 2) for i in 0..size−1 (float64): positive everywhere,
    1 at the window's centre, and r(i) + r(i + size/2) = 1 for even sizes."""
    i = np.arange(size, dtype=np.float64)
    return np.minimum(i + 0.5, size - i - 0.5) / (size / 2)


def tent_weights(size: int) -> np.ndarray:
    """(size, size) float64 tent weights w(i, j) = r(i)·r(j)."""
    r = tent_ramp(size)
    return np.outer(r, r)


def stitch(predictions: np.ndarray, origins: np.ndarray, read: Box, scale: int, method: str = "max",
           border: int = 0, weights: str = "flat") -> np.ndarray:
    """(K, read.height·scale, read.width·scale) float32 canvas of K channels stitched from window predictions;
    NaN where no window covers a pixel (or, for the mean, where none has a finite value).

    predictions: (N, K, S, S) with S = scale · window size, one head's K channels per window, of the
    windows whose global input-lattice row/col origins are `origins` (N, 2); every window lies inside
    `read`. method "max": per channel the maximum over the windows whose interior (the window less
    `border` input px per side) covers the pixel, over all covering windows only where no interior does.
    method "mean": the mean over all covering windows weighted by `weights` ("flat" or "tent"); no border.
    """
    if method not in METHODS:
        raise ValueError(f"unknown stitch method {method!r}; expected one of {', '.join(METHODS)}")
    if weights not in WEIGHTS:
        raise ValueError(f"unknown stitch weights {weights!r}; expected one of {', '.join(WEIGHTS)}")
    if method == "max" and weights != "flat":
        raise ValueError(f"stitch weights {weights!r} apply only to method 'mean'; the maximum has no weights")
    if method == "mean" and border != 0:
        raise ValueError(f"stitch border {border} applies only to method 'max'; the mean weighs windows instead")
    if border < 0:
        raise ValueError(f"stitch border {border} must be >= 0")
    predictions = np.asarray(predictions)
    origins = np.asarray(origins).reshape(-1, 2)
    if predictions.ndim != 4 or predictions.shape[2] != predictions.shape[3] or len(predictions) != len(origins):
        raise ValueError(f"predictions of shape {predictions.shape} are not (N={len(origins)}, K, S, S)")
    out_box = read.scaled(scale)
    n = predictions.shape[-1]
    local = origins * scale - np.array([out_box.row, out_box.col])
    if 2 * border * scale >= n and len(predictions):
        raise ValueError(f"border {border} leaves no interior in windows of {n // scale} px")
    if len(local) and ((local < 0).any() or (local + n > np.array(out_box.shape)).any()):
        raise ValueError(f"windows of {n // scale} px at these origins reach outside the read box {read}")
    # Accumulate in the order of the global origins, whatever the caller's order: float operations on a
    # pixel then come in the same order in every block (and fmax's choice between +0 and -0 too).
    order = np.lexsort((origins[:, 1], origins[:, 0])) if len(origins) else np.zeros(0, dtype=np.intp)
    if method == "max":
        return _max(predictions, local, order, out_box, border * scale)
    return _mean(predictions, local, order, out_box, tent_weights(n) if weights == "tent" else None)


def max_stitch(predictions: np.ndarray, origins: np.ndarray, read: Box, scale: int, border: int = 0) -> np.ndarray:
    """Canvas over `read`·scale: at each pixel the maximum of the windows whose interior covers it, or,
    where no interior does, the maximum of every window that covers it; NaN where no window does.

    predictions: (N, scale·size, scale·size) confidences of the windows whose input origins are `origins`
    (global input-lattice rows/cols). border: input pixels on each side of a window outside its interior;
    0 is the plain maximum over covering windows. The one-channel case of `stitch(method="max")`.
    """
    return stitch(np.asarray(predictions)[:, None], origins, read, scale, "max", border)[0]


def _max(predictions: np.ndarray, local: np.ndarray, order: np.ndarray, out_box: Box, m: int) -> np.ndarray:
    """Interior maximum with the rim rule; `m` is the border in output px, `local` the windows' canvas origins."""
    k, n = predictions.shape[1], predictions.shape[-1]
    canvas = np.full((k, *out_box.shape), np.nan, dtype=np.float32)
    for i in order:
        r, c = local[i]
        view = canvas[:, r + m:r + n - m, c + m:c + n - m]
        np.fmax(view, predictions[i, :, m:n - m, m:n - m], out=view)  # fmax: NaN (not yet covered) gives way
    if m == 0:
        return canvas
    # Pixels no interior reaches (the rim of the windows, or next to windows left out) take the maximum
    # over every window covering them; where an interior reached, nothing changes.
    no_interior = np.isnan(canvas)
    for i in order:
        r, c = local[i]
        view = canvas[:, r:r + n, c:c + n]
        np.fmax(view, predictions[i], out=view, where=no_interior[:, r:r + n, c:c + n])
    return canvas


def _mean(predictions: np.ndarray, local: np.ndarray, order: np.ndarray, out_box: Box,
          weight: np.ndarray | None) -> np.ndarray:
    """Weighted mean over the covering windows where their values are finite; `weight` None is flat."""
    k, n = predictions.shape[1], predictions.shape[-1]
    canvas = np.empty((k, *out_box.shape), dtype=np.float32)
    # One channel at a time in float64: two planes of accumulators whatever K (a head may have many classes), and
    # the mean of equal values is that value exactly.
    num = np.empty(out_box.shape, dtype=np.float64)
    den = np.empty(out_box.shape, dtype=np.float64)
    for channel in range(k):
        num.fill(0.0)
        den.fill(0.0)
        for i in order:
            r, c = local[i]
            value = predictions[i, channel]
            term = value.astype(np.float64) if weight is None else weight * value
            w = 1.0 if weight is None else weight
            num_view, den_view = num[r:r + n, c:c + n], den[r:r + n, c:c + n]
            finite = np.isfinite(value)
            if finite.all():
                num_view += term
                den_view += w
            else:  # NaN: this window says nothing here, so it neither adds a value nor a weight
                np.add(num_view, term, out=num_view, where=finite)
                np.add(den_view, w, out=den_view, where=finite)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(num, den, out=num)
        num[den == 0] = np.nan
        canvas[channel] = num
    return canvas
