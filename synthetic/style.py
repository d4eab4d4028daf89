"""A different radiometric style per year, as annual composites from different seasons, atmospheres
and processing baselines differ (and as RS3DAda's image translation does on purpose)."""

from __future__ import annotations

import numpy as np

from .materials import FARM_GROUPS, N_CODES

# How haze adds to each band (B2, B3, B4, B8): scattering falls with wavelength.
HAZE_SPECTRUM = (1.0, 0.75, 0.55, 0.3)


def sample_style(rng: np.random.Generator) -> dict:
    """All the knobs of one year's rendering, as plain JSON-ready values.

    farm_groups: per farmland group, [its non-green crop state, its greenness offset from the year's
    farm_greenness]; vegetation_vigour: 1 = peak season, lower = drier / leaf-off composites.
    """
    return {
        "gain": [float(g) for g in np.clip(rng.normal(1.0, 0.04, 4), 0.9, 1.1)],
        "offset": [float(o) for o in rng.normal(0.0, 0.005, 4)],
        "haze": float(rng.uniform(0.0, 0.035)),
        "vegetation_vigour": float(rng.uniform(0.55, 1.0)),
        "farm_greenness": float(rng.uniform(0.15, 0.85)),
        "farm_groups": [
            [str(rng.choice(["ripe", "fallow"])), float(g)]
            for g in np.clip(rng.normal(0.0, 0.35, len(FARM_GROUPS)), -0.7, 0.7)
        ],
        "material_jitter": float(rng.uniform(0.02, 0.05)),
        "texture_amplitude": float(rng.uniform(0.07, 0.12)),
        "psf_sigma_px": float(rng.uniform(0.4, 0.7)),
        "noise_std": float(rng.uniform(0.003, 0.008)),
        "built_gain": float(rng.uniform(2.5, 3.5)),
        "built_noise_std": float(rng.uniform(0.02, 0.05)),
    }


def farm_mix(style: dict) -> list[tuple[str, float]]:
    """Per farmland group: its non-green crop state and its greenness this year (in [0, 1])."""
    base = style["farm_greenness"]
    return [(state, float(np.clip(base + dg, 0.0, 1.0))) for state, dg in style["farm_groups"]]


def material_jitter(rng: np.random.Generator, amount: float) -> np.ndarray:
    """(N_CODES, 4) multiplicative factors: a material's colour drifts a little from year to year.

    A shared factor per material plus a smaller per-band part keeps spectra shapes plausible."""
    common = rng.normal(1.0, amount, (N_CODES, 1))
    band = rng.normal(1.0, amount / 3, (N_CODES, 4))
    return np.clip(common * band, 0.8, 1.2)
