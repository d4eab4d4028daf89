"""From the patch raster to a true-colour picture in display colours: each patch's colour, material
textures (grain, mottling, crop rows, corrugated roofs, soil showing through grass), shallow water at the
shores, lane paint, tree crowns lit by the sun, and the shadows of trees, buildings and cars."""

from __future__ import annotations

import numpy as np

from ..fields import gaussian_kernel, separable, value_noise
from .canopy import Canopy
from .materials import (
    FARM_STRIPES,
    FINE,
    IS_ROOF,
    IS_WATER,
    MOTTLE,
    SOIL_MIX,
    SOIL_RGB,
    STRIPES,
    TREE_RGB,
    season,
)
from .plan import PAINT_WHITE, PAINT_YELLOW

SHADOW_RGB = np.array([0.40, 0.44, 0.56], dtype=np.float32)  # what is left of sunlit colour in shadow
PAINT_RGB = {PAINT_WHITE: (0.86, 0.86, 0.83), PAINT_YELLOW: (0.82, 0.70, 0.28)}


def _stripes(shape: tuple[int, int], angle: float, period_px: float) -> np.ndarray:
    h, w = shape
    k = np.float32(2 * np.pi / period_px)
    a = (np.cos(angle) * np.arange(w) * k).astype(np.float32)
    b = (np.sin(angle) * np.arange(h) * k).astype(np.float32)
    # sin(a + b) = sin a cos b + cos a sin b: two outer products instead of a sine per pixel
    out = np.sin(b)[:, None] * np.cos(a)[None, :]
    out += np.cos(b)[:, None] * np.sin(a)[None, :]
    return out


def _soil_threshold(share: np.ndarray) -> np.ndarray:
    """z such that P(N(0,1) > z) ≈ share (Tukey's lambda approximation of the normal quantile)."""
    p = np.clip(1.0 - share, 1e-4, 1 - 1e-4)
    return (4.91 * (p ** 0.14 - (1 - p) ** 0.14)).astype(np.float32)


def paint(rng: np.random.Generator, ids: np.ndarray, table: dict, canopy: Canopy, shadow_h: np.ndarray,
          paint_lines: np.ndarray, style: dict, *, farm_angle: float, city_angle: float, tree_shift: tuple[int, int],
          ) -> np.ndarray:
    """(3, H, W) float32 display colours in [0, 1] (before the style's radiometry)."""
    h, w = ids.shape
    mat = table["mat"][ids]
    rgb = table["rgb"]
    img = np.empty((3, h, w), dtype=np.float32)
    for b in range(3):
        np.take(rgb[:, b], ids, out=img[b])

    # textures: one brightness factor per pixel, from the material's amplitudes
    fine = rng.standard_normal((h, w), dtype=np.float32)
    fine *= FINE[mat]
    mottle = value_noise(rng, (h, w), [3.0, 12.0, 40.0], [0.45, 0.4, 0.3])
    factor = fine
    factor += mottle * MOTTLE[mat]
    stripe_amp = STRIPES[mat]
    if stripe_amp.any():
        farm = FARM_STRIPES[mat]
        factor += np.where(farm, _stripes((h, w), farm_angle, float(rng.uniform(2.2, 3.5))),
                           _stripes((h, w), city_angle, 2.0)) * stripe_amp
    factor += 1.0
    img *= factor[None]
    del factor, fine

    # soil through sparse grass: where a second mottled field exceeds the material's threshold
    share = SOIL_MIX[mat]
    if share.any():
        soil_field = value_noise(rng, (h, w), [2.0, 6.0, 20.0], [0.4, 0.4, 0.4])
        wgt = np.clip((soil_field - _soil_threshold(share)) * 1.5 + 0.5, 0.0, 1.0)
        wgt *= share > 0
        soil = SOIL_RGB * np.float32(1.0 - 0.3 * style["vegetation"]["dryness"]) + \
            np.float32(0.1 * style["vegetation"]["dryness"])
        for b in range(3):
            img[b] += wgt * (np.float32(soil[b]) * (1 + 0.08 * mottle) - img[b])
        del soil_field, wgt
    del mottle, share

    # shallow water brighter and browner near the shore
    water = IS_WATER[mat]
    if water.any():
        near = 1.0 - separable(water.astype(np.float32), gaussian_kernel(2.5))
        near *= water
        img[0] += near * 0.12 * (0.55 - img[0])
        img[1] += near * 0.10 * (0.52 - img[1])
        img[2] += near * 0.06 * (0.42 - img[2])
        del near
    del water

    # lane paint (thin lines: partly covering their pixels)
    for value, col in PAINT_RGB.items():
        m = paint_lines == value
        if m.any():
            for b in range(3):
                img[b][m] += np.float32(0.55) * (np.float32(col[b]) - img[b][m])

    # tree crowns, lit by the sun
    sun = np.asarray(style["_sun"], np.float32)
    elev = np.radians(style["sun_elevation_deg"])
    lx, ly, lz = float(sun[0] * np.cos(elev)), float(sun[1] * np.cos(elev)), float(np.sin(elev))
    crown = canopy.tree >= 0
    if crown.any():
        hgt = canopy.height
        gx = np.zeros_like(hgt)
        gy = np.zeros_like(hgt)
        gx[:, 1:-1] = 0.5 * (hgt[:, 2:] - hgt[:, :-2])
        gy[1:-1] = 0.5 * (hgt[2:] - hgt[:-2])
        shade = (lz - gx * lx - gy * ly) / np.sqrt(gx * gx + gy * gy + 1.0)
        del gx, gy
        light = (0.35 + 0.8 * np.maximum(shade, 0.0)) / np.float32(0.35 + 0.8 * lz)
        del shade
        light *= np.clip(0.75 + 0.12 * hgt, 0.75, 1.0)  # crown edges, lower and more shaded, are darker
        tree_rgb = season(TREE_RGB, style["vegetation"]) * np.asarray(style["_tree_jitter"], np.float32)
        ti = np.where(crown, canopy.tree, 0)
        kind = canopy.kind[ti]
        for b in range(3):
            col = tree_rgb[kind, b] * canopy.tone[ti, b] * light
            img[b] = np.where(crown, col, img[b])
        del ti, kind, light
        # tree shadows on the ground beside the crowns
        dy, dx = tree_shift
        cast = np.zeros((h, w), dtype=np.float32)
        src = crown.astype(np.float32)
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        cast[yd, xd] = src[ys, xs]
        cast = separable(cast, gaussian_kernel(1.0))
        cast *= ~crown
        cast *= np.float32(0.8)
        for b in range(3):
            img[b] *= 1.0 - cast * (1.0 - SHADOW_RGB[b])
        del cast, src

    # building and car shadows: where a caster taller than the ground (or roof) there stands
    roof_h = table["height"][ids]
    shadowed = (shadow_h > roof_h + 0.5).astype(np.float32)
    shadowed = separable(shadowed, gaussian_kernel(0.6))
    roofs = IS_ROOF[mat]
    # a roof's own edges stay sharp: only light from the softened mask off the roof itself
    shadowed = np.where(roofs & (shadow_h <= roof_h + 0.5), 0.0, shadowed)
    for b in range(3):
        img[b] *= 1.0 - shadowed * (1.0 - SHADOW_RGB[b])
    np.clip(img, 0.0, 1.0, out=img)
    return img
