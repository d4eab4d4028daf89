"""Construction and demolition between years: which footprint stands in which year.

Like SynRS3D's pre/post pairs (a scene copied with a fraction of the buildings removed), but run
forward over several years and in both directions: lots fill up (mostly on the town fringe and in
development zones, which are bare land until then) and some buildings are demolished, leaving bare
land that may be rebuilt a year or two later with a new footprint and roof.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .buildings import KIND_INDUSTRIAL, KIND_VILLAGE, Lots, cell_polygons, footprints
from .materials import ROOF_MIX_INDUSTRIAL, ROOF_MIX_TOWN, ROOF_MIX_VILLAGE, roof_choice

NEVER = 1 << 30


@dataclass
class History:
    """Building instances: footprint, roof material, first year index standing, first index gone."""

    geoms: np.ndarray
    roof: np.ndarray
    appear: np.ndarray
    vanish: np.ndarray
    site_geoms: np.ndarray  # construction sites: bare in the year before their building appears
    site_year: np.ndarray
    stats: dict

    def standing(self, t: int) -> np.ndarray:
        return (self.appear <= t) & (t < self.vanish)


def _roofs(rng: np.random.Generator, lots: Lots, idx: np.ndarray) -> np.ndarray:
    out = np.empty(len(idx), dtype=np.uint8)
    for kind, mix in ((KIND_VILLAGE, ROOF_MIX_VILLAGE), (KIND_INDUSTRIAL, ROOF_MIX_INDUSTRIAL)):
        m = lots.kind[idx] == kind
        out[m] = roof_choice(rng, mix, int(m.sum()))
    m = (lots.kind[idx] != KIND_VILLAGE) & (lots.kind[idx] != KIND_INDUSTRIAL)
    out[m] = roof_choice(rng, ROOF_MIX_TOWN, int(m.sum()))
    return out


def sample_history(rng: np.random.Generator, lots: Lots, years: list[int]) -> History:
    n_lots, n_years = len(lots), len(years)
    construction_rate = float(rng.uniform(0.02, 0.06))  # new buildings per standing building per year
    demolition_rate = float(rng.uniform(0.004, 0.012))
    rebuild_p = float(rng.uniform(0.3, 0.6))
    site_p = float(rng.uniform(0.3, 0.7))  # chance a construction site shows the year before

    # One entry per building instance: its lot, the first year index it stands, the first it is gone.
    lot_idx = np.flatnonzero(lots.exists0)
    app = np.zeros(len(lot_idx), dtype=np.int64)
    van = np.full(len(lot_idx), NEVER, dtype=np.int64)
    occupied = np.zeros(n_lots, dtype=bool)
    occupied[lot_idx] = True  # has stood or is scheduled: never picked again for fresh construction
    rebuild_at: dict[int, list[int]] = {}
    transitions = []
    for t in range(1, n_years):
        gap = years[t] - years[t - 1]
        stand = np.flatnonzero((app <= t - 1) & (t - 1 < van))
        # Demolition: at least one per transition when anything stands, so change is always present.
        p_d = 1.0 - (1.0 - demolition_rate) ** gap
        n_demo = min(len(stand), max(1, int(rng.binomial(len(stand), p_d)))) if len(stand) else 0
        demo = rng.choice(stand, size=n_demo, replace=False) if n_demo else np.zeros(0, dtype=np.int64)
        van[demo] = t
        for i in lot_idx[demo]:  # some cleared lots are rebuilt one or two years later
            if rng.random() < rebuild_p:
                rebuild_at.setdefault(t + int(rng.integers(1, 3)), []).append(int(i))
        rebuilt = np.array(rebuild_at.pop(t, []), dtype=np.int64)
        # Construction on free lots, weighted towards the fringe and the development zones.
        p_c = 1.0 - (1.0 - construction_rate) ** gap
        free = np.flatnonzero(~occupied)
        n_new = min(len(free), max(1, int(rng.binomial(max(len(stand), 1), p_c)))) if len(free) else 0
        if n_new:
            new = rng.choice(free, size=n_new, replace=False, p=lots.weight[free] / lots.weight[free].sum())
            occupied[new] = True
        else:
            new = np.zeros(0, dtype=np.int64)
        added = np.concatenate([new, rebuilt]).astype(np.int64)
        lot_idx = np.concatenate([lot_idx, added])
        app = np.concatenate([app, np.full(len(added), t, dtype=np.int64)])
        van = np.concatenate([van, np.full(len(added), NEVER, dtype=np.int64)])
        transitions.append({"from": years[t - 1], "to": years[t], "constructed": int(len(new)),
                            "rebuilt": int(len(rebuilt)), "demolished": int(n_demo)})

    geoms = footprints(rng, lots, lot_idx)
    roof = _roofs(rng, lots, lot_idx)
    # Construction sites: the lot is cleared (bare) the year before a new building shows.
    site = (app >= 1) & (rng.random(len(app)) < site_p)
    site_geoms = cell_polygons(lots, lot_idx[site], shrink=0.95) if site.any() else np.empty(0, dtype=object)
    standing = [int(((app <= t) & (t < van)).sum()) for t in range(n_years)]
    stats = {"construction_rate_per_year": construction_rate, "demolition_rate_per_year": demolition_rate,
             "rebuild_probability": rebuild_p, "construction_site_probability": site_p,
             "transitions": transitions,
             "buildings_standing": dict(zip(map(str, years), standing, strict=True)),
             "lots": n_lots, "lots_built_first_year": int(lots.exists0.sum())}
    return History(geoms=geoms, roof=roof, appear=app, vanish=van, site_geoms=site_geoms,
                   site_year=app[site] - 1, stats=stats)
