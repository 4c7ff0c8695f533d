"""The one set of bounds on dates, times and numbers, used by every contract and input schema.

What an entry point (HTTP, a roster CSV, a partner's inbound topic) accepts is exactly what every
consumer can process: consumers validate with the same contracts, so the rule is the same on every
side. The window keeps room on both ends, so shifting a date by a time zone, a quarter or a
program year never leaves the calendar (year 0001 minus a day is `year 0 is out of range`).
Documented in docs/partner-onboarding.md ("What Backbone accepts").
"""

from datetime import UTC, date, datetime, time
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2199, 12, 31)
_FIRST_MOMENT = datetime.combine(FIRST_DAY, time.min, UTC)
_LAST_MOMENT = datetime.combine(LAST_DAY, time.max, UTC)

MAX_COUNT = 1_000_000  # people, seats or openings in one record: far above any real event
MAX_WAGE = 1_000  # US dollars per hour
MAX_AMOUNT = 1_000_000_000  # a target or KPI value


def _within_window(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset")
    if not _FIRST_MOMENT <= value <= _LAST_MOMENT:
        raise ValueError(f"timestamp must be between {FIRST_DAY} and {LAST_DAY} (UTC)")
    return value


def _period_within_window(value: str) -> str:
    # A program year runs into the next calendar year (PY2025: 1 July 2025 - 30 June 2026).
    last_year = LAST_DAY.year - 1 if value.startswith("PY") else LAST_DAY.year
    if not FIRST_DAY.year <= int(value.removeprefix("PY")[:4]) <= last_year:
        raise ValueError(f"the period must lie between {FIRST_DAY} and {LAST_DAY}")
    return value


Day = Annotated[date, Field(ge=FIRST_DAY, le=LAST_DAY)]
Moment = Annotated[datetime, AfterValidator(_within_window)]  # with a UTC offset
# A reporting period label (parsed into shared.periods.Period): program year PY2025, quarter 2025-Q3 or month 2025-09.
PERIOD_PATTERN = r"^(PY\d{4}|\d{4}-Q[1-4]|\d{4}-(0[1-9]|1[0-2]))$"
PeriodLabel = Annotated[str, StringConstraints(pattern=PERIOD_PATTERN),
                   AfterValidator(_period_within_window)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Wage = Annotated[float, Field(ge=0, le=MAX_WAGE, allow_inf_nan=False, description="US dollars per hour")]
Amount = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
