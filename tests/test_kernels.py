"""The numba kernels against plain NumPy references."""

from __future__ import annotations

import numba
import numpy as np
import pytest
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
    assert_vote(stack, vote_reference)


def assert_vote(stack: np.ndarray, reference) -> None:
    out = kernels.majority_vote(stack)
    np.testing.assert_array_equal(out, reference(stack))
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


def threshold_reference(conf, valid, thr, scale):
    parent_valid = np.repeat(np.repeat(valid, scale, 0), scale, 1)
    # the kernel compares in float64 (numba widens the float32 confidence); NumPy ≥ 2 would narrow `thr`
    codes = np.where(conf.astype(np.float64) > thr, FOREGROUND, BACKGROUND).astype(np.uint8)
    codes[~parent_valid | np.isnan(conf)] = NODATA
    return codes


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


# ---- the kernels as first written (binary codes only), kept verbatim as references ------------------------

@numba.njit
def mask_below_v0(codes: np.ndarray, layer: np.ndarray, layer_threshold: float, scale: int) -> np.ndarray:
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


def test_codes_are_those_of_classes():
    from mapgen.pipeline import classes

    assert (kernels.BACKGROUND, kernels.FOREGROUND, kernels.NODATA) == (classes.BACKGROUND, classes.FOREGROUND,
                                                                         classes.NODATA) == (0, 1, 255)


def random_layer(rng: np.random.Generator, h: int, w: int, thr: float) -> np.ndarray:
    """A haloed layer with NaNs, some values exactly at the threshold (to pin `<` against `≤`)."""
    layer = rng.random((h + 2, w + 2), dtype=np.float32)
    layer[rng.random(layer.shape) < 0.1] = np.float32(thr)
    layer[rng.random(layer.shape) < 0.1] = np.nan
    return layer


THRESHOLDS = st.sampled_from([0.0, 0.2, 0.5, 1.0, 0.37])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 2, 4]), THRESHOLDS, st.integers(0, 2**31 - 1))
def test_mask_binary_equals_first_kernel(h, w, scale, thr, seed):
    rng = np.random.default_rng(seed)
    codes = rng.choice(np.array([0, 1, 255], np.uint8), size=(h * scale, w * scale))
    layer = random_layer(rng, h, w, thr)
    expected = mask_below_v0(codes, layer, thr, scale)
    np.testing.assert_array_equal(kernels.mask_below(codes, layer, thr, scale), expected)
    np.testing.assert_array_equal(kernels.mask_below(codes, layer, thr, scale, resampling="bilinear",
                                                     fill=BACKGROUND), expected)


def mask_reference(codes, layer, thr, scale, resampling, fill):
    centre = np.repeat(np.repeat(layer[1:-1, 1:-1], scale, 0), scale, 1)
    # in float64 as the kernel (a float32 centre against a Python float would be narrowed by NumPy ≥ 2)
    up = bilinear_reference(layer, scale) if resampling == "bilinear" else centre.astype(np.float64)
    out = np.where((codes != NODATA) & (up < thr), np.uint8(fill), codes).astype(np.uint8)
    out[np.isnan(centre)] = NODATA
    return out


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 2, 4]), THRESHOLDS,
       st.sampled_from(["bilinear", "nearest"]), st.sampled_from([0, 1, 3, 17, 254, 255]), st.integers(1, 18),
       st.integers(0, 2**31 - 1))
def test_mask_equals_numpy_reference(h, w, scale, thr, resampling, fill, n_classes, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_classes, size=(h * scale, w * scale)).astype(np.uint8)
    codes[rng.random(codes.shape) < 0.1] = NODATA
    layer = random_layer(rng, h, w, thr)
    out = kernels.mask_below(codes, layer, thr, scale, resampling=resampling, fill=fill)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, mask_reference(codes, layer, thr, scale, resampling, fill))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_mask_at_scale_one_is_the_same_either_way(h, w, seed):
    # at scale 1 every output pixel sits on its input pixel's centre: bilinear weights are 1, 0, 0, 0
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(h, w)).astype(np.uint8)
    layer = random_layer(rng, h, w, 0.5)
    np.testing.assert_array_equal(kernels.mask_below(codes, layer, 0.5, 1, resampling="bilinear", fill=7),
                                  kernels.mask_below(codes, layer, 0.5, 1, resampling="nearest", fill=7))


