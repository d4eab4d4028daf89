"""Tile names ⇄ tile corners.

A naming template names a tile after the upper-left corner of its cell, e.g. the CBRA scheme
`CBRA_{year}_{lon_hemi}{lon}{lat_hemi}{lat}.tif` gives `CBRA_2019_E115N42.5.tif` for the 2.5° cell whose
upper-left corner is 115°E, 42.5°N. Hemispheres are letters and the numbers unsigned, so names hold
west of Greenwich (`W72.5`) and south of the equator (`S2.5`) too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_FIELDS = {
    "year": r"(?P<year>\d{4})",
    "lon_hemi": r"(?P<lon_hemi>[EW])",
    "lon": r"(?P<lon>\d+(?:\.\d+)?)",
    "lat_hemi": r"(?P<lat_hemi>[NS])",
    "lat": r"(?P<lat>\d+(?:\.\d+)?)",
}


def format_degrees(value: Fraction) -> str:
    """Shortest exact decimal for a corner coordinate: 115 → "115", 42.5 → "42.5"."""
    text = f"{float(abs(value)):.6f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class NameScheme:
    template: str

    def __post_init__(self) -> None:
        names = set(re.findall(r"{(\w+)}", self.template))
        unknown = names - set(_FIELDS)
        if unknown:
            raise ValueError(f"naming template {self.template!r}: unknown field(s) {sorted(unknown)}")
        if not {"lon", "lat"} <= names:
            raise ValueError(f"naming template {self.template!r} must contain {{lon}} and {{lat}}")

    def name(self, west: Fraction, north: Fraction, year: int | None = None) -> str:
        """The file name of the tile whose upper-left corner is (west, north)."""
        return self.template.format(
            year=year,
            lon_hemi="W" if west < 0 else "E",
            lon=format_degrees(west),
            lat_hemi="S" if north < 0 else "N",
            lat=format_degrees(north),
        )

    def parse(self, name: str) -> tuple[Fraction, Fraction, int | None]:
        """(west, north, year) from a tile name; the inverse of `name`."""
        pattern = re.escape(self.template)
        for field, regex in _FIELDS.items():
            pattern = pattern.replace(re.escape("{" + field + "}"), regex)
        match = re.fullmatch(pattern, name)
        if match is None:
            raise ValueError(f"{name!r} is not a tile name of the form {self.template!r}")
        parts = match.groupdict()
        west = Fraction(parts["lon"]) * (-1 if parts.get("lon_hemi") == "W" else 1)
        north = Fraction(parts["lat"]) * (-1 if parts.get("lat_hemi") == "S" else 1)
        year = int(parts["year"]) if parts.get("year") else None
        return west, north, year
