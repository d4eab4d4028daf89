"""Dates as a run speaks them (`mapgen.workflows.dates`): --years and --dates, series, pairs."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapgen.workflows.dates import (
    DateError,
    check_date,
    pair_key,
    parse_dates,
    parse_years,
    series_dates,
    source_date,
)


def test_years_are_dates_that_are_years():
    assert parse_dates("2016-2021") == [str(y) for y in parse_years("2016-2021")]
    assert parse_dates("2016,2018", today=datetime.date(2026, 12, 1)) == ["2016", "2018"]
    assert parse_dates("2023-last", today=datetime.date(2026, 12, 1)) == ["2023", "2024", "2025"]
    assert [source_date(d) for d in parse_dates("2019")] == [2019]  # a source is asked for a year as an int


def test_months_and_days_sort_in_time_and_keep_one_precision():
    assert parse_dates("2020-08,2018-08") == ["2018-08", "2020-08"]
    assert parse_dates("2018-08-15, 2018-08-01") == ["2018-08-01", "2018-08-15"]
    assert source_date("2018-08") == "2018-08"
    for bad, phrase in [("2018,2018-08", "same precision"), ("2018-13", "not a date of the calendar"),
                        ("2019-02-29", "not a date of the calendar"), ("summer", "not a date"),
                        ("2021-2016", "give years as")]:
        with pytest.raises(DateError, match=phrase):
            parse_dates(bad)


def test_fusu_series_is_25_months_in_order():
    months = series_dates("2018-08", "2020-08", "1 month")
    assert len(months) == 25 and months[0] == "2018-08" and months[-1] == "2020-08" and months == sorted(months)
    assert series_dates("2016", "2022", "2 years") == ["2016", "2018", "2020", "2022"]
    assert series_dates("2018-01-30", "2018-03-01", "10 days") == ["2018-01-30", "2018-02-09", "2018-02-19",
                                                                   "2018-03-01"]
    with pytest.raises(DateError, match="finer than its dates"):
        series_dates("2018", "2020", "1 month")
    with pytest.raises(DateError, match="write it as"):
        series_dates("2018-01", "2020-01", "monthly")


@given(st.dates(min_value=datetime.date(1990, 1, 1), max_value=datetime.date(2100, 12, 31)),
       st.integers(1, 40), st.sampled_from(["day", "month"]))
def test_series_steps_evenly_and_stays_in_its_span(start, n, unit):
    precision = 10 if unit == "day" else 7
    first = start.isoformat()[:precision]
    last = (start + datetime.timedelta(days=400)).isoformat()[:precision]
    dates = series_dates(first, last, f"{n} {unit}s")
    assert dates[0] == first and all(a < b for a, b in zip(dates, dates[1:], strict=False)) and dates[-1] <= last
    assert all(check_date(d) == d for d in dates)


def test_a_pair_is_written_with_an_underscore():
    assert pair_key("2018-08", "2020-08") == "2018-08_2020-08"
