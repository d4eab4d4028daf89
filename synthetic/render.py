"""From the year's 2.5 m material map to rasters: land cover, rooftops, the 10 m Sentinel-2-like
composite and the Dynamic-World-like built probability.

The 10 m products never touch a float array at 2.5 m larger than a strip: a 10 m pixel is the mean
of its scale x scale materials' spectra (so mixed pixels at edges look right), computed strip by strip.
"""

from __future__ import annotations

import sys

import numpy as np
from rasterio.features import rasterize

from .fields import box_mean, gaussian_kernel, separable, value_noise
from .grid import SceneGrid
from .history import History
from .landscape import STRIP_ROWS, metric_transform
from .materials import CODE, built_weight_lut, spectra_lut
from .style import HAZE_SPECTRUM, farm_mix, material_jitter


def update_codes(codes: np.ndarray, history: History, t: int, grid: SceneGrid) -> None:
    """Turn the material map of year index t - 1 (or the static scene, for t = 0) into year t's, in place.

    Only what changes is burned: bare land where buildings were just demolished or where a building
    will appear next year (its construction site), then the roofs of the buildings that appear in t.
    Burning changes rather than whole years keeps the cost per year proportional to the change; the
    bare ground left around a finished building's footprint stays, like a real construction scar.
    """
    tr = metric_transform(grid)
    bare = list(history.geoms[history.vanish == t]) + list(history.site_geoms[history.site_year == t])
    if bare:
        rasterize(((g, CODE["bare_site"]) for g in bare), out=codes, transform=tr)
    idx = np.flatnonzero((history.appear == t) & (history.vanish > t))
    if len(idx):
        rasterize(((history.geoms[i], int(history.roof[i])) for i in idx), out=codes, transform=tr)


_LITTLE = sys.byteorder == "little"


def _block_sum(x: np.ndarray, scale: int, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Sum over scale x scale blocks into `out`, via the row buffer `rows`. Adding whole rows first
    (contiguous) and then strided columns is ~4x faster than reshape(...).sum() here."""
    np.add(x[0::scale], x[1::scale], out=rows) if scale > 1 else np.copyto(rows, x)
    for i in range(2, scale):
        rows += x[i::scale]
    np.copyto(out, rows[:, 0::scale])
    for i in range(1, scale):
        out += rows[:, i::scale]
    return out


def block_means(codes: np.ndarray, spectra: np.ndarray, weights: np.ndarray, scale: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Block means of a (N_CODES, 4) spectra table and an (N_CODES,) weight table over scale x scale
    blocks: (4, H/scale, W/scale) and (H/scale, W/scale), float32.

    The four bands are quantised to 16-bit lanes of one uint64 (a block sum of scale**2 values still
    fits a lane), so one gather and one block sum serve all bands; the quantisation step is 1/4095
    reflectance per 2.5 m pixel at scale 4, far below the noise added later.
    """
    h, w = codes.shape
    n = scale * scale
    q = 65535 // n
    lanes = np.clip(np.rint(spectra.astype(np.float64) * q), 0, q).astype(np.uint64)
    packed = lanes[:, 0] | (lanes[:, 1] << 16) | (lanes[:, 2] << 32) | (lanes[:, 3] << 48)
    qw = 65535 // n
    wq = np.clip(np.rint(weights.astype(np.float64) * qw), 0, qw).astype(np.uint16)
    refl = np.empty((4, h // scale, w // scale), dtype=np.float32)
    wmean = np.empty((h // scale, w // scale), dtype=np.float32)
    rows = max(STRIP_ROWS // scale, 1) * scale
    # Buffers reused strip after strip (fresh pages are costly): gathered values, row sums, block sums.
    bufs = {dt: (np.empty((rows, w), dt), np.empty((rows // scale, w), dt),
                 np.empty((rows // scale, w // scale), dt)) for dt in (np.uint64, np.uint16)}
    # numpy converts small-int indices to intp on every take, into fresh memory: do it once per strip,
    # into a reused buffer (with mode="wrap", take then writes straight into `out`). 5x faster.
    index = np.empty((rows, w), dtype=np.intp)
    for r0 in range(0, h, rows):
        sh = min(rows, h - r0)
        strip = index[:sh]
        np.copyto(strip, codes[r0:r0 + sh])
        o = slice(r0 // scale, (r0 + sh) // scale)
        g, rs, bs = (b[: sh if i == 0 else sh // scale] for i, b in enumerate(bufs[np.uint64]))
        np.take(packed, strip, out=g, mode="wrap")
        # Unpack the lanes through a uint16 view (lane b = bits 16b..16b+15 on little-endian hosts).
        lanes16 = _block_sum(g, scale, rs, bs).view(np.uint16).reshape(bs.shape[0], bs.shape[1], 4)
        for b in range(4):
            refl[b, o] = lanes16[..., b if _LITTLE else 3 - b]
        g, rs, bs = (b[: sh if i == 0 else sh // scale] for i, b in enumerate(bufs[np.uint16]))
        np.take(wq, strip, out=g, mode="wrap")
        wmean[o] = _block_sum(g, scale, rs, bs)
    refl /= q * n
    wmean /= qw * n
    return refl, wmean


def static_texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """(4, H, W) zero-mean texture at 10 m (soil moisture, canopy density, roof ageing), the same every
    year; a common part shared by the bands and a smaller per-band part."""
    common = value_noise(rng, shape, [2.0, 8.0, 30.0], [0.6, 0.3, 0.3])
    return np.stack([0.8 * common + 0.6 * value_noise(rng, shape, [3.0, 15.0], [0.7, 0.3]) for _ in range(4)])


def render_year(codes: np.ndarray, style: dict, texture: np.ndarray, rng: np.random.Generator,
                scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The year's s2 (4, H, W) TOA reflectance and built probability (H, W), both float32."""
    jitter = material_jitter(rng, style["material_jitter"])
    spectra = spectra_lut(style["vegetation_vigour"], farm_mix(style), jitter)
    refl, built_frac = block_means(codes, spectra, built_weight_lut(), scale)

    k = gaussian_kernel(style["psf_sigma_px"])
    haze, amp = style["haze"], np.float32(style["texture_amplitude"])
    s2 = np.empty_like(refl)
    for b in range(4):
        band = refl[b]
        band *= texture[b] * amp + np.float32(1.0)
        band = separable(band, k)
        # Haze adds a path term (strongest in blue) and costs a little contrast; then the year's
        # calibration gain and offset. Folded into one affine map a * x + c.
        a = style["gain"][b] * (1.0 - 0.5 * haze)
        c = style["gain"][b] * haze * HAZE_SPECTRUM[b] + style["offset"][b]
        band *= np.float32(a)
        band += np.float32(c)
        noise = rng.standard_normal(band.shape, dtype=np.float32)
        noise *= np.float32(style["noise_std"])
        band += noise
        np.clip(band, 1e-4, 1.0, out=s2[b])

    # Dynamic World's built probability is high over dense buildings and roads alike, smooth at the
    # scale of a few pixels, and has small noise everywhere.
    prob = box_mean(built_frac, 5)
    prob *= np.float32(-style["built_gain"])
    np.exp(prob, out=prob)
    prob *= np.float32(-0.93)
    prob += np.float32(0.95)  # = 0.02 + 0.93 * (1 - exp(-gain * smoothed built fraction))
    noise = separable(rng.standard_normal(prob.shape, dtype=np.float32), gaussian_kernel(1.0))
    noise *= np.float32(style["built_noise_std"] / max(float(noise.std()), 1e-6))
    prob += noise
    np.clip(prob, 0.0, 1.0, out=prob)
    return s2, prob
