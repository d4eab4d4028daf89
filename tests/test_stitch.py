"""Stitching with window borders that yield to interiors (DESIGN invariant 2): against a per-pixel reference,
independent of the block cut, declared by the product, and free of seams along the window lattice."""

from __future__ import annotations

import tomllib
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapgen.pipeline.stitch import max_stitch
from mapgen.pipeline.windows import WindowLattice
from mapgen.tiles import Box
from mapgen.workflows import ProductError, load_product, parse_product


def reference_stitch(predictions: np.ndarray, origins: np.ndarray, read: Box, scale: int, border: int) -> np.ndarray:
    """Per pixel: the max over windows whose interior covers it, else over the windows covering it, else NaN."""
    out = read.scaled(scale)
    n, m = predictions.shape[-1], border * scale
    ys = out.row + np.arange(out.height)[:, None]  # global output coordinates of every pixel
    xs = out.col + np.arange(out.width)[None, :]
    best_interior = np.full(out.shape, -np.inf, dtype=np.float32)
    best_any = np.full(out.shape, -np.inf, dtype=np.float32)
    in_interior = np.zeros(out.shape, dtype=bool)
    covered = np.zeros(out.shape, dtype=bool)
    for (row, col), pred in zip(origins * scale, predictions, strict=True):
        dy, dx = ys - row, xs - col  # the pixel's position inside this window
        inside = (dy >= 0) & (dy < n) & (dx >= 0) & (dx < n)
        interior = (dy >= m) & (dy < n - m) & (dx >= m) & (dx < n - m)
        value = pred[np.clip(dy, 0, n - 1), np.clip(dx, 0, n - 1)]
        best_any = np.where(inside, np.maximum(best_any, value), best_any)
        best_interior = np.where(interior, np.maximum(best_interior, value), best_interior)
        covered |= inside
        in_interior |= interior
    return np.where(in_interior, best_interior, np.where(covered, best_any, np.nan)).astype(np.float32)


