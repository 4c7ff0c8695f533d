"""Catalogue events over the real (Tansu) broker: one service publishes, another's subscriber
receives the validated model; malformed messages end up in the dead-letter topic with a reason."""

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from shared.catalog import DEAD_LETTER, MEMBERSHIP
from shared.consumer import RuleViolation, subscribe
from shared.contracts.membership import MemberJoined
from shared.envelope import CloudEvent, new_event
from shared.kafka import ensure_topics, log_ends, make_broker, publish
from shared.lag import ConsumerLag
from tests.examples import EXAMPLES
from tests.integration.topics import read_topic

pytestmark = pytest.mark.integration


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

        letters = await read_topic(kafka_settings, DEAD_LETTER, until=lambda records: len(records) >= 3)
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


async def test_batches_are_redelivered_when_the_infrastructure_fails_and_gone_through_one_by_one_on_a_bug(
        kafka_settings):
    """A batch consumer: a broker outage redelivers the whole batch; a bug goes through it message by
    message, so only the message at fault is retried and then dead-lettered; refusals keep order."""
    await ensure_topics(kafka_settings)
    joined = [new_event(EXAMPLES[MemberJoined].model_copy(update={"organisation_id": f"org-{i}"}),
                        source="/backbone/membership") for i in range(6)]
    culprit, breaking = joined[2], joined[4]
    batches: list[list[str]] = []
    one_by_one: list[str] = []

    async def decide(events: list[CloudEvent]) -> list[str | None]:
        batches.append([e.id for e in events])
        if len(batches) == 1:
            raise KafkaConnectionError("broker away")  # transient: the same batch comes again
        if culprit.id in batches[-1]:
            raise ValueError("a bug")
        return ["not a member" if e.id == breaking.id else None for e in events]

    async def on_joined(event: CloudEvent) -> None:
        one_by_one.append(event.id)
        if event.id == culprit.id:
            raise ValueError("a bug")
        if event.id == breaking.id:
            raise RuleViolation("not a member")

    consumer_broker = make_broker(kafka_settings, "events")
    subscribe(consumer_broker, kafka_settings, "events", [MEMBERSHIP], {MemberJoined: on_joined},
              batches=decide, max_attempts=2, backoff_seconds=0.01)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        topic = kafka_settings.topic(MEMBERSHIP.name)
        for message in [e.to_json() for e in joined[:3]] + [b"\x00not json"] + [e.to_json() for e in joined[3:]]:
            await producer.send(topic, message, key=b"sw-mp")  # one partition: one batch, in this order
        await producer.flush()
        await consumer_broker.start()
        letters = await read_topic(kafka_settings, DEAD_LETTER, until=lambda records: len(records) >= 3)
    finally:
        await producer.stop()
        await consumer_broker.stop()

    assert batches[0] == batches[1]  # redelivered after the outage
    assert culprit.id in batches[1]
    # Gone through one by one, twice (max_attempts=2), then the culprit is dead-lettered.
    assert one_by_one.count(culprit.id) == 2
    reasons = [(dict(r.headers)["dl_reason"].decode(), dict(r.headers)["dl_offset"].decode()) for r in letters]
    assert [reason for reason, _ in reasons] == ["handler_error", "invalid_json", "rule_violation"]
    assert [int(offset) for _, offset in reasons] == sorted(int(offset) for _, offset in reasons)


async def test_the_log_ends_after_the_last_record_of_a_batch_of_many(kafka_settings):
    """Tansu answers end-offset requests with the last batch's base offset + 1: 1 here, where a batch
    of 40 records is the whole partition. log_ends, and the consumer lag built on it, count all 40."""
    await ensure_topics(kafka_settings)
    topic = kafka_settings.topic(MEMBERSHIP.name)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, acks="all")
    lag = ConsumerLag(kafka_settings, "test-lag")
    lag.follow(kafka_settings.group("nobody"), [MEMBERSHIP])
    await producer.start()
    try:
        for partition, size in ((0, 40), (1, 1)):
            batch = producer.create_batch()
            for i in range(size):
                batch.append(key=None, value=f"record {i}".encode(), timestamp=None)
            batch.close()
            await (await producer.send_batch(batch, topic, partition=partition))
        partitions = [TopicPartition(topic, p) for p in range(MEMBERSHIP.partitions)]
        ends = await log_ends(kafka_settings, partitions)
        await lag.step()
    finally:
        await lag.close()
        await producer.stop()

    assert ends == {tp: {0: 40, 1: 1}.get(tp.partition, 0) for tp in partitions}
    assert lag.of(kafka_settings.group("nobody")) == 41
