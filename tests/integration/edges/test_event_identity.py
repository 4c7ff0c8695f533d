"""Event identity per source and partner identity on Kafka, on the real stack (events and metrics
services, keys issued on the access topic as membership does):
- two partner systems of two partnerships send the same event id, each from its own source: both
  are accepted and both hires counted (CloudEvents: an event is unique by source + id);
- a key sending as another key's source is refused;
- a record on partner A's inbound topic for partnership B is dead-lettered with the reason and
  never counted, while A's own event on it is accepted; a record on a revoked key's topic too."""

import asyncio
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from shared.catalog import DEAD_LETTER, inbound_of
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.envelope import new_event
from shared.kafka import publish
from shared.periods import program_year
from tests.examples import P
from tests.integration.events.conftest import (  # noqa: F401 - fixtures
    OPERATOR_KEY,
    OTHER,
    events_service,
    example,
    issue_partner_key,
    membership_broker,
    roster,
    send_to,
)
from tests.integration.topics import header, read_topic

pytestmark = pytest.mark.integration

STRUCTURED = {"content-type": "application/cloudevents+json"}
TODAY = datetime.now(UTC).date()


def hire(partnership_id: str, hire_id: str, source: str, id: str = "hire-0001") -> bytes:
    data = example(out.HireRecorded, partnership_id=partnership_id, hire_id=hire_id, start_date=TODAY)
    return new_event(data, source=source, id=id).to_json()


async def until(check, timeout: float = 30.0):
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.2)
        return found


async def test_same_ids_of_two_sources_are_two_events_and_partner_topics_act_as_their_key(
        start_service, events_service, roster, membership_broker, kafka_settings):  # noqa: F811
    metrics = start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY})
    a_id, a_secret = await issue_partner_key(membership_broker, kafka_settings, [P], label="ATS of A")
    b_id, b_secret = await issue_partner_key(membership_broker, kafka_settings, [OTHER], label="ATS of B")
    gone_id, gone_secret = await issue_partner_key(membership_broker, kafka_settings, [P], label="retired ATS")
    await publish(membership_broker, kafka_settings,
                  new_event(mem.AccessKeyRevoked(key_id=gone_id), source="/backbone/membership"))

    async with httpx.AsyncClient(base_url=events_service.url, timeout=10) as http:
        def whoami(secret: str):
            return http.get("/whoami", headers={"Authorization": f"Bearer {secret}"})

        async def keys_known() -> bool:
            statuses = [(await whoami(s)).status_code for s in (a_secret, b_secret, gone_secret)]
            return statuses == [200, 200, 401]

        await until(keys_known)
        as_a, as_b = ({"Authorization": f"Bearer {a_secret}"} | STRUCTURED,
                      {"Authorization": f"Bearer {b_secret}"} | STRUCTURED)

        # The same id from two sources: two events, both accepted.
        first = await http.post("/events", content=hire(P, "h-a1", f"/keys/{a_id}"), headers=as_a)
        second = await http.post("/events", content=hire(OTHER, "h-b1", f"/keys/{b_id}"), headers=as_b)
        assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
        # Each source's own retry is still a duplicate.
        again = await http.post("/events", content=hire(P, "h-a1", f"/keys/{a_id}"), headers=as_a)
        assert (again.status_code, again.json()["status"]) == (200, "duplicate")

        # A key may not send as another key's source (nor probe its ids that way).
        posing = await http.post("/events", content=hire(P, "h-a2", f"/keys/{b_id}", id="hire-0002"), headers=as_a)
        assert posing.status_code == 403 and f"/keys/{b_id}" in posing.text

    # Kafka: A's topic carries a record for B's partnership (refused) and A's own (accepted);
    # the revoked key's topic one for its former partnership (refused).
    await send_to(kafka_settings, inbound_of(a_id), hire(OTHER, "h-b2", f"/keys/{a_id}", id="kafka-foreign"),
                  hire(P, "h-a3", f"/keys/{a_id}", id="kafka-own"))
    await send_to(kafka_settings, inbound_of(gone_id), hire(P, "h-a4", f"/keys/{gone_id}", id="kafka-revoked"))

    letters = await read_topic(kafka_settings, DEAD_LETTER, until=lambda records: len(records) >= 2)
    refused = {orjson.loads(r.value)["id"]: (header(r, "dl_reason"), header(r, "dl_detail"), header(r, "dl_topic"))
               for r in letters}
    assert set(refused) == {"kafka-foreign", "kafka-revoked"}
    reason, detail, topic = refused["kafka-foreign"]
    assert (reason, topic) == ("not_allowed", kafka_settings.topic(inbound_of(a_id).name)) and OTHER in detail
    reason, detail, topic = refused["kafka-revoked"]
    assert (reason, topic) == ("unknown_key", kafka_settings.topic(inbound_of(gone_id).name)) and gone_id in detail

    # Through the rollup: A's two hires and B's one; the refused records count nowhere.
    async with httpx.AsyncClient(base_url=metrics.url, timeout=10,
                                 headers={"Authorization": f"Bearer {OPERATOR_KEY}"}) as http:
        async def hires() -> dict[str, int] | None:
            counted = {}
            for pid in (P, OTHER):
                answer = await http.get("/kpis/values", params={"scope_id": pid, "period": program_year(TODAY)})
                if answer.status_code != 200:
                    return None
                counted[pid] = answer.json()["values"]["hires"]
            return counted if counted == {P: 2, OTHER: 1} else None

        assert await until(hires, timeout=60) == {P: 2, OTHER: 1}
