"""Materials of the 2.5 m scene, their land-cover classes, colours and top-of-atmosphere spectra.

The scene is rendered as a uint8 map of *material* codes (one byte per 2.5 m pixel). A material is
finer than a land-cover class (a red tile roof and a metal roof are both "building"), which lets the
10 m reflectance vary within a class without any float array at 2.5 m: each year builds a small
lookup table code -> (B2, B3, B4, B8) and the renderer averages it over 4x4 blocks.
"""

from __future__ import annotations

import numpy as np

# Land-cover classes written to landcover.tif (0 never occurs: the ground truth is complete).
ROAD, BUILDING, VEGETATION, WATER, BARE, FARMLAND = 1, 2, 3, 4, 5, 6
LANDCOVER_CLASSES: dict[int, str] = {
    ROAD: "road", BUILDING: "building", VEGETATION: "vegetation",
    WATER: "water", BARE: "bare", FARMLAND: "farmland",
}
LANDCOVER_COLORS: dict[int, tuple[int, int, int, int]] = {
    0: (0, 0, 0, 0),
    ROAD: (160, 160, 160, 255),
    BUILDING: (255, 102, 102, 255),  # SynRS3D/OpenEarthMap colours where the class exists there
    VEGETATION: (85, 160, 89, 255),
    WATER: (102, 153, 255, 255),
    BARE: (181, 76, 76, 255),
    FARMLAND: (246, 211, 45, 255),
}
ROOFTOP_COLORS: dict[int, tuple[int, int, int, int]] = {0: (0, 0, 0, 0), 255: (255, 0, 0, 255)}

# Material codes. Spectra are TOA reflectance (B2, B3, B4, B8) as an L1C annual median would show
# them: path radiance lifts the blue band, so even dark targets sit near 0.07-0.1 in B2.
# name: (code, class, spectrum, is_vegetation)
_TABLE: dict[str, tuple[int, int, tuple[float, float, float, float], bool]] = {
    "meadow": (1, VEGETATION, (0.096, 0.090, 0.074, 0.255), True),
    "trees": (2, VEGETATION, (0.086, 0.078, 0.058, 0.240), True),
    "shrub": (3, VEGETATION, (0.106, 0.102, 0.104, 0.215), True),
    "garden": (4, VEGETATION, (0.108, 0.100, 0.088, 0.245), True),  # yards: grass, soil, small trees
    "park": (5, VEGETATION, (0.090, 0.084, 0.064, 0.265), True),
    "river": (6, WATER, (0.098, 0.074, 0.050, 0.030), False),
    "pond": (7, WATER, (0.094, 0.082, 0.062, 0.042), False),
    "bare_soil": (8, BARE, (0.138, 0.150, 0.180, 0.235), False),  # reddish: red above green
    "bare_site": (9, BARE, (0.168, 0.168, 0.180, 0.225), False),  # cleared or construction sites
    "road_asphalt": (10, ROAD, (0.118, 0.110, 0.108, 0.135), False),
    "road_concrete": (11, ROAD, (0.170, 0.164, 0.162, 0.195), False),
    "road_dirt": (12, ROAD, (0.150, 0.148, 0.168, 0.215), False),
    "paved": (13, ROAD, (0.160, 0.150, 0.148, 0.180), False),  # plazas, yards, parking: impervious
    # Farmland parcels: N_FARM_GROUPS groups (codes 16-31) whose crop state is drawn per year; their
    # spectra are filled in by spectra_lut.
    # Roofs, by material.
    "roof_concrete": (32, BUILDING, (0.210, 0.200, 0.198, 0.235), False),
    "roof_metal_blue": (33, BUILDING, (0.225, 0.195, 0.150, 0.205), False),
    "roof_tile_red": (34, BUILDING, (0.130, 0.118, 0.190, 0.250), False),
    "roof_dark": (35, BUILDING, (0.115, 0.104, 0.100, 0.130), False),
    "roof_white": (36, BUILDING, (0.330, 0.335, 0.335, 0.370), False),
    "roof_grey_tile": (37, BUILDING, (0.155, 0.150, 0.150, 0.185), False),
}
N_FARM_GROUPS = 16
for _i in range(N_FARM_GROUPS):
    _TABLE[f"farm_{_i}"] = (16 + _i, FARMLAND, (0.0, 0.0, 0.0, 0.0), False)
