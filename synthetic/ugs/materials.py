"""What the ground of a synthetic city is made of, as seen in a ~1 m true-colour mosaic: per material its
mean display colour (8-bit sRGB), how much one patch's colour strays from it, its texture, whether it is
vegetation (only vegetation can be urban green space), and the tree crowns a patch may carry.
"""

from __future__ import annotations

import numpy as np

# name: (rgb, colour spread, fine texture, mottling, stripes, vegetated, mix with soil)
# fine texture: per-pixel noise (relative); mottling: metre-to-tens-of-metres variation; stripes: crop
# rows (farmland angle) or corrugated roofs (city angle); mix: the share of bare soil showing through.
_TABLE: list[tuple[str, tuple[int, int, int], float, float, float, float, bool, float]] = [
    ("rural_grass", (114, 130, 78), 0.07, 0.06, 0.12, 0.0, True, 0.15),
    ("lawn", (110, 135, 76), 0.06, 0.04, 0.07, 0.0, True, 0.0),
    ("wild", (118, 124, 78), 0.08, 0.07, 0.14, 0.0, True, 0.45),
    ("ridge", (140, 132, 100), 0.06, 0.06, 0.06, 0.0, False, 0.0),
    ("crop_rice", (98, 136, 62), 0.08, 0.04, 0.05, 0.05, True, 0.0),
    ("crop_young", (112, 128, 88), 0.08, 0.05, 0.06, 0.09, True, 0.0),
    ("crop_veg", (72, 112, 56), 0.10, 0.06, 0.06, 0.12, True, 0.0),
    ("crop_yellow", (164, 154, 96), 0.08, 0.04, 0.05, 0.05, True, 0.0),
    ("crop_banana", (92, 132, 60), 0.08, 0.05, 0.06, 0.0, True, 0.0),
    ("soil_tilled", (142, 118, 92), 0.08, 0.05, 0.08, 0.10, False, 0.0),
    ("fallow", (150, 140, 104), 0.07, 0.05, 0.10, 0.0, True, 0.35),
    ("greenhouse", (205, 210, 212), 0.04, 0.03, 0.03, 0.12, False, 0.0),
    ("orchard_ground", (124, 120, 86), 0.07, 0.05, 0.08, 0.0, True, 0.2),
    ("forest_floor", (56, 76, 46), 0.10, 0.06, 0.10, 0.0, True, 0.0),
    ("water", (52, 72, 70), 0.12, 0.01, 0.04, 0.0, False, 0.0),
    ("water_turbid", (88, 98, 82), 0.08, 0.01, 0.04, 0.0, False, 0.0),
    ("fishpond", (62, 88, 78), 0.15, 0.01, 0.03, 0.0, False, 0.0),
    ("asphalt", (80, 82, 84), 0.08, 0.03, 0.05, 0.0, False, 0.0),
    ("asphalt_light", (108, 108, 106), 0.07, 0.03, 0.05, 0.0, False, 0.0),
    ("concrete", (168, 165, 156), 0.05, 0.03, 0.04, 0.0, False, 0.0),
    ("paving", (152, 146, 136), 0.06, 0.04, 0.04, 0.0, False, 0.0),
    ("plaza", (188, 180, 166), 0.05, 0.03, 0.03, 0.0, False, 0.0),
    ("dirt", (152, 132, 106), 0.06, 0.05, 0.07, 0.0, False, 0.0),
    ("bare", (172, 146, 116), 0.07, 0.04, 0.09, 0.0, False, 0.0),
    ("construction", (186, 166, 136), 0.06, 0.05, 0.08, 0.0, False, 0.0),
    ("net", (72, 116, 98), 0.08, 0.08, 0.03, 0.0, False, 0.0),  # green dust-control netting: not green space
    ("track", (166, 82, 66), 0.05, 0.02, 0.02, 0.0, False, 0.0),
    ("turf", (72, 142, 74), 0.05, 0.02, 0.02, 0.0, True, 0.0),
    ("court", (62, 118, 140), 0.15, 0.02, 0.02, 0.0, False, 0.0),
    ("village_ground", (136, 126, 102), 0.07, 0.05, 0.08, 0.0, False, 0.0),
    ("roof_concrete", (152, 150, 142), 0.09, 0.03, 0.05, 0.0, False, 0.0),
    ("roof_light", (192, 192, 186), 0.06, 0.02, 0.04, 0.0, False, 0.0),
    ("roof_white", (222, 224, 222), 0.04, 0.02, 0.03, 0.0, False, 0.0),
    ("roof_dark", (86, 86, 90), 0.10, 0.03, 0.04, 0.0, False, 0.0),
    ("roof_blue", (72, 116, 166), 0.10, 0.02, 0.03, 0.06, False, 0.0),
    ("roof_red", (162, 82, 62), 0.09, 0.03, 0.04, 0.0, False, 0.0),
    ("roof_tile", (132, 88, 72), 0.10, 0.04, 0.05, 0.0, False, 0.0),
    ("roof_green", (86, 134, 116), 0.08, 0.02, 0.03, 0.0, False, 0.0),  # painted roofs: not green space
    ("roof_rust", (142, 104, 78), 0.10, 0.03, 0.06, 0.05, False, 0.0),
    ("roof_metal", (176, 180, 186), 0.05, 0.02, 0.03, 0.08, False, 0.0),
    ("car", (128, 128, 128), 0.0, 0.02, 0.0, 0.0, False, 0.0),
]

