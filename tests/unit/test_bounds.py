"""The one set of bounds: what the contracts accept, every consumer can process."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.contracts import outcomes as out
from shared.contracts.bounds import (
    FIRST_DAY,
    LAST_DAY,
    MAX_COUNT,
    Amount,
    Count,
    Day,
    Moment,
    PeriodLabel,
    Wage,
)
from shared.envelope import EventError, new_event, parse_event
from tests.examples import EXAMPLES

NON_FINITE = [float("nan"), float("inf"), float("-inf"), "NaN", "Infinity"]


def valid(bound, value) -> bool:
    try:
        TypeAdapter(bound).validate_python(value)
    except ValidationError:
        return False
    return True


def test_days_within_the_window_only():
    assert valid(Day, FIRST_DAY) and valid(Day, LAST_DAY) and valid(Day, "2026-04-01")
    assert not valid(Day, date(1, 1, 1)) and not valid(Day, FIRST_DAY - timedelta(days=1))
    assert not valid(Day, LAST_DAY + timedelta(days=1)) and not valid(Day, "9999-12-31")


def test_moments_within_the_window_with_an_offset():
    assert valid(Moment, "2026-03-10T14:00:00Z") and valid(Moment, "1900-01-01T05:00:00+05:00")
    assert not valid(Moment, "2026-03-10T14:00:00")  # no offset
    assert not valid(Moment, "0001-01-01T00:00:00Z") and not valid(Moment, "0001-01-01T00:00:00+05:00")
    assert not valid(Moment, "9999-12-31T23:59:59-05:00")
    assert not valid(Moment, datetime(1899, 12, 31, 23, 0, tzinfo=UTC))
    # A shift by its offset must stay in the window: 1900-01-01 00:00+01:00 is 1899 in UTC.
    assert not valid(Moment, datetime(1900, 1, 1, tzinfo=timezone(timedelta(hours=1))))


@pytest.mark.parametrize("bound", [Wage, Amount])
@pytest.mark.parametrize("value", NON_FINITE)
def test_numbers_are_finite(bound, value):
    assert not valid(bound, value)


def test_numbers_within_their_ranges():
    assert valid(Count, 0) and valid(Count, MAX_COUNT) and not valid(Count, MAX_COUNT + 1)
    assert not valid(Count, 10**30) and not valid(Count, -1)
    assert valid(Wage, 24.5) and not valid(Wage, 1001) and not valid(Wage, -1)
    assert valid(Amount, 40) and not valid(Amount, 1e30) and not valid(Amount, -1)


@pytest.mark.parametrize("wage", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_json_numbers_in_an_event_name_the_field(wage):
    """Not JSON, but some clients write them: the field is named, as over the typed endpoints."""
    event = new_event(EXAMPLES[out.HireRecorded], source="/ats/sw").to_json()
    with pytest.raises(EventError) as refused:
        parse_event(event.replace(b'"hourly_wage":24.5', f'"hourly_wage":{wage}'.encode()))
    assert [e["field"] for e in refused.value.errors] == ["data.hourly_wage"]
    assert refused.value.reason == "invalid_event"


@pytest.mark.parametrize("raw", [b"\xffnot json", b'{"id": "\\ud800"}', b"{"])
def test_not_json_is_still_not_json(raw):
    with pytest.raises(EventError) as refused:
        parse_event(raw)
    assert refused.value.reason == "invalid_json"


def test_periods_within_the_window():
    valid_labels = ("PY2025", "2025-Q3", "2025-09", "PY1900", "PY2198", "2199-Q4", "2199-12")
    assert all(valid(PeriodLabel, p) for p in valid_labels)
    assert not any(valid(PeriodLabel, p) for p in ("PY9999", "PY2199", "1899-Q4", "0001-01", "2025-13", "2025", "PY25"))
