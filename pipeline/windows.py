"""Overlapping windows on a global lattice.

Window origins sit at multiples of the stride on the input lattice, anchored at (-180°, 90°), not at
the corner of each block. A block therefore sees exactly the windows that cover it in any other cut of
the region, which is what makes the stitched result independent of how the region was cut into blocks.
Where the lattice reaches past the available data the input is padded (zeros after normalisation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mapgen.tiles import Box


@dataclass(frozen=True)
class WindowLattice:
    size: int
    stride: int

    def __post_init__(self) -> None:
        if not 0 < self.stride <= self.size:
            raise ValueError(f"window stride {self.stride} must be in 1..{self.size} (overlap < size)")

    def covering(self, box: Box) -> tuple[Box, np.ndarray]:
        """The box to read (box + halo) and the (N, 2) row/col origins of every window meeting `box`."""
        s, n = self.stride, self.size
        r0, r1 = -((n - 1 - box.row) // s), (box.row_stop - 1) // s  # ceil((row - n + 1)/s), floor
        c0, c1 = -((n - 1 - box.col) // s), (box.col_stop - 1) // s
        rows = np.arange(r0, r1 + 1) * s
        cols = np.arange(c0, c1 + 1) * s
        read = Box(int(rows[0]), int(cols[0]), int(rows[-1] - rows[0]) + n, int(cols[-1] - cols[0]) + n)
        origins = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
        return read, origins

    def most_covering(self, span: int) -> int:
        """The most windows that meet `span` consecutive pixels of one axis, wherever the span starts."""
        s, n = self.stride, self.size
        return max((start + span - 1) // s + (n - 1 - start) // s + 1 for start in range(s))

    def extract(self, image: np.ndarray, read: Box, origins: np.ndarray) -> np.ndarray:
        """(N, C, size, size) windows cut from a (C, H, W) image that covers `read`."""
        n = self.size
        local = origins - np.array([read.row, read.col])
        if not len(local):
            return np.zeros((0, image.shape[0], n, n), dtype=image.dtype)
        return np.stack([image[:, r:r + n, c:c + n] for r, c in local])


def batches(count: int, batch: int) -> Iterator[slice]:
    for start in range(0, count, batch):
        yield slice(start, min(start + batch, count))
