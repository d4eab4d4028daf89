"""The numba kernels against plain NumPy references."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mapgen.pipeline import kernels
from mapgen.pipeline.kernels import BACKGROUND, FOREGROUND, NODATA

CODES = st.sampled_from([0, 1, 255])


def vote_reference(stack: np.ndarray) -> np.ndarray:
    out = stack.copy()
    for t in range(1, len(stack) - 1):
        trio = stack[t - 1:t + 2].astype(int)
        complete = (trio != 255).all(axis=0)
        majority = np.where(trio.sum(axis=0) >= 2, 1, 0)
        out[t] = np.where(complete, majority, stack[t])
    return out


@settings(max_examples=200, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 8), st.integers(1, 6), st.integers(1, 6)), elements=CODES))
def test_vote_equals_numpy_reference(stack):
    out = kernels.majority_vote(stack)
    np.testing.assert_array_equal(out, vote_reference(stack))
    # edge years untouched
    np.testing.assert_array_equal(out[0], stack[0])
    np.testing.assert_array_equal(out[-1], stack[-1])


def test_vote_by_hand():
    stack = np.array([0, 1, 0, 0, 1, 1], dtype=np.uint8)[:, None, None]
    # 2017: (0,1,0) → 0; 2018: (1,0,0) → 0; 2019: (0,0,1) → 0; 2020: (0,1,1) → 1
    assert kernels.majority_vote(stack)[:, 0, 0].tolist() == [0, 0, 0, 0, 1, 1]


def bilinear_reference(layer: np.ndarray, scale: int) -> np.ndarray:
    """Upsample the interior of a haloed layer with pixel-centre alignment."""
    h, w = layer.shape[0] - 2, layer.shape[1] - 2
    y = (np.arange(h * scale) + 0.5) / scale - 0.5
    x = (np.arange(w * scale) + 0.5) / scale - 0.5
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    centre = np.repeat(np.repeat(layer[1:-1, 1:-1], scale, 0), scale, 1)

    def at(dy, dx):
        v = layer[(y0 + 1 + dy)[:, None], (x0 + 1 + dx)[None, :]]
        return np.where(np.isnan(v), centre, v)

    return (at(0, 0) * (1 - fx) + at(0, 1) * fx) * (1 - fy) + (at(1, 0) * (1 - fx) + at(1, 1) * fx) * fy


def post_reference(conf, valid, layer, thr, layer_thr, scale):
    parent_valid = np.repeat(np.repeat(valid, scale, 0), scale, 1)
    centre = np.repeat(np.repeat(layer[1:-1, 1:-1], scale, 0), scale, 1)
    up = bilinear_reference(layer, scale)
    codes = np.where(conf > thr, FOREGROUND, BACKGROUND).astype(np.uint8)
    codes[(codes == FOREGROUND) & (up < layer_thr)] = BACKGROUND
    codes[~parent_valid | np.isnan(conf) | np.isnan(centre)] = NODATA
    return codes


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 2, 4]), st.integers(0, 2**31 - 1))
def test_threshold_and_mask_equal_numpy_reference(h, w, scale, seed):
    rng = np.random.default_rng(seed)
    conf = rng.random((h * scale, w * scale), dtype=np.float32)
    conf[rng.random(conf.shape) < 0.05] = np.nan
    valid = rng.random((h, w)) > 0.1
    layer = rng.random((h + 2, w + 2), dtype=np.float32)
    layer[rng.random(layer.shape) < 0.1] = np.nan
    codes = kernels.threshold(conf, valid, 0.5, scale)
    out = kernels.mask_below(codes, layer, 0.2, scale)
    np.testing.assert_array_equal(out, post_reference(conf, valid, layer, 0.5, 0.2, scale))


def test_bilinear_matches_skimage_convention():
    # a linear ramp is reproduced exactly away from the edges by pixel-centre bilinear upsampling
    layer = np.tile(np.arange(8, dtype=np.float32), (8, 1))
    up = bilinear_reference(layer, 4)
    np.testing.assert_allclose(up[:, 4:-4], np.tile((np.arange(24) + 0.5) / 4 - 0.5 + 1, (24, 1))[:, 4:-4],
                               atol=1e-6)
