"""Years as users write them: '2016-2021', '2016,2018,2020' or '2019'."""

from __future__ import annotations


def parse_years(text: str) -> list[int]:
    """Sorted distinct years; ValueError with one line for anything else."""
    years: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            first_year, last_year = int(first), int(last or first)
            if last_year < first_year:
                raise ValueError
            years.update(range(first_year, last_year + 1))
    except ValueError:
        raise ValueError(f"{text!r}: give years as 2016-2021, 2016,2018 or 2019") from None
    return sorted(years)
