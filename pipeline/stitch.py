"""Stitching window predictions: the maximum where windows overlap, window borders yielding to interiors.

A network sees least context at the border of its window (zero padding in every convolution), and out of
its training range that is where it errs most. With a plain maximum the border of one window overrules
the interior of its neighbour, so its errors draw lines along the window lattice. Each window therefore
has a border of `border` input pixels that counts only where no window's interior covers the pixel.
Which windows cover a pixel depends only on the global lattice, not on the block being stitched, so the
result stays independent of how the region was cut into blocks.
"""

from __future__ import annotations

import numpy as np

from mapgen.tiles import Box


def max_stitch(predictions: np.ndarray, origins: np.ndarray, read: Box, scale: int, border: int = 0) -> np.ndarray:
    """Canvas over `read`·scale: at each pixel the maximum of the windows whose interior covers it, or,
    where no interior does, the maximum of every window that covers it; NaN where no window does.

    predictions: (N, scale·size, scale·size) confidences of the windows whose input origins are `origins`
    (global input-lattice rows/cols). border: input pixels on each side of a window outside its interior;
    0 is the plain maximum over covering windows.
    """
    out_box = read.scaled(scale)
    canvas = np.full(out_box.shape, np.nan, dtype=np.float32)
    n = predictions.shape[-1]
    m = border * scale
    if 2 * m >= n and len(predictions):
        raise ValueError(f"border {border} leaves no interior in windows of {n // scale} px")
    local = origins * scale - np.array([out_box.row, out_box.col])
    for (r, c), pred in zip(local, predictions, strict=True):
        view = canvas[r + m:r + n - m, c + m:c + n - m]
        np.fmax(view, pred[m:n - m, m:n - m], out=view)  # fmax: NaN (not yet covered) gives way
    if m == 0:
        return canvas
    # Pixels no interior reaches (the rim of the windows, or next to windows left out) take the maximum
    # over every window covering them; where an interior reached, nothing changes.
    no_interior = np.isnan(canvas)
    for (r, c), pred in zip(local, predictions, strict=True):
        view = canvas[r:r + n, c:c + n]
        np.fmax(view, pred, out=view, where=no_interior[r:r + n, c:c + n])
    return canvas
