"""Events that arrive before the roster change they depend on, on the real stack: held (202
pending over HTTP, no dead letter on the inbound topic), accepted by themselves once the roster
arrives and counted once; and refused, or dead-lettered, with the reason when their hold ends."""

import asyncio
import os
import signal

import httpx
import orjson
import pytest

from shared.catalog import DEAD_LETTER, OUTCOMES, inbound_of
from shared.contracts import outcomes as out
from shared.envelope import new_event
from tests.examples import P
from tests.integration.events.conftest import OPERATOR_KEY, example, issue_partner_key, join, send_to
from tests.integration.topics import header, read_topic

pytestmark = pytest.mark.integration

BATCH = {"content-type": "application/cloudevents-batch+json"}


@pytest.fixture
def hold_seconds() -> str:
    return "600"


@pytest.fixture
def events_env(hold_seconds) -> dict[str, str]:
    """Holding on (the other events tests turn it off), retried every second at most."""
    return {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY, "EVENTS_HOLD_SECONDS": hold_seconds,
            "EVENTS_HOLD_RETRY_MAX_SECONDS": "1"}


@pytest.fixture
def events_service(start_service, events_env):
    return start_service("events", events_env)


def early_hire(id: str, employer_id: str, source: str = "/ats/sw", **changes):
    return new_event(example(out.HireRecorded, employer_id=employer_id, **changes), source=source, id=id)


async def status_of(operator: httpx.AsyncClient, event, until=lambda answer: True) -> dict:
    async with asyncio.timeout(30):
        while True:
            response = await operator.get("/events/status", params={"partnership_id": P, "source": event.source,
                                                                     "id": event.id})
            if response.status_code == 200 and until(answer := response.json()):
                return answer
            await asyncio.sleep(0.2)


def copies(records, event) -> int:
    return sum(header(r, "ce_id") == event.id for r in records)


async def test_an_early_hire_over_http_is_accepted_once_its_employer_joins(start_service, operator, kafka_settings):
    membership = start_service("membership", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY,
                                              "MEMBERSHIP_OUTBOX_POLL_SECONDS": "0.2"})
    async with httpx.AsyncClient(base_url=membership.url, headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
                                 timeout=30) as roster:
        for path, body in (("/regions", {"id": "ct-southwest", "name": "Southwest Connecticut", "state": "CT"}),
                           ("/sectors", {"id": "manufacturing", "name": "Manufacturing"}),
                           ("/partnerships", {"id": P, "name": "Southwest", "region_id": "ct-southwest",
                                              "sector_id": "manufacturing"})):
            assert (await roster.post(path, json=body)).status_code == 201

        hire = early_hire("e-early", "acme")
        sent = await operator.post("/events", content=orjson.dumps([orjson.loads(hire.to_json())]), headers=BATCH)
        assert sent.status_code == 202, sent.text
        assert int(sent.headers["retry-after"]) >= 1
        [result] = sent.json()["results"]
        assert (result["status"], sent.json()["pending"]) == ("pending", 1)
        assert {e["reason"] for e in result["errors"]} <= {"unknown_partnership", "unknown_organisation"}
        held = await status_of(operator, hire)
        assert held["status"] == "pending" and held["deadline"] and "membership_lag" in held
        # Sent again while held: still pending, held once.
        again = await operator.post("/events", content=orjson.dumps([orjson.loads(hire.to_json())]), headers=BATCH)
        assert (again.status_code, again.json()["results"][0]["status"]) == (202, "pending")

        # The employer registers and joins through the membership service; nobody sends the hire again.
        assert (
            await roster.post("/organisations", json={"id": "acme", "name": "Acme", "kind": "employer"})
        ).status_code == 201
        joined = await roster.post(
            f"/partnerships/{P}/members", json={"organisation_id": "acme", "joined_on": "2026-01-05"}
        )
        assert joined.status_code == 201, joined.text

    decided = await status_of(operator, hire, until=lambda answer: answer["status"] != "pending")
    assert decided["status"] == "accepted"
    caught_up = await status_of(operator, hire, until=lambda answer: answer["membership_lag"] == 0)
    assert caught_up["status"] == "accepted"
    resent = await operator.post("/events", content=orjson.dumps([orjson.loads(hire.to_json())]), headers=BATCH)
    assert (resent.status_code, resent.json()["results"][0]["status"]) == (200, "duplicate")
    assert copies(await read_topic(kafka_settings, OUTCOMES), hire) == 1


