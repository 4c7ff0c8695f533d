"""Reporting periods (shared/periods.py), the one place every service reads them from."""

from datetime import date

import pytest

from shared.periods import (
    Grain,
    parse_period,
    parse_target_period,
    period_of,
    periods_between,
    program_year,
)


def test_program_years_run_july_to_june():
    assert period_of(date(2025, 6, 30), Grain.PROGRAM_YEAR).label == "PY2024"
    assert period_of(date(2025, 7, 1), Grain.PROGRAM_YEAR).label == "PY2025"
    assert program_year(date(2026, 3, 11)) == "PY2025" and program_year(date(2026, 7, 1)) == "PY2026"
    py = parse_period("PY2025")
    assert (py.start, py.end) == (date(2025, 7, 1), date(2026, 6, 30))
    assert py.months[0] == "2025-07" and py.months[-1] == "2026-06" and len(py.months) == 12


def test_quarters_and_months():
    assert period_of(date(2025, 9, 30), Grain.QUARTER).label == "2025-Q3"
    assert period_of(date(2025, 10, 1), Grain.QUARTER).label == "2025-Q4"
    q1 = parse_period("2026-Q1")
    assert (q1.start, q1.end, q1.months) == (date(2026, 1, 1), date(2026, 3, 31), ["2026-01", "2026-02", "2026-03"])
    feb = parse_period("2024-02")
    assert feb.end == date(2024, 2, 29)  # a leap year
    assert parse_period("2025-12").end == date(2025, 12, 31)
    assert [p.label for p in periods_between(Grain.QUARTER, date(2025, 7, 1), date(2026, 6, 30))] == [
        "2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2"]
    for bad in ("2025-13", "PY25", "2025-Q5", "July", "PY9999"):
        with pytest.raises(ValueError):
            parse_period(bad)


def test_elapsed_share_of_a_period():
    py = parse_period("PY2025")
    assert py.elapsed(date(2025, 6, 1)) == 0
    assert py.elapsed(date(2026, 12, 1)) == 1
    assert py.elapsed(date(2025, 12, 31)) == pytest.approx(184 / 365)


def test_target_periods_stay_within_the_documented_years():
    assert parse_target_period("PY2025").label == "PY2025" and parse_target_period("2199-12").label == "2199-12"
    for far in ("PY1899", "PY0001", "2200-01", "PY2199", "PY9998"):
        with pytest.raises(ValueError, match="outside|is not a period"):
            parse_target_period(far)
