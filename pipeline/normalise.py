"""The normalisation the network sees: per band (x − mean) / std, a pixel with any band missing → 0.

One implementation for the engine's reads and for training (`mapgen.training.Normalisation` calls it), so that
what a checkpoint was trained on and what it is run on cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalise(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float], *,
              valid: np.ndarray | None = None) -> np.ndarray:
    """(C, H, W) or (N, C, H, W) reflectance (NaN = no data) → float32 z-scores, band by band.

    A pixel with any band missing is 0 in every band (zero padding, as the windows' edges). `valid`, when the
    caller has it already, is the mask of pixels with every band (shape (H, W), or anything that broadcasts
    against `pixels`); by default it is computed here.
    """
    shape = [1] * pixels.ndim
    shape[-3] = len(mean)
    mean_ = np.asarray(mean, dtype=np.float32).reshape(shape)
    std_ = np.asarray(std, dtype=np.float32).reshape(shape)
    if valid is None:
        valid = np.isfinite(pixels).all(axis=-3, keepdims=True)
    return np.where(valid, (pixels - mean_) / std_, 0.0).astype(np.float32)
