"""Issue 18 on the real local stack (Tansu + SecantusDB, the events and metrics services as their
own processes): events about one tour, one cancelled career day and two hires arrive in mixed
order, some over HTTP through the events service, some straight onto the Kafka topics (a
correction before the record it corrects, a completion and separations before what they follow),
and the KPI API answers with the activity's day, the corrected count, nothing for the cancelled
day, retention from separations with its coverage, and the employer hosting."""

import asyncio
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from shared.contracts import activities as act
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.envelope import new_event
from shared.kafka import ensure_topics, make_producer, publish_many
from tests.examples import EXAMPLES, P

pytestmark = pytest.mark.integration

OPERATOR = "operator-key-for-issue-18"
AUTH = {"Authorization": f"Bearer {OPERATOR}"}
EMPLOYER = "microboard"  # the catalogue example: a registered employer, member of P
START = date(2025, 8, 1)


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def ev(data, when: datetime):
    return new_event(data, source="/tests/issue-18", time=when)


def hire(hire_id: str):
    return ev(out.HireRecorded(partnership_id=P, hire_id=hire_id, person_id=f"p-{hire_id}", employer_id=EMPLOYER,
                               soc_code="51-4041", start_date=START, resident=True), at(START))


def separated(hire_id: str, days: int):
    day = START + timedelta(days=days)
    return ev(out.SeparationRecorded(partnership_id=P, hire_id=hire_id, person_id=f"p-{hire_id}",
                                     employer_id=EMPLOYER, separated_on=day), at(day))


async def until(http: httpx.AsyncClient, period: str, want: dict, timeout: float = 60.0) -> dict:
    """Poll (bounded) the KPI API until these values show; the last answer otherwise."""
    values: dict = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                response = await http.get("/kpis/values", params={"scope_id": P, "period": period}, headers=AUTH)
                if response.status_code == 200:
                    values = response.json()["values"]
                    if all(values[k] == v for k, v in want.items()):
                        return values
                await asyncio.sleep(0.3)
    except TimeoutError:
        pass
    return values


async def test_mixed_order_over_http_and_kafka_gives_the_issues_figures(start_service, kafka_settings):
    await ensure_topics(kafka_settings)
    env = {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR}
    events_service, metrics = (
        start_service("events", env),
        start_service("metrics", env | {"METRICS_MAX_BATCH_EVENTS": "5"}),
    )
    tour_day, day_of_career_day = date(2025, 9, 20), date(2025, 10, 3)
    schedule = ev(act.ActivityScheduled(partnership_id=P, activity_id="t1", kind="plant_tour", title="Tour",
                                        starts_at=at(tour_day, 14), ends_at=at(tour_day, 16), host_ids=[EMPLOYER]),
                  at(date(2025, 8, 1)))
    completion = ev(act.ActivityCompleted(partnership_id=P, activity_id="t1", kind="plant_tour",
                                          completed_at=at(tour_day, 16), participant_ids=[EMPLOYER]), at(tour_day, 16))
    first_count = ev(act.AttendanceRecorded(partnership_id=P, activity_id="t1", kind="plant_tour",
                                            counts={"students": 7}), at(date(2025, 12, 1)))
    correction = ev(act.AttendanceRecorded(partnership_id=P, activity_id="t1", kind="plant_tour",
                                           counts={"students": 9}), at(date(2025, 12, 2)))
    career_day = [
        ev(act.ActivityScheduled(partnership_id=P, activity_id="c1", kind="career_day", title="Career day",
                                 starts_at=at(day_of_career_day, 9), ends_at=at(day_of_career_day, 15),
                                 host_ids=[EMPLOYER]), at(date(2025, 9, 1))),
        ev(act.AttendanceRecorded(partnership_id=P, activity_id="c1", kind="career_day", counts={"students": 30}),
           at(date(2025, 9, 2))),
        ev(act.ActivityCancelled(partnership_id=P, activity_id="c1"), at(date(2025, 9, 3))),
    ]

    # Kafka first: the membership roster, the correction, the completion and both separations,
    # before anything they refer to or correct exists.
    roster = [ev(EXAMPLES[m], at(date(2025, 7, 1))) for m in
              (mem.PartnershipCreated, mem.OrganisationRegistered, mem.MemberJoined)]
    async with make_producer(kafka_settings, "tests") as producer:
        await publish_many(producer, kafka_settings, [*roster, correction, completion, separated("h1", 151),
                                                      separated("h2", 30)])
    # Then HTTP through the events service (which checks them against what it knows).
    async with httpx.AsyncClient(base_url=events_service.url, timeout=30, headers=AUTH) as http:
        for event in [schedule, first_count, *career_day, hire("h1"), hire("h2")]:
            async with asyncio.timeout(30):  # the roster may not have reached the events service yet
                while True:
                    response = await http.post("/events", content=event.to_json(),
                                               headers={"content-type": "application/cloudevents+json"})
                    if response.status_code != 422:
                        break
                    await asyncio.sleep(0.3)
            assert response.status_code == 202, response.text

    async with httpx.AsyncClient(base_url=metrics.url, timeout=30) as http:
        september = await until(http, "2025-09", {"students_reached": 9, "tours_held": 1, "employers_hosting": 1})
        assert (september["students_reached"], september["tours_held"], september["employers_hosting"],
                september["employers_engaged"]) == (9, 1, 1, 1)  # on the tour's day; corrected, not 7 + 9
        december = await until(http, "2025-12", {})
        assert december["students_reached"] == 0  # not when the counts were sent
        q4 = await until(http, "2025-Q4", {})
        assert (q4["students_reached"], q4["career_events_held"], q4["employers_hosting"]) == (0, 0, 0)  # cancelled
        august = await until(http, "2025-08", {"retention_90_days": 0.5})
        assert (august["hires"], august["retention_90_days"], august["retention_90_days_coverage"]) == (2, 0.5, 1.0)
        assert (august["retention_180_days"], august["retention_180_days_coverage"]) == (0.0, 1.0)

        definitions = (await http.get("/kpis/definitions", headers=AUTH)).json()["kpis"]
        students = next(k for k in definitions if k["name"] == "students_reached")
        assert students["version"] == 2 and "latest scheduled" in students["dating"] and students["example"]