MATERIALS = [row[0] for row in _TABLE]
M = {name: i for i, name in enumerate(MATERIALS)}
N_MATERIALS = len(MATERIALS)
BASE_RGB = np.array([row[1] for row in _TABLE], dtype=np.float32) / 255.0
SPREAD = np.array([row[2] for row in _TABLE], dtype=np.float32)
FINE = np.array([row[3] for row in _TABLE], dtype=np.float32)
MOTTLE = np.array([row[4] for row in _TABLE], dtype=np.float32)
STRIPES = np.array([row[5] for row in _TABLE], dtype=np.float32)
VEGETATED = np.array([row[6] for row in _TABLE], dtype=bool)
SOIL_MIX = np.array([row[7] for row in _TABLE], dtype=np.float32)
ROOFS = [m for m in MATERIALS if m.startswith("roof_")]
IS_ROOF = np.array([m.startswith("roof_") or m == "car" for m in MATERIALS], dtype=bool)
IS_WATER = np.array([m in ("water", "water_turbid", "fishpond") for m in MATERIALS], dtype=bool)
FARM_STRIPES = np.array([m.startswith(("crop_", "soil_", "greenhouse")) for m in MATERIALS], dtype=bool)
SOIL_RGB = np.array([150, 128, 100], dtype=np.float32) / 255.0

# Cars: white, black, silver, grey, red, blue, other (what city traffic looks like from above).
CAR_RGB = np.array([[222, 224, 226], [34, 36, 40], [170, 172, 176], [104, 106, 110], [160, 40, 38],
                    [40, 70, 130], [150, 130, 90]], dtype=np.float32) / 255.0
CAR_P = np.array([0.33, 0.22, 0.18, 0.12, 0.06, 0.05, 0.04])

# Tree crowns: 0 none, 1 city broadleaf, 2 forest, 3 orchard / banana, 4 village and roadside.
TREE_KINDS = ("none", "city", "forest", "orchard", "village")
TREE_RGB = np.array([[0, 0, 0], [54, 80, 46], [42, 64, 40], [84, 118, 56], [58, 82, 48]], dtype=np.float32) / 255.0

# UGS types of Table 1 (Shi et al. 2022).
UGS_TYPES = {1: "park", 2: "green buffer", 3: "square green space", 4: "attached green space",
             5: "other green space"}
TYPE_COLORS = {0: (0, 0, 0, 255), 1: (27, 120, 55, 255), 2: (120, 198, 121, 255), 3: (255, 217, 47, 255),
               4: (102, 194, 165, 255), 5: (166, 97, 26, 255)}
UGS_COLORS = {0: (0, 0, 0, 255), 255: (44, 160, 44, 255)}
GUB_COLORS = {0: (0, 0, 0, 255), 1: (255, 255, 255, 255)}


def group_colours(rng: np.random.Generator, materials: np.ndarray, vegetation: dict) -> np.ndarray:
    """(N, 3) display colours, one per colour group, drawn around each group's material colour.

    A shared brightness factor and a smaller per-channel part keep colours plausible; cars take one of the
    common car colours. `vegetation` (the style's season) shifts every vegetated material alike.
    """
    n = len(materials)
    base = BASE_RGB[materials].copy()
    spread = SPREAD[materials][:, None]
    bright = rng.normal(0.0, 1.0, (n, 1)).astype(np.float32)
    chroma = rng.normal(0.0, 1.0, (n, 3)).astype(np.float32)
    # roofs stray mostly in brightness (weathering, dust), little in hue
    hue = np.where(IS_ROOF[materials], 0.2, 0.35).astype(np.float32)[:, None]
    col = base * (1.0 + spread * (bright + hue * chroma))
    cars = materials == M["car"]
    pick = rng.choice(len(CAR_RGB), size=n, p=CAR_P)  # drawn for every group: the stream stays aligned
    col[cars] = CAR_RGB[pick[cars]] * (1.0 + 0.05 * bright[cars])
    veg = VEGETATED[materials]
    col[veg] = season(col[veg], vegetation)
    return np.clip(col, 0.02, 0.98).astype(np.float32)


def season(rgb: np.ndarray, vegetation: dict) -> np.ndarray:
    """Vegetation colour under the style's season: `dryness` moves green towards olive and straw,
    `vigour` scales the green excess (saturation of the leaves)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    dry = np.float32(vegetation["dryness"])
    vig = np.float32(vegetation["vigour"])
    mean = rgb.mean(axis=-1, keepdims=True)
    out = mean + vig * (rgb - mean)
    straw = np.array([1.18, 1.04, 0.82], dtype=np.float32)
    return (out * (1.0 + dry * (straw - 1.0))).astype(np.float32)
