"""Dates as a run speaks them: years ('2019'), months ('2018-08') or days ('2018-08-15').

A run has dates; an annual product's dates are its years, so `--years 2016-2021` is `--dates 2016-2021`.
Dates are kept as ISO strings of one of three precisions: they sort in time order, they name folders and
tiles as they are, and a year is never confused with a month. Plain data: no engine code here.
"""

from __future__ import annotations

import datetime
import re

_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_YEARS = re.compile(r"(\d{4}|last)(\s*-\s*(\d{4}|last))?")  # a year or a span of years, as --years takes
_STEP = re.compile(r"(\d+)\s*(year|month|day)s?")


class DateError(ValueError):
    """A date, list of dates or series that cannot be read: one line saying what and how to write it."""


def check_date(text: str) -> str:
    """`text` if it is a year, a month or a day (2019, 2018-08, 2018-08-15) of a real calendar, else DateError."""
    match = _DATE.fullmatch(str(text).strip())
    if match is None:
        raise DateError(f"{text!r} is not a date: write a year (2019), a month (2018-08) or a day (2018-08-15)")
    year, month, day = (int(g) if g else None for g in match.groups())
    try:
        datetime.date(year, month or 1, day or 1)
    except ValueError:
        raise DateError(f"{text!r} is not a date of the calendar") from None
    return match.group(0)


def is_year(date: str | int) -> bool:
    return len(str(date)) == 4


def source_date(date: str | int) -> int | str:
    """How a source is asked for a date: an annual composite by its year (int), anything else by its ISO date."""
    return int(date) if is_year(date) else str(date)


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


def parse_dates(text: str, today: datetime.date | None = None) -> list[str]:
    """Sorted distinct dates of `--dates`: years as for `--years` (2016-2021, 2016-last) or a list of dates of
    one precision (2018-08,2020-08). DateError with one line for anything else."""
    text = str(text).strip()
    if all(_YEARS.fullmatch(part.strip()) for part in text.split(",")):
        try:
            return [str(y) for y in parse_years(text, today)]
        except ValueError as exc:
            raise DateError(str(exc)) from None
    dates = sorted({check_date(part) for part in text.split(",") if part.strip()})
    if not dates:
        raise DateError(f"{text!r}: give dates as 2018-08,2020-08 or years as 2016-2021")
    if len({len(d) for d in dates}) > 1:
        raise DateError(f"{text!r}: give every date to the same precision (all years, all months or all days)")
    return dates


def series_dates(start: str, stop: str, step: str) -> list[str]:
    """The dates from `start` to `stop` (both included) every `step` ('1 month', '2 years', '10 days'), at the
    precision of `start`."""
    start, stop = check_date(start), check_date(stop)
    if len(start) != len(stop):
        raise DateError(f"series {start} … {stop}: give both ends to the same precision")
    match = _STEP.fullmatch(str(step).strip())
    if match is None or int(match[1]) < 1:
        raise DateError(f"series step {step!r}: write it as '1 month', '1 year' or '16 days'")
    n, unit = int(match[1]), match[2]
    if {"year": 4, "month": 7, "day": 10}[unit] > len(start):
        raise DateError(f"series step {step!r} is finer than its dates ({start})")
    y, m, d = (int(v) for v in (start + "-01-01")[:10].split("-"))
    out: list[str] = []
    current = datetime.date(y, m, d)
    while (text := current.isoformat()[:len(start)]) <= stop:
        out.append(text)
        if unit == "day":
            current += datetime.timedelta(days=n)
        else:
            months = current.month - 1 + (n if unit == "month" else 12 * n)
            current = current.replace(year=current.year + months // 12, month=months % 12 + 1)
    if not out:
        raise DateError(f"series {start} … {stop}: the end comes before the start")
    return out


def pair_key(first: str, second: str) -> str:
    """How a pair of dates is written in keys and the store: '2018-08_2020-08'."""
    return f"{first}_{second}"
