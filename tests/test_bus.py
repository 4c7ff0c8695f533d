"""Catalogue events over the real (Tansu) broker: one service publishes, another's subscriber
receives the validated model; malformed messages end up in the dead-letter topic with a reason."""

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.catalog import DEAD_LETTER, MEMBERSHIP
from shared.consumer import RuleViolation, subscribe
from shared.contracts.membership import MemberJoined
from shared.envelope import CloudEvent, new_event
from shared.kafka import ensure_topics, make_broker, publish
from tests.examples import EXAMPLES

pytestmark = pytest.mark.integration


async def _dead_letters(kafka_settings, count: int, timeout: float = 20.0) -> list:
    consumer = AIOKafkaConsumer(
        kafka_settings.topic(DEAD_LETTER.name), bootstrap_servers=kafka_settings.bootstrap_servers,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_event_crosses_services_and_bad_messages_are_dead_lettered(kafka_settings):
    await ensure_topics(kafka_settings)
    received: list[CloudEvent] = []

    async def on_joined(event: CloudEvent) -> None:
        if event.data.organisation_id == "not-a-member":
            raise RuleViolation("organisation is not known")
        received.append(event)

    membership = make_broker(kafka_settings, "membership")
    events_service = make_broker(kafka_settings, "events")
    subscribe(events_service, kafka_settings, "events", [MEMBERSHIP], {MemberJoined: on_joined})
    await membership.start()
    await events_service.start()
    try:
        joined = new_event(EXAMPLES[MemberJoined], source="/backbone/membership")
        await publish(membership, kafka_settings, joined)
        breaking = new_event(EXAMPLES[MemberJoined].model_copy(update={"organisation_id": "not-a-member"}),
                             source="/backbone/membership")
        await publish(membership, kafka_settings, breaking)

        # A plain Kafka client, as a careless partner would, puts malformed messages on the topic.
        producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers)
        await producer.start()
        bad = orjson.loads(joined.to_json())
        bad["data"]["role"] = "overlord"
        topic = kafka_settings.topic(MEMBERSHIP.name)
        await producer.send_and_wait(topic, orjson.dumps(bad), key=b"sw-mp")
        await producer.send_and_wait(topic, b"\x00not json", key=b"sw-mp")
        await producer.stop()

        letters = await _dead_letters(kafka_settings, 3)
        async with asyncio.timeout(10):
            while not received:
                await asyncio.sleep(0.05)
    finally:
        await events_service.stop()
        await membership.stop()

    assert [e.id for e in received] == [joined.id]
    assert received[0].data == EXAMPLES[MemberJoined]
    assert isinstance(received[0].data, MemberJoined)
    reasons = {dict(r.headers)["dl_reason"].decode(): dict(r.headers) for r in letters}
    assert set(reasons) == {"rule_violation", "invalid_event", "invalid_json"}
    assert b"data.role" in reasons["invalid_event"]["dl_detail"]
    assert reasons["invalid_json"]["dl_topic"].decode() == topic
    assert all(dict(r.headers)["dl_service"] == b"events" for r in letters)
