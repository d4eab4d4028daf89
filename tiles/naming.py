"""Tile names ⇄ tile corners and dates.

A naming template names a tile after the upper-left corner of its cell, e.g. the CBRA scheme
`CBRA_{year}_{lon_hemi}{lon}{lat_hemi}{lat}.tif` gives `CBRA_2019_E115N42.5.tif` for the 2.5° cell whose
upper-left corner is 115°E, 42.5°N. Hemispheres are letters and the numbers unsigned, so names hold
west of Greenwich (`W72.5`) and south of the equator (`S2.5`) too. A map frame may instead be named by its
GB/T 13989 sheet number, `{sheet}` (`UGS_2019_J50F001019.tif`).

The fields:
- place: `{lon_hemi}`, `{lon}`, `{lat_hemi}`, `{lat}` (the corner), or `{sheet}`; a template needs
  `{lon}` and `{lat}`, or `{sheet}`;
- time: `{year}` (the 4-digit year of the date), `{date}` (the run date as given: "2019", "2018-08" or
  "2018-08-15"), `{from}` and `{to}` (the two dates of a pair map).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from fractions import Fraction

from . import frames

_DATE = r"\d{4}(?:-\d{2}(?:-\d{2})?)?"
# Field → regex; group names are the field names prefixed, since `from` is a keyword of Python.
_FIELDS = {
    "year": r"\d{4}",
    "date": _DATE,
    "from": _DATE,
    "to": _DATE,
    "lon_hemi": r"[EW]",
    "lon": r"\d+(?:\.\d+)?",
    "lat_hemi": r"[NS]",
    "lat": r"\d+(?:\.\d+)?",
    "sheet": frames.SHEET_PATTERN,
}

Date = str | int | dt.date
Pair = tuple[Date, Date]


def format_degrees(value: Fraction) -> str:
    """Shortest decimal, to 6 places, for a corner coordinate: 115 → "115", 42.5 → "42.5", 39 11/12 →
    "39.916667" (a tile scheme checks that the name of each tile parses back to it)."""
    text = f"{float(abs(value)):.6f}".rstrip("0").rstrip(".")
    return text or "0"


def format_date(value: Date, what: str = "date") -> str:
    """A date as a name holds it: 2019 → "2019", "2018-08" and "2018-08-15" as they are; refuses anything
    else (e.g. "2018-8", "2018-02-30", a year not of 4 digits)."""
    if isinstance(value, dt.date):  # a datetime too: only its day is named
        text = f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    elif isinstance(value, int) and not isinstance(value, bool):
        if not 1000 <= value <= 9999:  # 19 is more likely a short year than the year 19
            raise ValueError(f"the {what} {value!r} is not a 4-digit year")
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError(f"the {what} {value!r} is not a year or a date (e.g. 2019, \"2018-08\", \"2018-08-15\")")
    if re.fullmatch(_DATE, text) is None:
        raise ValueError(f"the {what} {value!r} is not YYYY, YYYY-MM or YYYY-MM-DD (e.g. 2019, \"2018-08-15\")")
    parts = [int(p) for p in text.split("-")]
    try:
        dt.date(parts[0], *(parts[1:] + [1, 1])[:2])  # checks the month and the day
    except ValueError:
        raise ValueError(f"the {what} {value!r} is not a calendar date") from None
    return text


def _place(west: Fraction, north: Fraction) -> dict[str, str]:
    """The corner fields of a name."""
    return {"lon_hemi": "W" if west < 0 else "E", "lon": format_degrees(west),
            "lat_hemi": "S" if north < 0 else "N", "lat": format_degrees(north)}


class Dated:
    """A name's date (None where its template has none) and the year of it."""

    date: str | None

    @property
    def year(self) -> int | None:
        return int(self.date[:4]) if self.date is not None else None


@dataclass(frozen=True)
class NameParts(Dated):
    """What a tile name says: the upper-left corner, the date and the pair (None where the template has no
    field for them)."""

    west: Fraction
    north: Fraction
    date: str | None = None
    pair: tuple[str, str] | None = None


