"""Tree crowns: one candidate tree per cell of a jittered grid, alive where its patch's tree cover says
(groves rather than a uniform sprinkle), each a dome of its own radius and height. A pixel belongs to the
highest crown over it; the crowns' UGS type is that of the patch the tree stands in, so a park tree over
a footpath is still park."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fields import value_noise

STRIP = 512  # rows per strip: the temporaries stay a few MB


@dataclass
class Canopy:
    tree: np.ndarray  # (H, W) int32: index of the crown over each pixel, -1 where none
    height: np.ndarray  # (H, W) float32: crown surface height in pixels (0 where none)
    kind: np.ndarray  # (n_trees,) uint8 tree kind (TREE_KINDS)
    ugs: np.ndarray  # (n_trees,) uint8 UGS type of the patch the tree stands in
    tone: np.ndarray  # (n_trees, 3) float32 colour factors of each tree
    n_alive: int


def _uniform_rank(z: np.ndarray) -> np.ndarray:
    """Values → their ranks in (0, 1): a field with any distribution made uniform."""
    order = np.argsort(z, axis=None, kind="stable")
    u = np.empty(z.size, dtype=np.float32)
    u[order] = (np.arange(z.size, dtype=np.float32) + 0.5) / z.size
    return u.reshape(z.shape)


def grow(rng: np.random.Generator, ids: np.ndarray, cover: np.ndarray, kind: np.ndarray, ugs: np.ndarray,
         reach: np.ndarray, spacing: float, grove: float) -> Canopy:
    """Crowns over the patch raster `ids` (per patch: tree cover, tree kind, UGS type). `reach` (H, W): how
    far into its crown (0 edge, 1 centre) a pixel must lie to be covered: 0 on vegetation, more on paving
    (crowns overhang it a little), above 1 where no crown may be (roofs, water); spacing: the grid cell in
    pixels; grove: how clustered trees are."""
    h, w = ids.shape
    s = float(spacing)
    gh, gw = int(np.ceil(h / s)) + 1, int(np.ceil(w / s)) + 1
    ty = ((np.arange(gh)[:, None] + rng.uniform(0.15, 0.85, (gh, gw))) * s).astype(np.float32)
    tx = ((np.arange(gw)[None, :] + rng.uniform(0.15, 0.85, (gh, gw))) * s).astype(np.float32)
    radius = (s * rng.uniform(0.5, 0.8, (gh, gw))).astype(np.float32)
    amp = rng.uniform(0.75, 1.25, (gh, gw)).astype(np.float32)
    lowf = value_noise(rng, (gh, gw), [8.0, 3.0], [0.8, 0.4])
    z = grove * lowf + np.sqrt(1 - grove ** 2) * rng.standard_normal((gh, gw)).astype(np.float32)
    u = _uniform_rank(z)
    tone = np.stack([rng.normal(1.0, 0.09, (gh, gw))] * 3, -1) * rng.normal(1.0, 0.035, (gh, gw, 3))
    iy = np.clip(ty.astype(np.int64), 0, h - 1)
    ix = np.clip(tx.astype(np.int64), 0, w - 1)
    pid = ids[iy, ix]
    alive = (u < cover[pid]) & (reach[iy, ix] <= 0)
    tree_kind = kind[pid].astype(np.uint8).ravel()
    tree_ugs = ugs[pid].astype(np.uint8).ravel()
    r2 = (radius * radius).ravel()
    amp_alive = np.where(alive, amp, 0.0).astype(np.float32).ravel()
    txf, tyf = tx.ravel(), ty.ravel()

    tree = np.full((h, w), -1, dtype=np.int32)
    height = np.zeros((h, w), dtype=np.float32)
    cols = np.arange(w, dtype=np.float32) + 0.5
    cell_c = (cols / s).astype(np.int64)
    for r0 in range(0, h, STRIP):
        r1 = min(r0 + STRIP, h)
        rows = np.arange(r0, r1, dtype=np.float32) + 0.5
        cell_r = (rows / s).astype(np.int64)
        best = np.zeros((r1 - r0, w), dtype=np.float32)
        best_i = np.full((r1 - r0, w), -1, dtype=np.int64)
        for di in (-1, 0, 1):
            cr = np.clip(cell_r + di, 0, gh - 1)
            for dj in (-1, 0, 1):
                cc = np.clip(cell_c + dj, 0, gw - 1)
                idx = cr[:, None] * gw + cc[None, :]
                dx = cols[None, :] - txf[idx]
                dy = rows[:, None] - tyf[idx]
                q = (dx * dx + dy * dy) / r2[idx]
                val = amp_alive[idx] * (1.0 - q)
                better = val > best
                best = np.where(better, val, best)
                best_i = np.where(better, idx, best_i)
        bi = np.maximum(best_i, 0)
        a = amp_alive[bi]
        ok = (best_i >= 0) & (best > reach[r0:r1] * np.maximum(a, 1e-6))
        # hemisphere of the crown's radius, scaled by its height factor: a * r * sqrt(1 - q)
        hh = np.sqrt(np.maximum(best * a, 0.0)) * np.sqrt(r2[bi])
        height[r0:r1] = np.where(ok, hh, 0.0)
        tree[r0:r1] = np.where(ok, best_i, -1)
    return Canopy(tree=tree, height=height, kind=tree_kind, ugs=tree_ugs,
                  tone=tone.reshape(-1, 3).astype(np.float32), n_alive=int(alive.sum()))
