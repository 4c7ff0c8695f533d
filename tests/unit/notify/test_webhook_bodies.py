"""notify's own webhook bodies (reminder, meeting follow-up, weekly digest): built through the shared
envelope from their catalogue contracts, and the same JSON receivers got from the hand-made dicts
before (written out below), timestamps compared as instants: UTC is now spelt `Z`, as in every
other Backbone event, where it was `+00:00`."""

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from services.notify.domain import DIGEST, FOLLOW_UP, REMINDER
from services.notify.messages import SOURCE, digest_data, follow_up_data, reminder_data, webhook_body
from shared.catalog import WEBHOOK_BY_MODEL
from shared.contracts import activities as act
from shared.contracts.notifications import ActivityReminder, MeetingFollowUp, WeeklyDigest

P = "sw-mp"
NOW = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
STARTS = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)
ENDS = STARTS + timedelta(hours=2)
ZONE = ZoneInfo("America/New_York")


def instants(value: Any) -> Any:
    """The JSON with every RFC 3339 date-time read as an aware datetime, so `Z` equals `+00:00`."""
    if isinstance(value, dict):
        return {k: instants(v) for k, v in value.items()}
    if isinstance(value, list):
        return [instants(v) for v in value]
    if isinstance(value, str) and len(value) > 10 and value[4] == "-" and value[10] == "T":
        return datetime.fromisoformat(value)
    return value


def envelope(id: str, type: str, subject: str, data: dict) -> dict:
    return {"specversion": "1.0", "id": id, "source": "/backbone/notify", "type": type,
            "time": "2026-03-09T08:00:00+00:00", "subject": subject, "datacontenttype": "application/json",
            "data": data}


def check(body: bytes, model: type, before: dict) -> None:
    received = orjson.loads(body)
    assert received["type"] == WEBHOOK_BY_MODEL[model].type and received["source"] == SOURCE
    model.model_validate(received["data"])  # what a receiver can validate against the contract
    assert list(received) == list(before) and list(received["data"]) == list(before["data"])
    assert instants(received) == instants(before)


def test_reminder_body():
    activity = {"_id": "k", "partnership_id": P, "activity_id": "tour-1", "kind": "plant_tour",
                "title": "Microboard plant tour", "starts_at": STARTS, "ends_at": ENDS, "sites": ["Danbury"],
                "host_ids": ["microboard"], "status": "scheduled"}
    body = webhook_body("reminder-1", NOW, "tour-1", reminder_data(activity, 7200))
    check(body, ActivityReminder, envelope("reminder-1", REMINDER, "tour-1", {
        "partnership_id": P, "activity_id": "tour-1", "kind": "plant_tour", "title": "Microboard plant tour",
        "starts_at": "2026-03-11T14:00:00+00:00", "ends_at": "2026-03-11T16:00:00+00:00", "sites": ["Danbury"],
        "host_ids": ["microboard"], "lead_seconds": 7200}))


def test_reminder_of_an_activity_only_seen_rescheduled():
    """Notify then knows no kind, sites or hosts: "activity", and empty lists as before."""
    activity = {"partnership_id": P, "activity_id": "tour-2", "kind": "activity", "title": "tour-2",
                "starts_at": STARTS, "ends_at": ENDS}
    data = orjson.loads(webhook_body("reminder-2", NOW, "tour-2", reminder_data(activity, 172800)))["data"]
    assert (data["kind"], data["sites"], data["host_ids"]) == ("activity", [], [])


@pytest.mark.parametrize("title", ["Quarterly meeting", None])
def test_follow_up_body_keeps_nulls(title):
    completed = act.ActivityCompleted(
        partnership_id=P, activity_id="meeting-1", kind="partnership_meeting", completed_at=NOW,
        participant_ids=["microboard"], minutes=None,
        follow_ups=[act.FollowUp(title="Share the plan", owner_id="microboard", due=date(2026, 4, 1)),
                    act.FollowUp(title="Book the next tour")])
    body = webhook_body("follow-up.e-1", NOW, "meeting-1", follow_up_data(completed, title))
    check(body, MeetingFollowUp, envelope("follow-up.e-1", FOLLOW_UP, "meeting-1", {
        "partnership_id": P, "activity_id": "meeting-1", "title": title, "completed_at": "2026-03-09T08:00:00Z",
        "participant_ids": ["microboard"], "minutes": None,
        "follow_ups": [{"title": "Share the plan", "owner_id": "microboard", "due": "2026-04-01"},
                       {"title": "Book the next tour", "owner_id": None, "due": None}]}))


JOURNAL = [
    {"type": "org.backbone.member.joined.v1", "data": {"organisation_id": "microboard"}},
    {"type": "org.backbone.kpi.milestone_reached.v1",
     "data": {"kpi": "hires", "period": "PY2025", "value": 40.0, "threshold": 40.0, "reason": "target"}},
]
COMING = [{"_id": "k", "activity_id": "tour-1", "title": "Tour", "kind": "plant_tour", "starts_at": STARTS,
           "ends_at": ENDS, "status": "scheduled"}]


@pytest.mark.parametrize("kpis", [
    {"available": True, "period": "PY2025",
     "movement": [{"kpi": "hires", "value": 12.0, "change": 3.0}, {"kpi": "placements", "value": 4.0, "change": None}]},
    {"available": False, "note": "KPI movement is missing from this digest: the metrics service could not be reached."},
])
def test_digest_body(kpis):
    since = datetime(2026, 3, 2, tzinfo=ZONE)
    until = datetime(2026, 3, 9, tzinfo=ZONE)
    data = digest_data(P, "2026-W11", since, until, JOURNAL, COMING, kpis)
    body = webhook_body("digest.sw-mp.2026-W11", NOW, P, data)
    check(body, WeeklyDigest, envelope("digest.sw-mp.2026-W11", DIGEST, P, {
        "partnership_id": P, "week": "2026-W11", "since": "2026-03-02T00:00:00-05:00",
        "until": "2026-03-09T00:00:00-04:00",
        "happened": {"counts": {"org.backbone.member.joined.v1": 1, "org.backbone.kpi.milestone_reached.v1": 1},
                     "new_members": ["microboard"],
                     "milestones": [{"kpi": "hires", "period": "PY2025", "value": 40.0, "reason": "target"}]},
        "coming": [{"activity_id": "tour-1", "title": "Tour", "kind": "plant_tour",
                    "starts_at": "2026-03-11T14:00:00+00:00"}],
        "kpis": kpis}))