@dataclass(frozen=True)
class NameScheme:
    template: str

    def __post_init__(self) -> None:
        names = set(self.fields)
        unknown = names - set(_FIELDS)
        if unknown:
            raise ValueError(f"naming template {self.template!r}: unknown field(s) {sorted(unknown)}")
        if not ({"lon", "lat"} <= names or "sheet" in names):
            raise ValueError(f"naming template {self.template!r} must contain {{lon}} and {{lat}}, or {{sheet}}")
        if len(names & {"from", "to"}) == 1:
            raise ValueError(f"naming template {self.template!r} names a pair: it needs both {{from}} and {{to}}")

    @property
    def fields(self) -> tuple[str, ...]:
        """The template's fields, in order, each once."""
        return tuple(dict.fromkeys(re.findall(r"{(\w+)}", self.template)))

    @property
    def dated(self) -> bool:
        """Whether a name needs a date ({year} or {date})."""
        return bool({"year", "date"} & set(self.fields))

    @property
    def paired(self) -> bool:
        """Whether a name needs a pair of dates ({from} and {to})."""
        return "from" in self.fields

    def name(self, west: Fraction, north: Fraction, date: Date | None = None, pair: Pair | None = None) -> str:
        """The file name of the tile whose upper-left corner is (west, north), at `date` (a year such as 2019,
        or "2018-08", "2018-08-15") or for the pair of dates `pair` = (from, to)."""
        fields = set(self.fields)
        values: dict[str, str] = {}
        if self.dated:
            if date is None:
                raise ValueError(f"naming template {self.template!r} needs a date")
            values["date"] = format_date(date)
            values["year"] = values["date"][:4]
        if self.paired:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ValueError(f"naming template {self.template!r} needs a pair of dates (from, to), "
                                 f"not {pair!r}")
            values["from"], values["to"] = (format_date(d, "pair date") for d in pair)
        if "sheet" in fields:
            values["sheet"] = frames.sheet_number(west, north)
        values.update(_place(west, north))
        # str.format takes `from` as a keyword only through a mapping
        return self.template.format_map(values)

    def _pattern(self) -> str:
        pattern, seen = re.escape(self.template), set()

        def group(match: re.Match) -> str:
            field = match.group(1)
            if field in seen:  # a field used twice must say the same thing twice
                return f"(?P=f_{field})"
            seen.add(field)
            return f"(?P<f_{field}>{_FIELDS[field]})"

        return re.sub(r"\\{(\w+)\\}", group, pattern)

    def read(self, name: str) -> NameParts:
        """The corner, date and pair a tile name holds; the inverse of `name`."""
        match = re.fullmatch(self._pattern(), name)
        if match is None:
            raise ValueError(f"{name!r} is not a tile name of the form {self.template!r}")
        parts = {k[2:]: v for k, v in match.groupdict().items() if v is not None}
        if "sheet" in parts:
            west, north = frames.sheet_corner(parts["sheet"])
            if any(parts.get(k, v) != v for k, v in _place(west, north).items()):
                raise ValueError(f"{name!r}: its corner and its sheet number {parts['sheet']} disagree")
        else:
            west = Fraction(parts["lon"]) * (-1 if parts.get("lon_hemi") == "W" else 1)
            north = Fraction(parts["lat"]) * (-1 if parts.get("lat_hemi") == "S" else 1)
        date = parts.get("date", parts.get("year"))
        if date is not None:
            try:
                date = format_date(date)
            except ValueError as exc:
                raise ValueError(f"{name!r}: {exc}") from None
            if "year" in parts and date[:4] != parts["year"]:
                raise ValueError(f"{name!r}: the year {parts['year']} is not the year of the date {date}")
        pair = None
        if self.paired:
            try:
                pair = (format_date(parts["from"], "pair date"), format_date(parts["to"], "pair date"))
            except ValueError as exc:
                raise ValueError(f"{name!r}: {exc}") from None
        return NameParts(west, north, date, pair)

    def parse(self, name: str) -> tuple[Fraction, Fraction, int | None]:
        """(west, north, year) from a tile name; the inverse of `name` for a template with {year}."""
        parts = self.read(name)
        return parts.west, parts.north, parts.year
