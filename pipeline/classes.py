"""What a run-store pixel value means: the one definition of the class codes.

The run store holds uint8 class codes, one per output pixel:

- code 255 (`NODATA`) is reserved for "no data" and is the Zarr fill value, so an unwritten chunk reads as
  no data;
- binary products use code 0 (`BACKGROUND`) and code 1 (`FOREGROUND`);
- a product with classes uses code i for the i-th class in the order its `[[output.classes]]` lists them,
  so codes 0 … 254 (`MAX_CODES` of them) can name classes.

Export turns codes into the product's pixel values through a 256-entry lookup table: code i → the value of
the i-th listed class, `NODATA` → the product's GDAL nodata value. CBRA lists 0 then 255, so code 0 → 0 and
code 1 → 255; a product listing values 0 … 17 maps code k → k.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

BACKGROUND = np.uint8(0)
FOREGROUND = np.uint8(1)
NODATA = np.uint8(255)
# codes 0 … 254 can name classes; 255 is NODATA
MAX_CODES = 255


def _byte(value: object, what: str) -> int:
    """`value` as an int from 0 to 255, or a ValueError naming `what`."""
    # bools are ints to Python, but a class value of True is a product-file mistake
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{what} must be an integer from 0 to 255, not {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer from 0 to 255, not {value!r}") from None
    if not 0 <= number <= 255:
        raise ValueError(f"{what} must be an integer from 0 to 255, not {number}")
    return number


def lookup_table(values: Sequence[int], nodata: int) -> np.ndarray:
    """The 256 uint8 pixel values of the codes: entry i is `values[i]` for i < len(values), else `nodata`.

    values: the product's class values in the order `[[output.classes]]` lists them (code i is class i).
    nodata: the product's GDAL nodata value; `NODATA` maps to it, and so does every code that names no
            class (len(values) … 254), so a stray code can never pass for a class in a published map.
    Refuses (ValueError) more than `MAX_CODES` classes, a value or nodata outside 0 … 255, a value listed
    twice, or a nodata equal to a class value: each would make two meanings share one pixel value.
    """
    values = [_byte(v, f"class value {i}") for i, v in enumerate(values)]
    nodata = _byte(nodata, "nodata")
    if len(values) > MAX_CODES:
        raise ValueError(f"{len(values)} classes: at most {MAX_CODES} fit in uint8 codes beside NODATA")
    if len(set(values)) != len(values):
        raise ValueError(f"class values {values} list a value twice")
    if nodata in values:
        raise ValueError(f"nodata = {nodata} is also a class value ({values})")
    table = np.full(256, nodata, dtype=np.uint8)
    table[:len(values)] = values
    return table


def encode(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Pixel values of an array of uint8 class codes through a `lookup_table` (same shape, uint8)."""
    codes = np.asarray(codes)
    table = np.asarray(table)
    # any other dtype could hold codes the table has no entry for, or be silently wrapped
    if codes.dtype != np.uint8:
        raise TypeError(f"class codes must be uint8, not {codes.dtype}")
    if table.dtype != np.uint8 or table.shape != (256,):
        raise ValueError(f"a lookup table is 256 uint8 values, not {table.shape} {table.dtype}")
    return table[codes]
