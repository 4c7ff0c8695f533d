"""How accepted records are filed (services/events/store.py `sheets_of`): a partnership's day of a
group to a sheet, in order, and never more than SHEET_BYTES of records in one."""

from datetime import UTC, datetime, timedelta, timezone

import bson

from services.events.store import SHEET_BYTES, day_of, sheets_of

DAY = datetime(2026, 3, 1, 9, tzinfo=UTC)


def record(n: int, partnership_id: str = "sw-mp", time: datetime | None = DAY, padding: int = 0) -> dict:
    return {"_id": f"/ats e-{n}", "source": "/ats", "id": f"e-{n}", "type": "t", "partnership_id": partnership_id,
            "data": {"note": "x" * padding}} | ({"time": time} if time else {})


def test_a_partnerships_day_of_a_group_is_one_sheet_in_order():
    records = [record(1), record(2, "scmip"), record(3, time=DAY + timedelta(days=1)), record(4), record(5, time=None)]
    sheets = sheets_of(records)
    assert [(s["partnership_id"], s["day"], s["ids"]) for s in sheets] == [
        ("sw-mp", "2026-03-01", ["e-1", "e-4"]), ("scmip", "2026-03-01", ["e-2"]),
        ("sw-mp", "2026-03-02", ["e-3"]), ("sw-mp", "", ["e-5"])]
    assert all(s["identities"] == [r["_id"] for r in s["records"]] for s in sheets)


def test_large_records_start_new_sheets_below_the_limit():
    records = [record(n, padding=200_000) for n in range(90)]  # ~18 MB of one day: over MongoDB's 16 MiB
    sheets = sheets_of(records)
    assert len(sheets) >= 5
    assert [r for s in sheets for r in s["records"]] == records
    assert all(len(bson.encode({"records": s["records"]})) <= SHEET_BYTES + 1024 for s in sheets)


def test_the_day_of_a_record_is_its_utc_day():
    assert day_of(datetime(2026, 3, 1, 20, tzinfo=timezone(timedelta(hours=-5)))) == "2026-03-02"
    assert day_of(datetime(2026, 3, 2, 1)) == "2026-03-02"  # as the database gives it back: naive UTC
    assert day_of(None) == ""
