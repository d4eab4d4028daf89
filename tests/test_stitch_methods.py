"""Stitching per model head by the product's method (max, or the flat or tent-weighted mean): against a
brute-force reference of each definition, independent of the block cut bit for bit, and refusing what
it cannot mean."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapgen.pipeline.stitch import max_stitch, stitch, tent_ramp, tent_weights
from mapgen.pipeline.windows import WindowLattice
from mapgen.tiles import Box

# (method, weights, border): every combination the stitcher accepts.
COMBOS = [("max", "flat", b) for b in range(4)] + [("mean", "flat", 0), ("mean", "tent", 0)]


def reference(predictions: np.ndarray, origins: np.ndarray, read: Box, scale: int, method: str, border: int,
              weights: str) -> np.ndarray:
    """Each definition computed directly: per pixel (vectorised over the pixels), loop over the windows.

    max: the fmax over windows whose interior covers the pixel; where that leaves NaN (no interior, or only
    NaN values there), the fmax over every covering window. mean: Σ w·v / Σ w in float64 over covering
    windows with finite v, w = r(i)·r(j), r(i) = min(i + 0.5, S − i − 0.5) / (S / 2) for tent, 1 for flat.
    """
    out = read.scaled(scale)
    size, m = predictions.shape[-1], border * scale
    ys = out.row + np.arange(out.height)[:, None]  # global output coordinates of every pixel
    xs = out.col + np.arange(out.width)[None, :]
    result = np.empty((predictions.shape[1], *out.shape), dtype=np.float32)
    for k in range(predictions.shape[1]):
        best_interior = np.full(out.shape, np.nan, dtype=np.float32)
        best_any = np.full(out.shape, np.nan, dtype=np.float32)
        num = np.zeros(out.shape)
        den = np.zeros(out.shape)
        for (row, col), pred in zip(origins * scale, predictions[:, k], strict=True):
            dy, dx = ys - row, xs - col  # the pixel's position inside this window
            inside = (dy >= 0) & (dy < size) & (dx >= 0) & (dx < size)
            interior = (dy >= m) & (dy < size - m) & (dx >= m) & (dx < size - m)
            dy, dx = np.clip(dy, 0, size - 1), np.clip(dx, 0, size - 1)
            value = pred[dy, dx]
            best_any = np.where(inside, np.fmax(best_any, value), best_any)
            best_interior = np.where(interior, np.fmax(best_interior, value), best_interior)
            if weights == "tent":
                w = (np.minimum(dy + 0.5, size - dy - 0.5) / (size / 2)) * (np.minimum(dx + 0.5, size - dx - 0.5)
                                                                            / (size / 2))
            else:
                w = np.ones(out.shape)
            says = inside & np.isfinite(value)
            num += np.where(says, w * value.astype(np.float64), 0.0)
            den += np.where(says, w, 0.0)
        if method == "max":
            result[k] = np.where(np.isnan(best_interior), best_any, best_interior)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                result[k] = np.where(den > 0, num / den, np.nan)
    return result


def window_values(origins: np.ndarray, channels: int, n: int, seed: int, nan: float = 0.0) -> np.ndarray:
    """Predictions that depend only on a window's global origin, as a model's do: (N, K, n, n), with a
    share `nan` of NaN pixels (also fixed by the origin)."""
    out = np.empty((len(origins), channels, n, n), dtype=np.float32)
    for i, (r, c) in enumerate(origins):
        rng = np.random.default_rng([seed, int(r) + 2**20, int(c) + 2**20])
        out[i] = rng.standard_normal((channels, n, n), dtype=np.float32)
        out[i][rng.random((channels, n, n)) < nan] = np.nan
    return out


def kept(origins: np.ndarray, seed: int, drop: float) -> np.ndarray:
    """Which windows are left out, decided by the global origin alone (as no-data windows are)."""
    keep = [np.random.default_rng([seed, 7, int(r) + 2**20, int(c) + 2**20]).random() >= drop for r, c in origins]
    return np.array(keep, dtype=bool)


@settings(max_examples=300, deadline=None)
@given(st.integers(-300, 300), st.integers(-300, 300), st.integers(1, 20), st.integers(1, 20),
       st.sampled_from([(8, 6), (8, 4), (6, 3), (9, 5), (8, 8), (4, 2)]), st.sampled_from([1, 2, 4]),
       st.sampled_from([1, 3]), st.sampled_from(COMBOS), st.floats(0.0, 0.6), st.sampled_from([0.0, 0.0, 0.1, 0.5]),
       st.integers(0, 2**31 - 1))
def test_stitch_equals_the_definition(row, col, h, w, size_stride, scale, channels, combo, drop, nan, seed):
    size, stride = size_stride
    method, weights, border = combo
    border = min(border, (size - 1) // 2)  # any border that leaves an interior
    read, origins = WindowLattice(size, stride).covering(Box(row, col, h, w))
    rng = np.random.default_rng(seed)
    origins = origins[rng.random(len(origins)) >= drop]  # windows left out leave gaps (NaN, or the rim rule)
    preds = rng.random((len(origins), channels, size * scale, size * scale), dtype=np.float32)
    preds[rng.random(preds.shape) < nan] = np.nan  # a window saying nothing at some pixels
    shuffle = rng.permutation(len(origins))  # the caller's order must not matter
    got = stitch(preds[shuffle], origins[shuffle], read, scale, method, border, weights)
    want = reference(preds, origins, read, scale, method, border, weights)
    assert got.dtype == np.float32
    assert got.shape == (channels, read.height * scale, read.width * scale)
    if method == "max":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@settings(max_examples=150, deadline=None)
@given(st.integers(-500, 500), st.integers(-500, 500), st.integers(2, 40), st.integers(2, 40),
       st.sampled_from([(8, 6), (8, 4), (10, 7), (6, 3)]), st.sampled_from([1, 2, 4]), st.sampled_from([1, 3]),
       st.sampled_from(COMBOS), st.sampled_from([0.0, 0.3]), st.sampled_from([0.0, 0.1]), st.data())
def test_stitch_does_not_depend_on_the_block_cut(row, col, h, w, size_stride, scale, channels, combo, drop, nan,
                                                 data):
    size, stride = size_stride
    method, weights, border = combo
    border = min(border, (size - 1) // 2)
    lattice = WindowLattice(size, stride)
    whole = Box(row, col, h, w)
    if data.draw(st.booleans(), label="cut rows"):
        cut = data.draw(st.integers(1, h - 1), label="cut")
        parts = [Box(row, col, cut, w), Box(row + cut, col, h - cut, w)]
    else:
        cut = data.draw(st.integers(1, w - 1), label="cut")
        parts = [Box(row, col, h, cut), Box(row, col + cut, h, w - cut)]
    order_seed = data.draw(st.integers(0, 2**31 - 1), label="caller order")

    def stitched(box: Box) -> np.ndarray:
        read, origins = lattice.covering(box)
        origins = origins[kept(origins, 3, drop)]
        origins = origins[np.random.default_rng(order_seed).permutation(len(origins))]  # any caller order
        preds = window_values(origins, channels, size * scale, seed=5, nan=nan)
        canvas = stitch(preds, origins, read, scale, method, border, weights)
        rows, cols = box.scaled(scale).slices_in(read.scaled(scale))
        return canvas[:, rows, cols]

    one = stitched(whole)
    for part in parts:
        rows, cols = part.scaled(scale).slices_in(whole.scaled(scale))
        # Bit for bit, NaN and the sign of zero included.
        np.testing.assert_array_equal(stitched(part).view(np.uint32), one[:, rows, cols].view(np.uint32))


def test_mean_sums_windows_in_the_order_of_their_origins():
    """Float addition is not associative: with values that cancel, the order of the sum shows in the mean."""
    lattice = WindowLattice(4, 1)
    read, origins = lattice.covering(Box(0, 0, 1, 1))  # 16 windows, all covering pixel (0, 0)
    big = np.float32(1e17)  # 1e17 + 1 == 1e17 in float64
    values = np.array([big, -big, 1, 2] * 4, dtype=np.float32)
    preds = np.broadcast_to(values[:, None, None, None], (len(origins), 1, 4, 4)).copy()
    rng = np.random.default_rng(1)
    orders = [rng.permutation(len(origins)) for _ in range(30)]
    naive = {sum(float(values[i]) for i in p) for p in orders}
    assert len(naive) > 1, "the values should make the order of a plain sum show, or this test proves nothing"
    results = {stitch(preds[p], origins[p], read, 1, "mean").tobytes() for p in orders}
    assert len(results) == 1


def test_one_channel_max_is_max_stitch():
    lattice = WindowLattice(8, 6)
    read, origins = lattice.covering(Box(3, 5, 20, 17))
    preds = np.random.default_rng(0).random((len(origins), 16, 16), dtype=np.float32)
    for border in (0, 1, 3):
        np.testing.assert_array_equal(stitch(preds[:, None], origins, read, 2, "max", border)[0].view(np.uint32),
                                      max_stitch(preds, origins, read, 2, border).view(np.uint32))


def test_nan_does_not_poison_the_mean_and_max_keeps_fmax():
    origins = np.array([[0, 0], [0, 1]])  # two 2×2 windows: the first covers cols 0–1, the second cols 1–2
    read = Box(0, 0, 2, 3)
    preds = np.array([[[[1.0, 2.0], [3.0, np.nan]]], [[[5.0, np.nan], [np.nan, 8.0]]]], dtype=np.float32)
    mean = stitch(preds, origins, read, 1, "mean")[0]
    np.testing.assert_array_equal(mean, np.array([[1.0, 3.5, np.nan], [3.0, np.nan, 8.0]], dtype=np.float32))
    maximum = stitch(preds, origins, read, 1, "max")[0]
    np.testing.assert_array_equal(maximum, np.array([[1.0, 5.0, np.nan], [3.0, np.nan, 8.0]], dtype=np.float32))


def test_gaps_are_nan_for_every_method():
    read = Box(0, 0, 4, 12)
    origins = np.array([[0, 0], [0, 8]])  # the window at col 4 left out
    preds = np.ones((2, 2, 4, 4), dtype=np.float32)
    for method, weights, border in COMBOS[:2] + COMBOS[-2:]:
        canvas = stitch(preds, origins, read, 1, method, border, weights)
        assert canvas.shape == (2, 4, 12)
        assert np.isnan(canvas[:, :, 4:8]).all()
        np.testing.assert_array_equal(canvas[:, :, :4], 1.0)  # the mean of equal values is that value exactly


def test_no_windows_give_an_all_nan_canvas():
    canvas = stitch(np.zeros((0, 3, 8, 8), dtype=np.float32), np.zeros((0, 2), dtype=int), Box(5, 5, 3, 4), 2,
                    "mean", weights="tent")
    assert canvas.shape == (3, 6, 8)
    assert np.isnan(canvas).all()


@pytest.mark.parametrize("size", [2, 4, 16, 64, 100, 256, 384])
def test_tent_overlapping_at_half_a_window_sums_to_one(size):
    r = tent_ramp(size)
    np.testing.assert_array_equal(r, np.minimum(np.arange(size) + 0.5, size - np.arange(size) - 0.5) / (size / 2))
    assert (r > 0).all() and r.max() <= 1.0
    assert r.max() == (size - 1) / size  # the pixels next to the centre, which is 1
    half = size // 2
    np.testing.assert_array_equal(r[:half] + r[half:], 1.0)  # exactly, along an axis
    w = tent_weights(size)
    np.testing.assert_array_equal(w, np.outer(r, r))
    np.testing.assert_allclose(w[:half, :half] + w[:half, half:] + w[half:, :half] + w[half:, half:], 1.0,
                               rtol=0, atol=1e-15)


def test_tent_mean_at_half_window_stride_is_the_plain_weighted_sum():
    """With stride S/2 the weights already sum to one where the lattice is complete: the normalisation only
    matters at gaps and edges."""
    size, scale = 8, 2
    lattice = WindowLattice(size, size // 2)
    box = Box(10, -3, 9, 13)
    read, origins = lattice.covering(box)
    preds = window_values(origins, 2, size * scale, seed=2)
    got = stitch(preds, origins, read, scale, "mean", weights="tent")
    w = tent_weights(size * scale)
    plain = np.zeros(got.shape)
    for (r, c), p in zip((origins - [read.row, read.col]) * scale, preds, strict=True):
        plain[:, r:r + size * scale, c:c + size * scale] += w * p
    rows, cols = box.scaled(scale).slices_in(read.scaled(scale))
    np.testing.assert_allclose(got[:, rows, cols], plain[:, rows, cols], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("kwargs", "word"), [
    (dict(method="median"), "method"),
    (dict(method="mean", weights="gauss"), "weights"),
    (dict(method="max", weights="tent"), "weights"),
    (dict(method="mean", border=1), "border"),
    (dict(method="max", border=-1), "border"),
    (dict(method="max", border=4), "border"),
])
def test_what_the_stitcher_cannot_mean_is_refused(kwargs, word):
    read, origins = WindowLattice(8, 6).covering(Box(0, 0, 10, 10))
    preds = np.zeros((len(origins), 1, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError) as info:
        stitch(preds, origins, read, 1, **kwargs)
    assert "\n" not in str(info.value)
    assert word in str(info.value)


def test_windows_outside_the_read_box_are_refused():
    preds = np.zeros((1, 1, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="outside"):
        stitch(preds, np.array([[0, 3]]), Box(0, 0, 8, 10), 1)
    with pytest.raises(ValueError, match="K, S, S"):
        stitch(preds[0], np.array([[0, 0]]), Box(0, 0, 8, 8), 1)
