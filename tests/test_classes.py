"""The run store's class codes and their lookup into a product's pixel values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mapgen.pipeline import classes
from mapgen.pipeline.classes import BACKGROUND, FOREGROUND, MAX_CODES, NODATA, encode, lookup_table
from mapgen.workflows import load_product


def export_encode_v0(codes: np.ndarray, foreground: int, background: int, nodata: int) -> np.ndarray:
    """pipeline/export.py's `encode` as first written (spec.foreground / background / nodata passed in)."""
    values = np.where(codes == FOREGROUND, foreground, background).astype(np.uint8)
    values[codes == NODATA] = nodata
    return values


def test_codes():
    assert (BACKGROUND, FOREGROUND, NODATA, MAX_CODES) == (0, 1, 255, 255)
    assert all(isinstance(c, np.uint8) for c in (BACKGROUND, FOREGROUND, NODATA))


def test_cbra_table_is_the_first_export_encoding():
    codes = np.array([[0, 1, 255], [255, 1, 0]], np.uint8)
    table = lookup_table((0, 255), 1)
    np.testing.assert_array_equal(encode(codes, table), export_encode_v0(codes, 255, 0, 1))
    assert encode(codes, table).tolist() == [[0, 255, 1], [1, 255, 0]]
    # the same from the product file as shipped
    output = load_product("cbra").output
    values = [c.value for c in output.classes]
    shipped = lookup_table(values, output.nodata)
    np.testing.assert_array_equal(shipped, table)
    # export took the largest class value as foreground and the smallest as background
    np.testing.assert_array_equal(encode(codes, shipped),
                                  export_encode_v0(codes, max(values), min(values), output.nodata))


def test_multiclass_table():
    table = lookup_table(range(18), 255)
    assert table.dtype == np.uint8 and table.shape == (256,)
    assert table[:18].tolist() == list(range(18))
    # codes that name no class are no data: a stray code never passes for a class
    assert (table[18:] == 255).all()
    table = lookup_table([10, 20, 30], 0)
    assert table[:4].tolist() == [10, 20, 30, 0] and table[255] == 0


def test_largest_table():
    values = list(range(1, 256))  # 255 classes, codes 0 … 254
    table = lookup_table(values, 0)
    assert table[:255].tolist() == values and table[NODATA] == 0


@pytest.mark.parametrize("values, nodata, match", [
    (range(256), 0, "at most 255"),
    ([0, 256], 1, "0 to 255"),
    ([-1], 1, "0 to 255"),
    ([0, 1.5], 3, "integer"),
    ([True], 3, "integer"),
    ([0, 255], 256, "nodata"),
    ([0, 255], 255, "nodata = 255 is also a class value"),
    ([0, 3, 0], 1, "twice"),
])
def test_lookup_table_refusals(values, nodata, match):
    with pytest.raises(ValueError, match=match):
        lookup_table(values, nodata)


def test_encode_refusals():
    table = lookup_table((0, 255), 1)
    with pytest.raises(TypeError, match="uint8"):
        encode(np.zeros(3, np.int64), table)
    with pytest.raises(ValueError, match="256"):
        encode(np.zeros(3, np.uint8), table[:255])
    with pytest.raises(ValueError, match="256"):
        encode(np.zeros(3, np.uint8), table.astype(np.int16))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=0, max_size=40, unique=True).flatmap(
           lambda vs: st.tuples(st.just(vs), st.integers(0, 255).filter(lambda n: n not in vs))),
       arrays(np.uint8, st.tuples(st.integers(0, 6), st.integers(0, 6))))
def test_encode_is_the_table_lookup(values_nodata, codes):
    values, nodata = values_nodata
    table = lookup_table(values, nodata)
    out = encode(codes, table)
    assert out.dtype == np.uint8 and out.shape == codes.shape
    expected = np.array([values[c] if c < len(values) else nodata for c in codes.ravel()], np.uint8)
    np.testing.assert_array_equal(out.ravel(), expected)
    assert not (out[codes == NODATA] != nodata).any()


def test_module_names_what_it_exports():
    assert {"BACKGROUND", "FOREGROUND", "NODATA", "MAX_CODES", "lookup_table", "encode"} <= set(dir(classes))
