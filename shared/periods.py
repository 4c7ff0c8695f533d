"""Reporting periods, once for every service: a month (`2026-03`), a calendar quarter (`2026-Q1`)
or a program year (`PY2025`, 1 July 2025 - 30 June 2026).

Labels are accepted for years in the bounds' window (shared/contracts/bounds.py): a target or a
query for `PY9999` names no period any event can fall in."""

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from shared.contracts.bounds import FIRST_DAY, LAST_DAY, PERIOD_PATTERN  # noqa: F401  (PERIOD_PATTERN: the shape)


class Grain(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"  # calendar quarters: Q3 is July-September, the first of a program year
    PROGRAM_YEAR = "program_year"  # PY2025 runs 1 July 2025 - 30 June 2026


@dataclass(frozen=True)
class Period:
    grain: Grain
    start: date
    end: date  # inclusive
    label: str

    @property
    def months(self) -> list[str]:
        first = self.start.year * 12 + self.start.month - 1
        last = self.end.year * 12 + self.end.month - 1
        return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in range(first, last + 1)]

    def elapsed(self, today: date) -> float:
        """The share of the period gone by on `today` (0 before it starts, 1 once it is over)."""
        if today < self.start:
            return 0.0
        days = (self.end - self.start).days + 1
        return min(1.0, ((today - self.start).days + 1) / days)


def month_of(day: date) -> str:
    return day.isoformat()[:7]  # "2026-03"; the quickest way in CPython, and this runs per event


def _month_end(year: int, month: int) -> date:
    return date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)


def period_of(day: date, grain: Grain) -> Period:
    if grain is Grain.MONTH:
        return Period(grain, day.replace(day=1), _month_end(day.year, day.month), month_of(day))
    if grain is Grain.QUARTER:
        quarter = (day.month - 1) // 3
        return Period(grain, date(day.year, quarter * 3 + 1, 1), _month_end(day.year, quarter * 3 + 3),
                      f"{day.year}-Q{quarter + 1}")
    year = day.year if day.month >= 7 else day.year - 1
    return Period(grain, date(year, 7, 1), date(year + 1, 6, 30), f"PY{year}")


def program_year(day: date) -> str:
    """The label of the program year `day` falls in: PY2025 for 2026-03-01."""
    return period_of(day, Grain.PROGRAM_YEAR).label


def parse_period(label: str) -> Period:
    """`2026-03`, `2026-Q1` or `PY2025`; ValueError otherwise."""
    try:
        if label.startswith("PY") and len(label) == 6:
            return period_of(date(int(label[2:]), 7, 1), Grain.PROGRAM_YEAR)
        if len(label) == 7 and label[4:6] == "-Q" and label[6] in "1234":
            return period_of(date(int(label[:4]), int(label[6]) * 3, 1), Grain.QUARTER)
        if len(label) == 7 and label[4] == "-":
            return period_of(date(int(label[:4]), int(label[5:]), 1), Grain.MONTH)
    except ValueError:
        pass
    raise ValueError(f"{label!r} is not a period: use 2026-03 (month), 2026-Q1 (quarter) or PY2025 (program year)")


def parse_target_period(label: str) -> Period:
    """A period a target may be set for: a valid label within the bounds' window; ValueError otherwise."""
    period = parse_period(label)
    if not (FIRST_DAY <= period.start and period.end <= LAST_DAY):
        raise ValueError(f"{label!r} is outside {FIRST_DAY} - {LAST_DAY}")
    return period


def periods_between(grain: Grain, first: date, last: date) -> list[Period]:
    """Consecutive periods of one grain from the one holding `first` to the one holding `last`."""
    periods = []
    day = first
    while day <= last:
        periods.append(period := period_of(day, grain))
        day = period.end + timedelta(days=1)
    return periods
