"""Building lots and footprints: rotated rectangles and L-shapes, made in bulk with shapely arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

MIN_SIDE_M, MAX_SIDE_M = 8.0, 60.0
KIND_TOWN, KIND_VILLAGE, KIND_INDUSTRIAL = 0, 1, 2


@dataclass
class Lots:
    """Places where a building can stand, in the scene's metric frame (x east, y south, metres).

    A lot is a cell of size (cu, cv) rotated by `angle`; its building is drawn inside the cell, so a
    lot can be demolished and rebuilt with a different footprint without ever overlapping a street.
    """

    cx: np.ndarray
    cy: np.ndarray
    cu: np.ndarray
    cv: np.ndarray
    angle: np.ndarray
    kind: np.ndarray  # KIND_*
    settlement: np.ndarray  # index into the towns, then villages (offset by the number of towns)
    exists0: np.ndarray  # built in the first year
    weight: np.ndarray  # relative chance of being picked for construction later

    def __len__(self) -> int:
        return len(self.cx)

    @staticmethod
    def concat(parts: list[Lots]) -> Lots:
        names = list(Lots.__dataclass_fields__)
        if not parts:
            return Lots(**{k: np.zeros(0) for k in names})
        return Lots(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in names})

    def subset(self, keep: np.ndarray) -> Lots:
        return Lots(**{k: getattr(self, k)[keep] for k in Lots.__dataclass_fields__})


def _place(local: np.ndarray, cx: np.ndarray, cy: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate (n, m, 2) local vertices by angle and move them to (cx, cy)."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x = cx[:, None] + local[..., 0] * c - local[..., 1] * s
    y = cy[:, None] + local[..., 0] * s + local[..., 1] * c
    return np.stack([x, y], axis=-1)


def cell_polygons(lots: Lots, idx: np.ndarray, shrink: float = 1.0) -> np.ndarray:
    """The lot cells themselves (construction sites, placement checks)."""
    hu, hv = 0.5 * shrink * lots.cu[idx], 0.5 * shrink * lots.cv[idx]
    local = np.stack([np.stack([-hu, -hv], -1), np.stack([hu, -hv], -1), np.stack([hu, hv], -1),
                      np.stack([-hu, hv], -1)], axis=1)
    return shapely.polygons(_place(local, lots.cx[idx], lots.cy[idx], lots.angle[idx]))


def footprints(rng: np.random.Generator, lots: Lots, idx: np.ndarray, l_shape_p: float = 0.2) -> np.ndarray:
    """One footprint per lot in idx: a rectangle filling 60-94 % of the cell (sides 8-60 m), shifted
    within the slack and turned by a degree or two, or with probability l_shape_p an L (one corner cut).
    """
    n = len(idx)
    if n == 0:
        return np.empty(0, dtype=object)
    cu, cv = lots.cu[idx], lots.cv[idx]
    w = np.clip(cu * rng.uniform(0.6, 0.94, n), MIN_SIDE_M, MAX_SIDE_M)
    d = np.clip(cv * rng.uniform(0.6, 0.94, n), MIN_SIDE_M, MAX_SIDE_M)
    ox = (rng.random(n) - 0.5) * np.maximum(cu - w, 0.0)
    oy = (rng.random(n) - 0.5) * np.maximum(cv - d, 0.0)
    angle = lots.angle[idx] + np.radians(rng.normal(0.0, 1.5, n))
    # The cut corner: 35-60 % of each side, mirrored to a random corner.
    cw, cd = w * rng.uniform(0.35, 0.6, n), d * rng.uniform(0.35, 0.6, n)
    sx, sy = rng.choice([-1.0, 1.0], n), rng.choice([-1.0, 1.0], n)
    is_l = (rng.random(n) < l_shape_p) & (w >= 16.0) & (d >= 16.0)
    hw, hd = w / 2, d / 2
    out = np.empty(n, dtype=object)
    r = ~is_l
    if r.any():
        local = np.stack([np.stack([-hw, -hd], -1), np.stack([hw, -hd], -1), np.stack([hw, hd], -1),
                          np.stack([-hw, hd], -1)], axis=1)[r]
        local += np.stack([ox[r], oy[r]], -1)[:, None, :]
        out[r] = shapely.polygons(_place(local, lots.cx[idx][r], lots.cy[idx][r], angle[r]))
    if is_l.any():
        m = is_l
        pts = [(-hw, -hd), (hw, -hd), (hw, hd - cd), (hw - cw, hd - cd), (hw - cw, hd), (-hw, hd)]
        local = np.stack([np.stack(p, -1) for p in pts], axis=1)[m]
        local *= np.stack([sx[m], sy[m]], -1)[:, None, :]
        local += np.stack([ox[m], oy[m]], -1)[:, None, :]
        out[m] = shapely.polygons(_place(local, lots.cx[idx][m], lots.cy[idx][m], angle[m]))
    return out