def window_values(origins: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Predictions that depend only on a window's global origin, as a model's do: (N, n, n)."""
    return np.stack([np.random.default_rng([seed, int(r) + 2**20, int(c) + 2**20]).random((n, n), dtype=np.float32)
                     for r, c in origins])


@settings(max_examples=200, deadline=None)
@given(st.integers(-300, 300), st.integers(-300, 300), st.integers(1, 30), st.integers(1, 30),
       st.sampled_from([(8, 6), (8, 4), (6, 4), (9, 5), (8, 8)]), st.sampled_from([1, 2, 3]),
       st.integers(0, 3), st.floats(0.0, 0.6), st.integers(0, 2**31 - 1))
def test_stitch_equals_per_pixel_reference(row, col, h, w, size_stride, scale, border, drop, seed):
    size, stride = size_stride
    border = min(border, (size - 1) // 2)  # any border that leaves an interior, not only the product's
    read, origins = WindowLattice(size, stride).covering(Box(row, col, h, w))
    rng = np.random.default_rng(seed)
    origins = origins[rng.random(len(origins)) >= drop]  # windows left out (no data) leave gaps to fall back on
    preds = rng.random((len(origins), size * scale, size * scale), dtype=np.float32)
    got = max_stitch(preds, origins, read, scale, border)
    np.testing.assert_array_equal(got, reference_stitch(preds, origins, read, scale, border))


@settings(max_examples=100, deadline=None)
@given(st.integers(-500, 500), st.integers(-500, 500), st.integers(2, 60), st.integers(2, 60),
       st.sampled_from([(8, 6, 1), (8, 4, 2), (10, 7, 1), (8, 6, 0)]), st.sampled_from([1, 4]),
       st.data())
def test_stitch_does_not_depend_on_the_block_cut(row, col, h, w, lattice_border, scale, data):
    size, stride, border = lattice_border
    lattice = WindowLattice(size, stride)
    whole = Box(row, col, h, w)
    cut_row = data.draw(st.integers(1, h - 1))
    cut_col = data.draw(st.integers(1, w - 1))
    parts = [Box(row, col, cut_row, cut_col), Box(row, col + cut_col, cut_row, w - cut_col),
             Box(row + cut_row, col, h - cut_row, cut_col), Box(row + cut_row, col + cut_col, h - cut_row, w - cut_col)]

    def stitched(box: Box) -> np.ndarray:
        read, origins = lattice.covering(box)
        canvas = max_stitch(window_values(origins, size * scale, seed=5), origins, read, scale, border)
        rows, cols = box.scaled(scale).slices_in(read.scaled(scale))
        return canvas[rows, cols]

    one = stitched(whole)
    assert np.isfinite(one).all()  # a complete lattice leaves no pixel of the box uncovered
    for part in parts:
        rows, cols = part.scaled(scale).slices_in(whole.scaled(scale))
        np.testing.assert_array_equal(stitched(part), one[rows, cols])


def test_border_zero_is_the_plain_maximum():
    lattice = WindowLattice(8, 6)
    read, origins = lattice.covering(Box(3, 5, 20, 17))
    preds = np.random.default_rng(0).random((len(origins), 16, 16), dtype=np.float32)
    np.testing.assert_array_equal(max_stitch(preds, origins, read, 2),
                                  reference_stitch(preds, origins, read, 2, border=0))
    assert not np.array_equal(max_stitch(preds, origins, read, 2, border=1), max_stitch(preds, origins, read, 2))


def legacy_max_stitch(predictions: np.ndarray, origins: np.ndarray, read: Box, scale: int, border: int) -> np.ndarray:
    """max_stitch as it was before `stitch` took over, kept verbatim: the wrapper must match it bit for bit."""
    out_box = read.scaled(scale)
    canvas = np.full(out_box.shape, np.nan, dtype=np.float32)
    n, m = predictions.shape[-1], border * scale
    local = origins * scale - np.array([out_box.row, out_box.col])
    for (r, c), pred in zip(local, predictions, strict=True):
        view = canvas[r + m:r + n - m, c + m:c + n - m]
        np.fmax(view, pred[m:n - m, m:n - m], out=view)
    if m == 0:
        return canvas
    no_interior = np.isnan(canvas)
    for (r, c), pred in zip(local, predictions, strict=True):
        view = canvas[r:r + n, c:c + n]
        np.fmax(view, pred, out=view, where=no_interior[r:r + n, c:c + n])
    return canvas


@settings(max_examples=100, deadline=None)
@given(st.integers(-300, 300), st.integers(-300, 300), st.integers(1, 30), st.integers(1, 30),
       st.sampled_from([(8, 6), (8, 4), (9, 5)]), st.sampled_from([1, 2, 4]), st.integers(0, 3),
       st.floats(0.0, 0.6), st.integers(0, 2**31 - 1))
def test_max_stitch_is_bit_identical_to_before(row, col, h, w, size_stride, scale, border, drop, seed):
    """In the callers' order (the lattice's, less windows left out), with ties of +0 and -0 and NaN pixels."""
    size, stride = size_stride
    border = min(border, (size - 1) // 2)
    read, origins = WindowLattice(size, stride).covering(Box(row, col, h, w))
    rng = np.random.default_rng(seed)
    origins = origins[rng.random(len(origins)) >= drop]
    preds = rng.random((len(origins), size * scale, size * scale), dtype=np.float32)
    preds[rng.random(preds.shape) < 0.2] = 0.0
    preds[rng.random(preds.shape) < 0.2] = -0.0  # fmax keeps its first argument on a tie: order shows here
    preds[rng.random(preds.shape) < 0.1] = np.nan
    got = max_stitch(preds, origins, read, scale, border)
    assert got.dtype == np.float32 and got.shape == read.scaled(scale).shape
    np.testing.assert_array_equal(got.view(np.uint32),
                                  legacy_max_stitch(preds, origins, read, scale, border).view(np.uint32))


def test_max_stitch_of_no_windows_is_all_nan():
    """predict_windows answers (0, 0, 0) when a block has no useful window."""
    canvas = max_stitch(np.zeros((0, 0, 0), dtype=np.float32), np.zeros((0, 2), dtype=int), Box(3, 4, 5, 6), 4, 3)
    assert canvas.shape == (20, 24) and np.isnan(canvas).all()


# --------------------------------------------------------------------------------------------------
# The border is product data


def _cbra(**stitch) -> dict:
    data = tomllib.loads((resources.files("mapgen.workflows.products") / "cbra.toml").read_text())
    data["stitch"] = {"method": "max", **stitch}
    return data


def test_cbra_declares_its_border():
    product = load_product("cbra")
    assert product.window.overlap_px == 6
    assert product.stitch.border == 3


@pytest.mark.parametrize(("overlap", "expected"), [(0.1, 3), (4, 2), (5, 2), (0, 0)])
def test_border_defaults_to_half_the_overlap(overlap, expected):
    data = _cbra()
    data["window"]["overlap"] = overlap
    assert parse_product(data, "x.toml").stitch.border == expected


@pytest.mark.parametrize("border", [-1, 4, 2.5, True, "two"])
def test_border_outside_half_the_overlap_is_refused(border):
    with pytest.raises(ProductError) as info:
        parse_product(_cbra(border=border), "my-cbra.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("my-cbra.toml")
    assert "border" in message


# --------------------------------------------------------------------------------------------------
# No seams: the bundled checkpoint on imagery far from its training range


def _distance_to_window_edge(start: int, length: int, stride: int, size: int, scale: int) -> np.ndarray:
    """Per output row (or column) from global output index `start`: output px to the nearest first or last
    row of a lattice window (windows start at multiples of stride·scale and end size·scale later)."""
    period = stride * scale
    phase = (start + np.arange(length)) % period
    to_first = np.minimum(phase, period - phase)
    last = (size * scale - 1) % period
    to_last = np.minimum(np.abs(phase - last), period - np.abs(phase - last))
    return np.minimum(to_first, to_last)


def _edge_to_interior_share(foreground: np.ndarray, box: Box, stride: int, size: int, scale: int) -> float:
    """Foreground share on window-edge rows and columns (within one input px of a window edge) over that on
    rows and columns well inside every window (two overlaps away from any edge)."""
    d_rows = _distance_to_window_edge(box.row, box.height, stride, size, scale)
    d_cols = _distance_to_window_edge(box.col, box.width, stride, size, scale)
    near, far = scale, 2 * (size - stride) * scale
    edge = np.concatenate([foreground[d_rows < near].ravel(), foreground[:, d_cols < near].ravel()])
    inner = np.concatenate([foreground[d_rows >= far].ravel(), foreground[:, d_cols >= far].ravel()])
    return float(edge.mean() / inner.mean())


@pytest.fixture(scope="module")
def bright_scene_confidence(tmp_path_factory):
    """Window confidences of the bundled checkpoint over a held-out scene whose reflectance is twice the
    true one (as a composite with the wrong scale), windowed, normalised and predicted by the engine."""
    import rasterio

    from mapgen.pipeline.checkpoints import resolve_checkpoint
    from mapgen.pipeline.inference import ModelRef, predict_windows
    from mapgen.synthetic import generate_scene

    product = load_product("cbra")
    out = tmp_path_factory.mktemp("bright")
    meta = generate_scene((116.33, 39.93, 116.37, 39.97), [2018], out, seed=7, margin_px=64)  # never trained on
    with rasterio.open(out / "2018" / "s2.tif") as ds:
        reflectance = 2.0 * ds.read().astype(np.float32)
    index = meta["grid"]["lattice_index"]
    scene = Box(index["row0"], index["col0"], reflectance.shape[1], reflectance.shape[2])
    size, stride = product.window.size, product.window.stride
    box = scene.grown(-size)  # every window meeting the box lies on the scene: no padding in the statistic
    lattice = WindowLattice(size, stride)
    read, origins = lattice.covering(box)
    image = product.image_input
    mean = np.asarray(image.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(image.std, dtype=np.float32)[:, None, None]
    rows, cols = read.slices_in(scene)
    x = ((reflectance[:, rows, cols] - mean) / std).astype(np.float32)
    path, sha256 = resolve_checkpoint(product.model.checkpoint, product.model.architecture)
    conf = predict_windows(ModelRef(str(path), sha256, product.model.architecture), lattice.extract(x, read, origins),
                           product.window.batch)
    return product, x, box, read, origins, conf


def test_no_seams_along_the_window_lattice(bright_scene_confidence):
    product, x, box, read, origins, conf = bright_scene_confidence
    assert np.abs(np.median(x.reshape(len(x), -1), axis=1)).max() > 3  # far outside the training range
    scale = product.grid.scale
    rows, cols = box.scaled(scale).slices_in(read.scaled(scale))

    def ratio(border: int) -> float:
        foreground = max_stitch(conf, origins, read, scale, border)[rows, cols] > 0.5
        return _edge_to_interior_share(foreground, box.scaled(scale), product.window.stride, product.window.size,
                                       scale)

    plain, with_border = ratio(0), ratio(product.stitch.border)
    print(f"edge/interior foreground share: border 0 {plain:.2f}, border {product.stitch.border} {with_border:.2f}")
    assert plain > 1.1, "the scene should show the seams of a plain maximum, or this test proves nothing"
    assert with_border <= 1.1
