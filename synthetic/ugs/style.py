"""The look of a scene's mosaic: sun, season and the radiometry of the imagery (white balance, exposure,
contrast, saturation, haze, blur, sensor noise, JPEG-like chroma loss and blocking, a mosaic seam).

`auto` draws a plausible Google-Earth-like look from the seed; named styles are fixed looks far from it
(for domain-adaptation tests): `far` a warm, hazy, flat, desaturated one, `gf2` a cool, contrasty,
sharpened one like a pan-sharpened Gaofen-2 true-colour product.
"""

from __future__ import annotations

import numpy as np

from ..fields import gaussian_kernel, separable

STYLES = ("auto", "far", "gf2")

_NAMED = {
    "far": {
        "white_balance": [1.16, 1.03, 0.78], "exposure": 1.04, "contrast": 0.75, "gamma": 0.92,
        "saturation": 0.6, "haze": 0.24, "haze_rgb": [0.86, 0.80, 0.64], "blur_px": 1.1, "sharpen": 0.0,
        "noise": 0.018, "chroma_noise": 0.006, "jpeg_block": 0.25, "chroma_subsample": True,
        "seam": None, "sun_azimuth_deg": 235.0, "sun_elevation_deg": 32.0,
        "vegetation": {"dryness": 0.55, "vigour": 0.75},
    },
    "gf2": {
        "white_balance": [0.9, 1.0, 1.12], "exposure": 0.9, "contrast": 1.28, "gamma": 1.12,
        "saturation": 0.72, "haze": 0.04, "haze_rgb": [0.70, 0.78, 0.90], "blur_px": 0.35, "sharpen": 0.7,
        "noise": 0.012, "chroma_noise": 0.004, "jpeg_block": 0.0, "chroma_subsample": False,
        "seam": None, "sun_azimuth_deg": 165.0, "sun_elevation_deg": 58.0,
        "vegetation": {"dryness": 0.1, "vigour": 1.0},
    },
}


def sample_style(rng: np.random.Generator, name: str = "auto") -> dict:
    """The style's parameters as plain JSON-ready values (a named style's are fixed)."""
    if name not in STYLES:
        raise ValueError(f"unknown style {name!r}: give one of {', '.join(STYLES)}")
    if name != "auto":
        return {"name": name, **{k: (dict(v) if isinstance(v, dict) else v) for k, v in _NAMED[name].items()}}
    seam = None
    if rng.random() < 0.5:  # a second acquisition in part of the mosaic, a little different
        seam = {"angle_deg": float(rng.uniform(0, 360)), "offset": float(rng.uniform(-0.35, 0.35)),
                "exposure": float(rng.normal(1.0, 0.05)),
                "white_balance": [float(g) for g in rng.normal(1.0, 0.025, 3)], "feather_px": float(rng.uniform(2, 25))}
    return {
        "name": "auto",
        "white_balance": [float(g) for g in np.clip(rng.normal(1.0, 0.045, 3), 0.9, 1.1)],
        "exposure": float(rng.uniform(0.9, 1.12)),
        "contrast": float(rng.uniform(0.88, 1.18)),
        "gamma": float(rng.uniform(0.9, 1.1)),
        "saturation": float(rng.uniform(0.8, 1.2)),
        "haze": float(rng.uniform(0.0, 0.1)),
        "haze_rgb": [float(v) for v in np.clip(rng.normal([0.74, 0.78, 0.84], 0.03), 0.6, 0.95)],
        "blur_px": float(rng.uniform(0.35, 0.8)),
        "sharpen": float(rng.uniform(0.0, 0.5)),
        "noise": float(rng.uniform(0.004, 0.012)),
        "chroma_noise": float(rng.uniform(0.001, 0.004)),
        "jpeg_block": float(rng.uniform(0.0, 0.12)),
        "chroma_subsample": bool(rng.random() < 0.7),
        "seam": seam,
        "sun_azimuth_deg": float(rng.uniform(120.0, 215.0)),
        "sun_elevation_deg": float(rng.uniform(45.0, 75.0)),
        "vegetation": {"dryness": float(rng.uniform(0.0, 0.3)), "vigour": float(rng.uniform(0.85, 1.15))},
    }


