"""The one set of bounds on dates, times and numbers, used by every contract and input schema.

What an entry point (HTTP, a roster CSV, a partner's inbound topic) accepts is exactly what every
consumer can process: consumers validate with the same contracts, so the rule is the same on every
side. The window keeps room on both ends, so shifting a date by a time zone, a quarter or a
program year never leaves the calendar (year 0001 minus a day is `year 0 is out of range`).
Documented in docs/partner-onboarding.md ("What Backbone accepts").
"""

from datetime import UTC, date, datetime, time
from typing import Annotated

from pydantic import AfterValidator, Field

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


Day = Annotated[date, Field(ge=FIRST_DAY, le=LAST_DAY)]
Moment = Annotated[datetime, AfterValidator(_within_window)]  # with a UTC offset
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Wage = Annotated[float, Field(ge=0, le=MAX_WAGE, allow_inf_nan=False, description="US dollars per hour")]
Amount = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
