"""Small numpy image tools: value noise, bilinear resampling, separable filters (no scipy)."""

from __future__ import annotations

import numpy as np


def _axis_weights(n_out: int, n_in: int, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights to linearly interpolate n_out samples from n_in, `step` output px per input px.

    Pixel centres are aligned (output centre i sits at input coordinate (i + 0.5) / step - 0.5).
    """
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) / step - 0.5
    pos = np.clip(pos, 0.0, n_in - 1.0)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def resize_x(a: np.ndarray, n_out: int, step: float) -> np.ndarray:
    """Linear interpolation along the last axis."""
    i0, i1, w = _axis_weights(n_out, a.shape[-1], step)
    return a[..., i0] * (1.0 - w) + a[..., i1] * w


def resize_rows(a: np.ndarray, r0: int, r1: int, step: float) -> np.ndarray:
    """Rows r0..r1 of a linear interpolation along the first axis (so a big output is made in strips)."""
    i0, i1, w = _axis_weights(r1, a.shape[0], step)  # the weights of row r depend only on r
    i0, i1, w = i0[r0:r1], i1[r0:r1], w[r0:r1, None]
    return a[i0] * (1.0 - w) + a[i1] * w


def bilinear(a: np.ndarray, shape: tuple[int, int], step: float) -> np.ndarray:
    """Upsample a 2-D array by `step` output pixels per input pixel to exactly `shape`."""
    return resize_rows(resize_x(a, shape[1], step), 0, shape[0], step).astype(np.float32)


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cells: list[float],
                weights: list[float]) -> np.ndarray:
    """Smooth random field of `shape`, zero mean and unit std: octaves of bilinear value noise.

    cells: the feature size of each octave in output pixels.
    """
    out = np.zeros(shape, dtype=np.float32)
    for cell, wgt in zip(cells, weights, strict=True):
        cell = max(float(cell), 1.0)
        coarse = rng.standard_normal((int(np.ceil(shape[0] / cell)) + 2, int(np.ceil(shape[1] / cell)) + 2))
        out += wgt * bilinear(coarse.astype(np.float32), shape, cell)
    out -= out.mean()
    std = float(out.std())
    return out / std if std > 0 else out


def _convolve_rows(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Convolve along axis 0 with a symmetric odd kernel, replicating the edge rows (no padded copy)."""
    r = len(k) // 2
    out = a * k[r]
    for d in range(1, r + 1):  # slices past the edge are empty; the edge terms then cover every row
        out[d:] += k[r - d] * a[:-d]
        out[:-d] += k[r + d] * a[d:]
        out[:d] += k[r - d] * a[:1]
        out[-d:] += k[r + d] * a[-1:]
    return out


def separable(a: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve a 2-D array with a symmetric 1-D kernel along both axes, edges replicated."""
    k = np.asarray(kernel, dtype=np.float32)
    tmp = _convolve_rows(np.asarray(a, dtype=np.float32), k)
    return np.ascontiguousarray(_convolve_rows(tmp.T, k).T)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised Gaussian taps out to ~2 sigma: the small sigmas used here need only 3-5 taps."""
    r = max(1, int(round(2.0 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def box_mean(a: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size window (odd size, small), edges replicated."""
    return separable(a, np.full(size, 1.0 / size, dtype=np.float32))
