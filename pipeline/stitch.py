"""Stitching window predictions: the maximum where windows overlap."""

from __future__ import annotations

import numpy as np

from mapgen.tiles import Box


def max_stitch(predictions: np.ndarray, origins: np.ndarray, read: Box, scale: int) -> np.ndarray:
    """Canvas over `read`·scale holding, at each pixel, the maximum of every window that covers it.

    predictions: (N, scale·size, scale·size) confidences of the windows whose input origins are `origins`
    (global input-lattice rows/cols). Pixels no window covers stay NaN, so they cannot pass for data.
    """
    out_box = read.scaled(scale)
    canvas = np.full(out_box.shape, np.nan, dtype=np.float32)
    n = predictions.shape[-1]
    for (row, col), pred in zip(origins, predictions, strict=True):
        r, c = row * scale - out_box.row, col * scale - out_box.col
        view = canvas[r:r + n, c:c + n]
        np.fmax(view, pred, out=view)  # fmax: NaN (not yet covered) gives way to the prediction
    return canvas