def test_mask_nearest_by_hand():
    layer = np.full((3, 4), np.nan, np.float32)
    layer[1, 1:3] = [0.1, 0.9]  # input pixels: below, above
    codes = np.array([[3, 255, 3, 3], [0, 3, 255, 3]], np.uint8)
    out = kernels.mask_below(codes, layer, 0.5, 2, resampling="nearest", fill=9)
    assert out.tolist() == [[9, 255, 3, 3], [9, 9, 255, 3]]


def test_mask_refusals():
    codes, layer = np.zeros((4, 4), np.uint8), np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="resampling"):
        kernels.mask_below(codes, layer, 0.2, 4, resampling="cubic")
    with pytest.raises(ValueError, match="fill"):
        kernels.mask_below(codes, layer, 0.2, 4, fill=256)
    with pytest.raises(ValueError, match="shape"):
        kernels.mask_below(codes, layer, 0.2, 2)
    with pytest.raises(ValueError, match="shape"):
        kernels.mask_below(codes, np.zeros((1, 1), np.float32), 0.2, 4)


# ---- argmax -------------------------------------------------------------------------------------------------

def argmax_reference(scores, valid, offset, scale):
    parent_valid = np.repeat(np.repeat(valid, scale, 0), scale, 1)
    codes = (np.argmax(scores, axis=0) + offset).astype(np.uint8)
    codes[~parent_valid | np.isnan(scores).any(axis=0)] = NODATA
    return codes


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 18), st.sampled_from([0, 1]), st.integers(1, 7), st.integers(1, 7), st.sampled_from([1, 2, 4]),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_argmax_equals_numpy_reference(k, offset, h, w, scale, coarse, seed):
    rng = np.random.default_rng(seed)
    shape = (k, h * scale, w * scale)
    # coarse scores take few values, so ties (first class wins) are common
    scores = (rng.integers(0, 3, shape) if coarse else rng.standard_normal(shape)).astype(np.float32)
    special = rng.random(shape)
    scores[special < 0.02] = np.nan
    scores[(special >= 0.02) & (special < 0.04)] = np.inf
    scores[(special >= 0.04) & (special < 0.06)] = -np.inf
    valid = rng.random((h, w)) > 0.1
    out = kernels.argmax(scores, valid, offset, scale)
    assert out.dtype == np.uint8 and out.shape == shape[1:]
    np.testing.assert_array_equal(out, argmax_reference(scores, valid, offset, scale))


def test_argmax_by_hand():
    scores = np.array([[[0.1, 0.5, np.nan, 0.3]], [[0.2, 0.5, 0.9, 0.1]], [[0.2, 0.1, 0.0, 0.2]]], np.float32)
    valid = np.array([[True, True, True, False]])
    # pixel 0: classes 1 and 2 tie → 1; pixel 1: 0 and 1 tie → 0; pixel 2: a NaN; pixel 3: not valid
    assert kernels.argmax(scores, valid, 1, 1).tolist() == [[2, 1, 255, 255]]


def test_argmax_codes_end_below_nodata():
    valid = np.ones((1, 1), bool)
    scores = np.zeros((255, 1, 1), np.float32)
    scores[-1] = 1
    assert kernels.argmax(scores, valid, 0, 1)[0, 0] == 254  # the largest class code there is
    with pytest.raises(ValueError, match="254"):
        kernels.argmax(scores, valid, 1, 1)
    with pytest.raises(ValueError, match="254"):
        kernels.argmax(np.zeros((256, 1, 1), np.float32), valid, 0, 1)
    with pytest.raises(ValueError, match="254"):
        kernels.argmax(np.zeros((18, 1, 1), np.float32), valid, 238, 1)
    assert kernels.argmax(np.zeros((18, 1, 1), np.float32), valid, 237, 1)[0, 0] == 237
    with pytest.raises(ValueError, match="K = 0"):
        kernels.argmax(np.zeros((0, 1, 1), np.float32), valid, 0, 1)
    with pytest.raises(ValueError, match="offset"):
        kernels.argmax(np.zeros((2, 1, 1), np.float32), valid, -1, 1)
    with pytest.raises(ValueError, match="shape"):
        kernels.argmax(np.zeros((2, 4, 4), np.float32), valid, 0, 2)


# ---- majority vote ------------------------------------------------------------------------------------------

