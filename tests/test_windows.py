"""Window lattice and max stitching (DESIGN invariant 2)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mapgen.pipeline.stitch import max_stitch
from mapgen.pipeline.windows import WindowLattice
from mapgen.tiles import Box


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 300), st.integers(1, 300),
       st.integers(2, 64), st.integers(0, 30))
def test_windows_cover_box_on_global_lattice(row, col, h, w, size, overlap):
    overlap = min(overlap, size - 1)
    lattice = WindowLattice(size, size - overlap)
    box = Box(row, col, h, w)
    read, origins = lattice.covering(box)
    assert read.contains(box)
    assert (origins % lattice.stride == 0).all()  # anchored on the global lattice, not the block
    cover = np.zeros(read.shape, dtype=int)
    for r, c in origins - [read.row, read.col]:
        cover[r:r + size, c:c + size] += 1
        # each window meets the box
        assert r + read.row < box.row_stop and r + read.row + size > box.row
        assert c + read.col < box.col_stop and c + read.col + size > box.col
    rows, cols = box.slices_in(read)
    assert (cover[rows, cols] >= 1).all()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 500), st.integers(0, 500), st.integers(1, 40), st.integers(1, 40),
       st.sampled_from([(8, 6), (8, 8), (6, 4)]), st.sampled_from([1, 2, 4]), st.integers(0, 2**31 - 1))
def test_max_stitch_is_max_over_covering_windows(row, col, h, w, size_stride, scale, seed):
    size, stride = size_stride
    lattice = WindowLattice(size, stride)
    read, origins = lattice.covering(Box(row, col, h, w))
    rng = np.random.default_rng(seed)
    preds = rng.random((len(origins), size * scale, size * scale), dtype=np.float32)
    canvas = max_stitch(preds, origins, read, scale)
    # brute force: every output pixel is the max over all windows covering it
    out_box = read.scaled(scale)
    expect = np.full(out_box.shape, -np.inf, dtype=np.float32)
    for (r, c), p in zip(origins, preds, strict=True):
        rr, cc = r * scale - out_box.row, c * scale - out_box.col
        expect[rr:rr + size * scale, cc:cc + size * scale] = np.maximum(
            expect[rr:rr + size * scale, cc:cc + size * scale], p)
    np.testing.assert_array_equal(canvas, expect)


def test_decomposition_of_windows():
    # the windows of a box are exactly the union of those of its two halves
    lattice = WindowLattice(64, 58)
    whole = Box(1000, 2000, 300, 200)
    left, right = Box(1000, 2000, 300, 100), Box(1000, 2100, 300, 100)
    _, ow = lattice.covering(whole)
    _, ol = lattice.covering(left)
    _, orr = lattice.covering(right)
    assert {tuple(o) for o in ow} == {tuple(o) for o in ol} | {tuple(o) for o in orr}


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 200))
def test_most_covering_is_the_most_windows_any_span_meets(size, stride, span):
    stride = min(stride, size)
    lattice = WindowLattice(size, stride)
    counts = {len(np.unique(lattice.covering(Box(0, start, 1, span))[1][:, 1])) for start in range(-stride, 2 * stride)}
    assert lattice.most_covering(span) == max(counts)
