"""Years as users write them: '2016-2021', '2016,2018,2020', '2019', or with 'last' (the last complete year)."""

from __future__ import annotations

import datetime


def last_complete_year(today: datetime.date | None = None) -> int:
    """The last calendar year that has ended: a scheduled job's newest year."""
    return (today or datetime.date.today()).year - 1


def parse_years(text: str, today: datetime.date | None = None) -> list[int]:
    """Sorted distinct years; 'last' stands for the last complete year ('2016-last'). ValueError with one
    line for anything else."""
    years: set[int] = set()
    last = str(last_complete_year(today))
    try:
        for part in text.split(","):
            first, dash, final = part.strip().replace("last", last).partition("-")
            first_year, last_year = int(first), int(final if dash else first)
            if last_year < first_year:
                raise ValueError
            years.update(range(first_year, last_year + 1))
    except ValueError:
        raise ValueError(f"{text!r}: give years as 2016-2021, 2016,2018, 2019 or 2016-last") from None
    return sorted(years)