def vote_reference_any(stack: np.ndarray) -> np.ndarray:
    """The mode of each trio counted out, the middle date's code where all three differ."""
    out = stack.copy()
    for t in range(1, len(stack) - 1):
        for i, j in np.ndindex(stack.shape[1:]):
            trio = [int(v) for v in stack[t - 1:t + 2, i, j]]
            if NODATA in trio:
                continue
            counts = {v: trio.count(v) for v in trio}
            top = max(counts.values())
            out[t, i, j] = next(v for v in trio if counts[v] == top) if top >= 2 else trio[1]
    return out


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 18).flatmap(lambda k: arrays(
    np.uint8, st.tuples(st.integers(1, 8), st.integers(1, 6), st.integers(1, 6)),
    elements=st.one_of(st.integers(0, k - 1), st.just(255)))))
def test_vote_equals_numpy_reference_any_classes(stack):
    # binary stacks keep matching `vote_reference` (the sum ≥ 2 of the binary kernel) above: results unchanged
    assert_vote(stack, vote_reference_any)


def test_vote_any_classes_by_hand():
    stack = np.array([[2, 2, 2, 2, 4], [5, 5, 2, 5, 255], [2, 7, 9, 5, 4]], np.uint8)[:, None, :]
    # (2,5,2) → 2; (2,5,7) all differ → 5; (2,2,9) → 2; (2,5,5) → 5; a NODATA date → left as it is
    assert kernels.majority_vote(stack)[1, 0].tolist() == [2, 5, 2, 5, 255]
    with pytest.raises(ValueError, match="T, H, W"):
        kernels.majority_vote(np.zeros((3, 3), np.uint8))


# ---- change -------------------------------------------------------------------------------------------------

def change_reference(before, after):
    out = (before != after).astype(np.uint8)
    out[(before == NODATA) | (after == NODATA)] = NODATA
    return out


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 18), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_change_equals_numpy_reference(k, h, w, seed):
    rng = np.random.default_rng(seed)
    before, after = (rng.integers(0, k, (h, w)).astype(np.uint8) for _ in range(2))
    before[rng.random((h, w)) < 0.1] = NODATA
    after[rng.random((h, w)) < 0.1] = NODATA
    out = kernels.change(before, after)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, change_reference(before, after))


def test_change_by_hand():
    before = np.array([[0, 3, 255, 7, 255]], np.uint8)
    after = np.array([[0, 4, 3, 255, 255]], np.uint8)
    assert kernels.change(before, after).tolist() == [[0, 1, 255, 255, 255]]
    with pytest.raises(ValueError, match="shape"):
        kernels.change(before, after[:, :3])


# ---- the vectorised, parallel kernels: wide rows, every scale path, threads ------------------------------
# Rows wider than a vector (32 bytes) with odd remainders, so that vector bodies and their scalar tails both
# run; scale 3 takes the kernels' general paths (1, 2 and 4 have their own), and T = 1, 2 the vote's edges.

SCALES = st.sampled_from([1, 2, 3, 4])
# 0.7 is above its float32 (0.2 and 0.37 below theirs): a value at the threshold compares as in float64
WIDE_THRESHOLDS = st.sampled_from([0.0, 0.2, 0.37, 0.5, 0.7, 1.0])


def special_layer(rng: np.random.Generator, h: int, w: int, thr: float) -> np.ndarray:
    """`random_layer` with some infinities too (inf · 0 = NaN in the interpolation: pinned, not assumed)."""
    layer = random_layer(rng, h, w, thr)
    special = rng.random(layer.shape)
    layer[special < 0.02] = np.inf
    layer[(special >= 0.02) & (special < 0.04)] = -np.inf
    return layer


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5), st.integers(1, 45), SCALES, WIDE_THRESHOLDS, st.integers(0, 2**31 - 1))
def test_threshold_equals_numpy_reference(h, w, scale, thr, seed):
    rng = np.random.default_rng(seed)
    conf = rng.random((h * scale, w * scale), dtype=np.float32)
    conf[rng.random(conf.shape) < 0.1] = np.float32(thr)  # exactly at the threshold: `>`, not `≥`
    conf[rng.random(conf.shape) < 0.05] = np.nan
    valid = rng.random((h, w)) > 0.1
    out = kernels.threshold(conf, valid, thr, scale)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, threshold_reference(conf, valid, thr, scale))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 5), st.integers(1, 45), SCALES, WIDE_THRESHOLDS, st.sampled_from(["bilinear", "nearest"]),
       st.sampled_from([0, 3, 255]), st.integers(0, 2**31 - 1))