async def test_an_early_event_on_the_inbound_topic_waits_for_the_roster_instead_of_a_dead_letter(
        operator, roster, membership_broker, kafka_settings):
    key_id, _ = await issue_partner_key(membership_broker, kafka_settings, [P], sources=["/ats/sw"])
    hire = early_hire("e-inbound-early", "newco")
    retained = new_event(example(out.RetentionChecked, employer_id="newco"), source="/ats/sw", id="e-retained")
    await send_to(kafka_settings, inbound_of(key_id), hire.to_json(), retained.to_json())
    held = await status_of(operator, hire)
    assert (held["status"], held["reason"]) == ("pending", "unknown_organisation")
    assert (await status_of(operator, retained))["reason"] == "unknown_hire"  # waits for the held hire

    await join(membership_broker, kafka_settings, "newco")  # as membership publishes it
    for event in (hire, retained):
        decided = await status_of(operator, event, until=lambda answer: answer["status"] != "pending")
        assert decided["status"] == "accepted"
    outcomes = await read_topic(kafka_settings, OUTCOMES)
    assert (copies(outcomes, hire), copies(outcomes, retained)) == (1, 1)
    assert [header(r, "ce_id") for r in outcomes] == [hire.id, retained.id]  # in the order they were sent
    assert await read_topic(kafka_settings, DEAD_LETTER) == []


@pytest.mark.parametrize("hold_seconds", ["3"])
async def test_what_never_arrives_is_refused_or_dead_lettered_with_the_reason_when_the_hold_ends(
        operator, roster, membership_broker, kafka_settings):
    key_id, _ = await issue_partner_key(membership_broker, kafka_settings, [P], sources=["/ats/sw"])
    over_http = early_hire("e-ghost-http", "ghost")
    sent = await operator.post("/events", content=orjson.dumps([orjson.loads(over_http.to_json())]), headers=BATCH)
    assert (sent.status_code, sent.json()["results"][0]["status"]) == (202, "pending")
    on_kafka = early_hire("e-ghost-kafka", "ghost", hire_id="h-2")
    await send_to(kafka_settings, inbound_of(key_id), on_kafka.to_json())

    refused = await status_of(operator, over_http, until=lambda answer: answer["status"] != "pending")
    assert (refused["status"], refused["reason"]) == ("rejected", "unknown_organisation")
    assert [e["field"] for e in refused["errors"]] == ["data.employer_id"]
    dead = await read_topic(kafka_settings, DEAD_LETTER, until=lambda records: records)
    assert [(header(r, "dl_reason"), header(r, "dl_topic"), header(r, "dl_offset")) for r in dead] == [
        ("unknown_organisation", kafka_settings.topic(inbound_of(key_id).name), "0")]  # its record's coordinates
    assert orjson.loads(dead[0].value)["id"] == on_kafka.id
    assert (await status_of(operator, on_kafka))["status"] == "rejected"
    assert not [
        r for r in await read_topic(kafka_settings, OUTCOMES) if header(r, "ce_id") in (over_http.id, on_kafka.id)
    ]


async def test_a_held_event_outlives_a_killed_replica(start_service, events_env, events_service, operator, roster,
                                                    membership_broker, kafka_settings):
    hire = early_hire("e-survivor", "newco")
    sent = await operator.post("/events", content=orjson.dumps([orjson.loads(hire.to_json())]), headers=BATCH)
    assert (sent.status_code, sent.json()["results"][0]["status"]) == (202, "pending")  # stored before this answer
    os.kill(events_service.process.pid, signal.SIGKILL)
    events_service.process.wait(timeout=10)

    survivor = start_service("events", events_env)
    await join(membership_broker, kafka_settings, "newco")
    async with httpx.AsyncClient(base_url=survivor.url, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}) as http:
        decided = await status_of(http, hire, until=lambda answer: answer["status"] != "pending")
    assert decided["status"] == "accepted"
    assert copies(await read_topic(kafka_settings, OUTCOMES), hire) == 1
