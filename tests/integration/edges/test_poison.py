"""Poison on every topic a service reads, placed by a plain Kafka client: bad JSON, an unknown
type, a wrong version, an oversized record, a missing id. Each lands in the dead-letter topic
once per consumer that read it, with the reason; every consumer keeps going (good events after
the poison are processed)."""

import asyncio
from collections import Counter
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared.auth import hash_key
from shared.catalog import (
    ACCESS,
    ACTIVITIES,
    DEAD_LETTER,
    DEMAND,
    MEMBERSHIP,
    OUTCOMES,
    SIGNALS,
    inbound_of,
)
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.envelope import MAX_EVENT_BYTES, new_event
from shared.kafka import make_broker
from shared.periods import program_year
from tests.examples import EXAMPLES, P
from tests.integration.events.conftest import issue_partner_key
from tests.integration.topics import headers, read_topic

pytestmark = pytest.mark.integration

OPERATOR = "poison-tests-operator-key"
LATE_KEY = "poison-tests-key-issued-after-the-poison"
# Who reads which topic (consumer groups), as wired in the services.
READERS = {
    MEMBERSHIP: ("events", "metrics", "notify"),
    ACTIVITIES: ("metrics", "notify"),
    OUTCOMES: ("metrics", "notify"),
    DEMAND: ("metrics", "notify"),
    SIGNALS: ("notify",),
    ACCESS: ("membership", "events", "metrics", "notify"),
}


def poison() -> dict[str, bytes]:
    good = orjson.loads(new_event(EXAMPLES[out.HireRecorded], source="/plain-client").to_json())
    missing_id = {k: v for k, v in good.items() if k != "id"}
    return {
        "invalid_json": b'{"specversion": "1.0", "id": ',
        "unknown_type": orjson.dumps(good | {"type": "org.backbone.coffee.brewed.v1"}),
        "unknown_type:version": orjson.dumps(good | {"type": "org.backbone.hire.recorded.v9"}),
        "oversized": orjson.dumps(good | {"subject": "x" * (MAX_EVENT_BYTES + 10)}),
        "invalid_event": orjson.dumps(missing_id),
    }


async def test_poison_on_every_topic_is_dead_lettered_with_its_reason_and_consumers_go_on(
        start_service, kafka_settings):
    running = {
        n: start_service(n, {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR, "METRICS_MILESTONE_INTERVAL_SECONDS": "0.5"})
        for n in ("membership", "events", "metrics", "notify")
    }
    broker = make_broker(kafka_settings, "poison-test")
    await broker.start()
    partner, _ = await issue_partner_key(broker, kafka_settings, [P])  # a partner system's inbound topic
    await broker.stop()
    readers = READERS | {inbound_of(partner): ("events",)}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, acks="all",
                                max_request_size=2 * MAX_EVENT_BYTES)
    await producer.start()
    try:
        for topic in readers:
            for body in poison().values():
                await producer.send_and_wait(kafka_settings.topic(topic.name), body, key=P.encode())
        # Good events after the poison: a key, a partnership and a hire this program year.
        hire = EXAMPLES[out.HireRecorded].model_copy(update={"start_date": datetime.now(UTC).date()})
        late = mem.AccessKeyIssued(key_id="late", key_hash=hash_key(LATE_KEY), role="partnership_admin",
                                   partnership_ids=[P], label="late")
        for event, topic in ((late, ACCESS), (EXAMPLES[mem.PartnershipCreated], MEMBERSHIP), (hire, OUTCOMES)):
            await producer.send_and_wait(kafka_settings.topic(topic.name), new_event(event, source="/test").to_json(),
                                         key=P.encode())
    finally:
        await producer.stop()

    expected = Counter()
    for topic, services in readers.items():
        for reason in poison():
            for service in services:
                expected[(service, topic.name, reason.split(":")[0])] += 1
    letters = await dead_letters(kafka_settings, sum(expected.values()))
    assert letters == expected

    async with httpx.AsyncClient(timeout=10) as http:
        for name, service in running.items():  # every key ring went past the poison on backbone.access
            answer = await http.get(service.url + "/whoami", headers={"authorization": f"Bearer {LATE_KEY}"})
            assert answer.status_code == 200, name
        for _ in range(100):  # and the KPI rollup past the poison on the other topics
            values = await http.get(running["metrics"].url + "/kpis/values",
                                    params={"scope_id": P, "period": program_year(hire.start_date)},
                                    headers={"authorization": f"Bearer {OPERATOR}"})
            if values.status_code == 200 and values.json()["values"]["hires"] == 1:
                break
            await asyncio.sleep(0.2)
        assert values.json()["values"]["hires"] == 1


async def dead_letters(kafka_settings, n: int) -> Counter:
    """The dead letters by (service, topic, reason), once `n` are there and no more came."""
    letters = await read_topic(kafka_settings, DEAD_LETTER, until=lambda records: len(records) >= n,
                               timeout=60, settle=2)
    return Counter((h["dl_service"], h["dl_topic"].removeprefix(kafka_settings.namespace), h["dl_reason"])
                   for h in map(headers, letters))