def test_mask_wide_rows_equal_numpy_reference(h, w, scale, thr, resampling, fill, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 5, size=(h * scale, w * scale)).astype(np.uint8)
    codes[rng.random(codes.shape) < 0.1] = NODATA
    layer = special_layer(rng, h, w, thr)
    out = kernels.mask_below(codes, layer, thr, scale, resampling=resampling, fill=fill)
    with np.errstate(invalid="ignore"):  # inf · 0
        expected = mask_reference(codes, layer, thr, scale, resampling, fill)
    np.testing.assert_array_equal(out, expected)
    if resampling == "bilinear" and fill == BACKGROUND:
        binary = np.where(codes == NODATA, NODATA, codes % 2).astype(np.uint8)
        np.testing.assert_array_equal(kernels.mask_below(binary, layer, thr, scale),
                                      mask_below_v0(binary, layer, thr, scale))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.sampled_from([0, 2]), st.integers(1, 4), st.integers(1, 45), SCALES,
       st.integers(0, 2**31 - 1))
def test_argmax_wide_rows_equal_numpy_reference(k, offset, h, w, scale, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, (k, h * scale, w * scale)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.02] = np.nan
    valid = rng.random((h, w)) > 0.1
    np.testing.assert_array_equal(kernels.argmax(scores, valid, offset, scale),
                                  argmax_reference(scores, valid, offset, scale))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 140), st.integers(0, 2**31 - 1))
def test_vote_and_change_wide_rows_equal_numpy_reference(t_len, h, w, seed):
    rng = np.random.default_rng(seed)
    stack = rng.choice(np.array([0, 1, 255], np.uint8), size=(t_len, h, w))
    assert_vote(stack, vote_reference)
    np.testing.assert_array_equal(kernels.change(stack[0], stack[-1]), change_reference(stack[0], stack[-1]))


def test_kernels_take_views_and_empty_stacks():
    rng = np.random.default_rng(1)
    stack = rng.choice(np.array([0, 1, 255], np.uint8), size=(5, 40, 70))
    view = stack[:, ::2, 1::3]  # not contiguous
    np.testing.assert_array_equal(kernels.majority_vote(view), vote_reference(view))
    np.testing.assert_array_equal(kernels.change(view[0], view[1]), change_reference(view[0], view[1]))
    assert kernels.majority_vote(np.zeros((0, 3, 4), np.uint8)).shape == (0, 3, 4)
    conf = rng.random((16, 24), dtype=np.float32).T  # Fortran order
    valid = rng.random((6, 4)) > 0.2
    np.testing.assert_array_equal(kernels.threshold(conf, valid, 0.5, 4), threshold_reference(conf, valid, 0.5, 4))


def test_two_threads_at_once_both_get_the_right_answer():
    """Dask runs two tasks of a worker at once: two threads in one parallel kernel must not abort the process
    (numba's workqueue layer would) nor mix up their results."""
    import threading

    rng = np.random.default_rng(2)
    stacks = [rng.choice(np.array([0, 1, 255], np.uint8), size=(6, 300, 308)) for _ in range(2)]
    layers = [random_layer(rng, 75, 77, 0.5) for _ in range(2)]
    expected = [(vote_reference(s), mask_reference(s[0], layer, 0.5, 4, "bilinear", 0))
                for s, layer in zip(stacks, layers, strict=True)]
    start, failures = threading.Barrier(2), []

    def work(n: int) -> None:
        kernels.set_threads(2)
        start.wait()
        for _ in range(20):
            vote = kernels.majority_vote(stacks[n])
            mask = kernels.mask_below(stacks[n][0], layers[n], 0.5, 4)
            if not (np.array_equal(vote, expected[n][0]) and np.array_equal(mask, expected[n][1])):
                failures.append(n)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not failures
    assert numba.threading_layer() in kernels.THREADSAFE_LAYERS


def test_set_threads_is_per_thread_and_clamped():
    import threading

    most = numba.config.NUMBA_NUM_THREADS
    seen = {}
    kernels.set_threads(1)
    try:
        assert kernels.threads() == 1

        def other() -> None:
            seen["before"] = kernels.threads()  # a thread that never set it: all of numba's threads
            kernels.set_threads(most + 5)  # more than numba launched: clamped
            seen["after"] = kernels.threads()

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert seen == {"before": most, "after": most}
        assert kernels.threads() == 1  # this thread's count is its own
        kernels.set_threads(0)
        assert kernels.threads() == 1
    finally:
        kernels.set_threads(most)


def test_an_unsafe_threading_layer_is_not_taken():
    """NUMBA_THREADING_LAYER=workqueue (not thread-safe) is overridden when the kernels are imported first."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np, numba; from mapgen.pipeline import kernels; "
            "kernels.change(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8)); print(numba.threading_layer())")
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in kernels.THREADSAFE_LAYERS