CODE: dict[str, int] = {name: v[0] for name, v in _TABLE.items()}
N_CODES = 64  # lookup tables are this long; codes stay below it
FARM_GROUPS = [CODE[f"farm_{i}"] for i in range(N_FARM_GROUPS)]
ROOF_CODES = [v[0] for v in _TABLE.values() if v[1] == BUILDING]
assert ROOF_CODES == list(range(min(ROOF_CODES), max(ROOF_CODES) + 1)), "roof codes must be contiguous"
# Town and village roofs draw from different mixes: villages have more tile and dark roofs.
ROOF_MIX_TOWN = {"roof_concrete": 0.34, "roof_metal_blue": 0.14, "roof_tile_red": 0.14,
                 "roof_dark": 0.12, "roof_white": 0.10, "roof_grey_tile": 0.16}
ROOF_MIX_VILLAGE = {"roof_concrete": 0.15, "roof_metal_blue": 0.10, "roof_tile_red": 0.30,
                    "roof_dark": 0.20, "roof_white": 0.05, "roof_grey_tile": 0.20}
ROOF_MIX_INDUSTRIAL = {"roof_concrete": 0.30, "roof_metal_blue": 0.35, "roof_white": 0.25, "roof_dark": 0.10}

# Crop states a farmland group can be in; a year's farm greenness mixes green with ripe or fallow.
FARM_STATES = {
    "green": (0.086, 0.088, 0.066, 0.315),
    "ripe": (0.124, 0.128, 0.140, 0.240),
    "fallow": (0.134, 0.130, 0.146, 0.205),
}
# What a fully senescent version of a vegetation spectrum looks like relative to the vigorous one.
SENESCENT_FACTOR = np.array([1.15, 1.12, 1.55, 0.72], dtype=np.float64)

# Weight of each class in the 10 m "built" signal: Dynamic World's built class mixes buildings with
# roads and other impervious surfaces, and confuses some bare land with them.
BUILT_WEIGHT = {ROAD: 0.6, BUILDING: 1.0, BARE: 0.08}


def class_lut() -> np.ndarray:
    """uint8 lookup table material code -> land-cover class."""
    lut = np.zeros(N_CODES, dtype=np.uint8)
    for code, cls, _, _ in _TABLE.values():
        lut[code] = cls
    return lut


def rooftops(codes: np.ndarray) -> np.ndarray:
    """uint8 rooftop mask (255 = roof) of a material map. Roof codes are contiguous, so two cheap
    passes (an unsigned wrap-around compare and a scale) beat a table lookup at 2.5 m."""
    first, n = min(ROOF_CODES), len(ROOF_CODES)
    out = np.less(codes - np.uint8(first), n).view(np.uint8)
    out *= 255
    return out


def built_weight_lut() -> np.ndarray:
    lut = np.zeros(N_CODES, dtype=np.float32)
    for code, cls, _, _ in _TABLE.values():
        lut[code] = BUILT_WEIGHT.get(cls, 0.0)
    return lut


def spectra_lut(vigour: float, farm_mix: list[tuple[str, float]], jitter: np.ndarray) -> np.ndarray:
    """float32 (N_CODES, 4) table of the year's spectra.

    vigour in [0, 1]: 1 = peak-season vegetation, 0 = fully senescent.
    farm_mix: per farmland group, (non-green state, greenness in [0, 1]).
    jitter: (N_CODES, 4) multiplicative per-material factors of the year (paint, moisture, crop variety).
    """
    lut = np.zeros((N_CODES, 4), dtype=np.float64)
    senescent = 1.0 + (1.0 - vigour) * (SENESCENT_FACTOR - 1.0)
    for code, _, spectrum, is_veg in _TABLE.values():
        s = np.asarray(spectrum, dtype=np.float64)
        lut[code] = s * senescent if is_veg else s
    green = np.asarray(FARM_STATES["green"])
    for code, (state, g) in zip(FARM_GROUPS, farm_mix, strict=True):
        lut[code] = g * green + (1.0 - g) * np.asarray(FARM_STATES[state])
    return (lut * jitter).astype(np.float32)


def roof_choice(rng: np.random.Generator, mix: dict[str, float], n: int) -> np.ndarray:
    names = sorted(mix)
    p = np.array([mix[k] for k in names], dtype=np.float64)
    codes = np.array([CODE[k] for k in names], dtype=np.uint8)
    return codes[rng.choice(len(names), size=n, p=p / p.sum())]
