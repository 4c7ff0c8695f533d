"""The activity lifecycle over HTTP on the real stack: every rule, the read model's eventual
consistency, and exactly the accepted events on backbone.activities."""

import asyncio
from datetime import timedelta

import pytest

from shared.catalog import ACTIVITIES
from shared.contracts import activities as act
from tests.examples import T0, T1, P
from tests.integration.events.conftest import example, join
from tests.integration.topics import header, read_topic

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)


def body(model, **changes) -> dict:
    return example(model, **changes).model_dump(mode="json")


def rejected_fields(response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.json()["status"] == "rejected"
    return [e["field"] for e in response.json()["errors"]]


async def test_activity_lifecycle_and_its_rules(operator, roster, membership_broker, kafka_settings):
    accepted: list[str] = []

    async def ok(path: str, data: dict) -> None:
        response = await operator.post(path, json=data)
        assert response.status_code == 202, response.text
        accepted.append(response.json()["id"])

    # Scheduled by an active member, for an open action team.
    await ok("/activities", body(act.ActivityScheduled, action_team_id="sw-hub"))
    state = (await operator.get(f"/partnerships/{P}/activities/tour-1")).json()
    assert (state["status"], state["host_ids"], state["kind"]) == ("scheduled", ["microboard"], "plant_tour")

    # Hosts must be active members; a closed or unknown team is refused; ids are per partnership.
    assert rejected_fields(await operator.post("/activities", json=body(
        act.ActivityScheduled, activity_id="tour-2", host_ids=["sikorsky", "microboard", "acme"],
        action_team_id="sw-old"))) == ["data.host_ids.0", "data.host_ids.2", "data.action_team_id"]
    assert rejected_fields(await operator.post("/activities", json=body(act.ActivityScheduled))) == ["data.activity_id"]
    assert rejected_fields(await operator.post("/activities", json=body(
        act.ActivityScheduled, partnership_id="nowhere"))) == ["data.partnership_id"]

    # Rescheduled, then completion is held against the new start.
    await ok("/activities/reschedule", body(act.ActivityRescheduled, starts_at=T0 + DAY, ends_at=T1 + DAY))
    assert rejected_fields(await operator.post("/activities/complete", json=body(
        act.ActivityCompleted, completed_at=T1))) == ["data.completed_at"]
    assert rejected_fields(await operator.post("/activities/complete", json=body(
        act.ActivityCompleted, completed_at=T1 + DAY, kind="career_day"))) == ["data.kind"]
    assert rejected_fields(await operator.post("/activities/attendance", json=body(
        act.AttendanceRecorded, activity_id="tour-9"))) == ["data.activity_id"]
    await ok("/activities/attendance", body(act.AttendanceRecorded))
    await ok("/activities/complete", body(act.ActivityCompleted, completed_at=T1 + DAY,
                                          follow_ups=[{"title": "Send photos to the school"}]))
    state = (await operator.get(f"/partnerships/{P}/activities/tour-1")).json()
    assert (state["status"], state["reschedules"]) == ("completed", 1)
    for path, data in (("/activities/cancel", body(act.ActivityCancelled)),
                       ("/activities/reschedule", body(act.ActivityRescheduled)),
                       ("/activities/complete", body(act.ActivityCompleted, completed_at=T1 + DAY))):
        response = await operator.post(path, json=data)
        assert rejected_fields(response) == ["data.activity_id"]
        assert "already completed" in response.json()["errors"][0]["message"]

    # A cancelled activity takes no attendance; an unknown one takes nothing.
    await ok("/activities", body(act.ActivityScheduled, activity_id="fair-1", kind="hiring_event",
                                 sites=["Waterbury", "Danbury", "Norwalk"]))
    await ok("/activities/cancel", body(act.ActivityCancelled, activity_id="fair-1"))
    assert rejected_fields(await operator.post("/activities/attendance", json=body(
        act.AttendanceRecorded, activity_id="fair-1", kind="hiring_event"))) == ["data.activity_id"]
    assert rejected_fields(await operator.post("/activities/reschedule", json=body(
        act.ActivityRescheduled, activity_id="never"))) == ["data.activity_id"]
    assert (await operator.get(f"/partnerships/{P}/activities/never")).status_code == 404

    # Eventual consistency: a host whose joining has not arrived is refused with the reason; the
    # partner retries the same request (same Idempotency-Key) and it is accepted once it has.
    tour = body(act.ActivityScheduled, activity_id="tour-3", host_ids=["newco"])
    early = await operator.post("/activities", json=tour, headers={"Idempotency-Key": "tour-3-scheduled"})
    assert rejected_fields(early) == ["data.host_ids.0"]
    assert "not reached the events service yet" in early.json()["errors"][0]["message"]
    await join(membership_broker, kafka_settings, "newco")
    async with asyncio.timeout(20):
        while (retry := await operator.post("/activities", json=tour,
                                            headers={"Idempotency-Key": "tour-3-scheduled"})).status_code == 422:
            await asyncio.sleep(0.1)
    assert retry.status_code == 202 and retry.json()["id"] == "tour-3-scheduled"
    accepted.append("tour-3-scheduled")
    again = await operator.post("/activities", json=tour, headers={"Idempotency-Key": "tour-3-scheduled"})
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")

    # backbone.activities holds exactly the accepted events, once each, in the order accepted
    # (all are sw-mp's, so one partition).
    records = await read_topic(kafka_settings, ACTIVITIES)
    assert [header(r, "ce_id") for r in records] == accepted
    assert [header(r, "ce_type").split(".")[2:4] for r in records] == [
        ["activity", "scheduled"], ["activity", "rescheduled"], ["attendance", "recorded"], ["activity", "completed"],
        ["activity", "scheduled"], ["activity", "cancelled"], ["activity", "scheduled"]]