def sun_vector(style: dict) -> np.ndarray:
    """Unit horizontal vector towards the sun in the scene frame (x east, y south)."""
    az = np.radians(style["sun_azimuth_deg"])  # from north, clockwise
    return np.array([np.sin(az), -np.cos(az)])


def _block_mean(band: np.ndarray, k: int) -> np.ndarray:
    h, w = band.shape
    hp, wp = -(-h // k) * k, -(-w // k) * k
    padded = np.pad(band, ((0, hp - h), (0, wp - w)), mode="edge")
    m = padded.reshape(hp // k, k, wp // k, k).mean(axis=(1, 3))
    return np.repeat(np.repeat(m, k, axis=0), k, axis=1)[:h, :w]


def apply_style(img: np.ndarray, style: dict, rng: np.random.Generator) -> np.ndarray:
    """(3, H, W) float display colours in [0, 1] → (3, H, W) uint8 imagery in the style's look (in place)."""
    _, h, w = img.shape
    gains = np.asarray(style["white_balance"], np.float32) * np.float32(style["exposure"])
    img *= gains[:, None, None]
    if style.get("seam"):
        seam = style["seam"]
        a = np.radians(seam["angle_deg"])
        yy = (np.arange(h, dtype=np.float32) / max(h, w) - 0.5 * h / max(h, w))[:, None]
        xx = (np.arange(w, dtype=np.float32) / max(h, w) - 0.5 * w / max(h, w))[None, :]
        d = (xx * np.float32(np.cos(a)) + yy * np.float32(np.sin(a)) - np.float32(seam["offset"])) * max(h, w)
        wgt = np.clip(d / np.float32(seam["feather_px"]) + 0.5, 0.0, 1.0)
        for b in range(3):
            g = np.float32(seam["exposure"] * seam["white_balance"][b] - 1.0)
            img[b] *= 1.0 + g * wgt
        del wgt, d
    np.clip(img, 0.0, 1.0, out=img)
    np.power(img, np.float32(style["gamma"]), out=img)
    mid = np.float32(0.45)
    img -= mid
    img *= np.float32(style["contrast"])
    img += mid
    lum = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    sat = np.float32(style["saturation"])
    for b in range(3):
        img[b] -= lum
        img[b] *= sat
        img[b] += lum
    del lum
    haze = np.float32(style["haze"])
    for b in range(3):
        img[b] *= 1.0 - haze
        img[b] += haze * np.float32(style["haze_rgb"][b])
    k = gaussian_kernel(style["blur_px"]) if style["blur_px"] > 0.05 else None
    for b in range(3):
        band = img[b]
        if k is not None:
            band = separable(band, k)
        if style["sharpen"] > 0:
            soft = separable(band, gaussian_kernel(1.2))
            band = band + np.float32(style["sharpen"]) * (band - soft)
        img[b] = band
    common = rng.standard_normal((h, w), dtype=np.float32) * np.float32(style["noise"])
    for b in range(3):
        img[b] += common
        img[b] += rng.standard_normal((h, w), dtype=np.float32) * np.float32(style["chroma_noise"])
    del common
    if style["chroma_subsample"] or style["jpeg_block"] > 0:
        y = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
        cb, cr = img[2] - y, img[0] - y
        if style["chroma_subsample"]:
            cb, cr = _block_mean(cb, 2), _block_mean(cr, 2)
        jb = np.float32(style["jpeg_block"])
        if jb > 0:
            y = (1 - jb) * y + jb * _block_mean(y, 8)
            cb = (1 - jb) * cb + jb * _block_mean(cb, 8)
            cr = (1 - jb) * cr + jb * _block_mean(cr, 8)
        img[0] = y + cr
        img[2] = y + cb
        img[1] = (y - 0.299 * img[0] - 0.114 * img[2]) / 0.587
    out = np.empty(img.shape, dtype=np.uint8)
    for b in range(3):
        np.clip(img[b] * 255.0 + 0.5, 0, 255, out=img[b])
        out[b] = img[b]
    return out
