"""Records far larger than any event (5 MB and 20 MB) on every topic a service reads: each
consumer dead-letters each one exactly once, with its coordinates, the reason and a truncated
copy that fits the dead-letter topic, and goes on to the good event behind them. Before any of
this, every service's /metrics already shows its dead-letter series at 0, so the first dead
letter is an increase an alert can see; afterwards each service has logged one warning per
dead letter and nothing per message."""

import asyncio
from collections import Counter

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from shared.catalog import DEAD_LETTER, event_type_of, inbound_of, topic_label
from shared.contracts import membership as mem
from shared.envelope import new_event
from shared.kafka import DEAD_LETTER_BODY_BYTES, make_broker
from tests.examples import EXAMPLES, P
from tests.integration.edges.test_poison import READERS
from tests.integration.events.conftest import issue_partner_key
from tests.integration.topics import headers, read_topic

pytestmark = pytest.mark.integration

MB = 1024 * 1024
SIZES = (5 * MB, 20 * MB)
SERVICES = ("membership", "events", "metrics", "notify")


def big(size: int) -> bytes:
    """A well-formed event padded to `size` bytes: only its size is wrong."""
    event = orjson.loads(new_event(EXAMPLES[mem.PartnershipCreated], source="/plain-client").to_json())
    padding = size - len(orjson.dumps(event | {"subject": ""}))
    return orjson.dumps(event | {"subject": "x" * padding})


def good_event(topic) -> bytes:
    """An event of `topic`'s own, or any event (a partner topic's is decided as its key's). Not a
    partner key's issuing: the events service would make the key's topic and subscribe again, a
    rebalance that re-reads (and re-letters) what the partner topic's consumer has not committed."""
    own = (e for kind, e in EXAMPLES.items() if event_type_of(e).topic == topic and kind is not mem.AccessKeyIssued)
    data = next(own, EXAMPLES[mem.PartnershipCreated])
    return new_event(data, source="/test").to_json()


def samples(exposition: str, name: str, namespace: str) -> dict[tuple[str, str], float]:
    """`name`'s samples by (topic without namespace, reason or outcome)."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == name:
                found[(s.labels["topic"].removeprefix(namespace),
                       s.labels.get("reason") or s.labels["outcome"])] = s.value
    return found


async def exposition(http: httpx.AsyncClient, service) -> str:
    return (await http.get(service.url + "/metrics")).text


async def test_oversized_records_on_every_topic_are_dead_lettered_once_and_consumers_go_on(
        start_service, kafka_settings, namespace):
    running = {n: start_service(n) for n in SERVICES}
    broker = make_broker(kafka_settings, "oversized-test")
    await broker.start()
    partner, _ = await issue_partner_key(broker, kafka_settings, [P])
    await broker.stop()
    readers = READERS | {inbound_of(partner): ("events",)}
    # The events service reads a new key's topic once its consumer group has rebalanced onto it: a
    # first good event read there says it has, so no rebalance re-reads (and re-letters) what follows.
    async with asyncio.timeout(60), httpx.AsyncClient(timeout=10) as http:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(kafka_settings.topic(inbound_of(partner).name),
                                         good_event(inbound_of(partner)), key=P.encode())
        finally:
            await producer.stop()
        while not any(v for (t, _), v in samples(await exposition(http, running["events"]),
                                                 "backbone_events_consumed_total", namespace).items()
                      if t == topic_label(inbound_of(partner).name)):
            await asyncio.sleep(0.3)

    async with httpx.AsyncClient(timeout=10) as http:
        for name, service in running.items():  # every series there from the start, at 0
            text = await exposition(http, service)
            letters = samples(text, "backbone_dead_letters_total", namespace)
            read = [topic_label(t.name) for t, names in readers.items() if name in names]  # inbound: one label
            assert {t for (t, _), v in letters.items() if v == 0} >= set(read), name
            assert all(letters[(t, "oversized")] == 0 for t in read), name
            assert 'backbone_retries_total{cause="infrastructure",component="consumer"} 0.0' in text, name

    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, acks="all",
                                max_request_size=max(SIZES) + MB)
    await producer.start()
    placed = {}  # (topic, size) -> (partition, offset)
    bodies = {size: big(size) for size in SIZES}
    try:
        for topic in readers:
            name = kafka_settings.topic(topic.name)
            for size in SIZES:
                sent = await producer.send_and_wait(name, bodies[size], key=P.encode(), headers=[("origin", b"probe")])
                placed[(topic.name, size)] = (sent.partition, sent.offset)
            await producer.send_and_wait(name, good_event(topic), key=P.encode())
    finally:
        await producer.stop()

    # Every reader goes past both records to the good event behind them.
    async with httpx.AsyncClient(timeout=10) as http:
        async with asyncio.timeout(120):
            for topic, names in readers.items():
                for name in names:
                    while True:
                        consumed = samples(await exposition(http, running[name]), "backbone_events_consumed_total",
                                           namespace)
                        outcomes = {o: v for (t, o), v in consumed.items() if t == topic_label(topic.name)}
                        first = 1 if topic.name.startswith("backbone.inbound.") else 0  # the good event above
                        if sum(outcomes.values()) - outcomes.get("retried", 0) >= len(SIZES) + 1 + first:
                            break
                        await asyncio.sleep(0.3)

    expected = Counter({(name, topic.name, placed[(topic.name, size)]): 1
                        for topic, names in readers.items() for name in names for size in SIZES})
    letters = await oversized_letters(kafka_settings, sum(expected.values()))
    assert Counter({k: len(v) for k, v in letters.items()}) == expected
    for [(letter, value)] in letters.values():
        size = int(letter["dl_size"])
        assert size in SIZES and letter["dl_truncated"] == "true"
        assert value == bodies[size][:DEAD_LETTER_BODY_BYTES]  # the first part, for whoever investigates
        assert letter["dl_header.origin"] == "probe" and "larger than" in letter["dl_detail"]

    # The logs: one warning per dead letter, nothing per message (FastStream's lines are at debug).
    for name, service in running.items():
        service.stop()  # flushes its log
        lines = [orjson.loads(line) for line in service.log.read_text().splitlines() if line.startswith("{")]
        assert not [line for line in lines if line["message"] in ("Received", "Processed")], name
        warned = Counter((line["message"], line.get("reason")) for line in lines)
        assert warned[("message dead-lettered", "oversized")] == sum(
            n for (s, _, _), n in expected.items() if s == name
        )


async def oversized_letters(kafka_settings, n: int) -> dict:
    """The oversized dead letters by (service, topic, (partition, offset)): [(headers, value)]."""
    def oversized(records: list) -> list:
        return [r for r in records if headers(r)["dl_reason"] == "oversized"]

    letters = await read_topic(kafka_settings, DEAD_LETTER, until=lambda records: len(oversized(records)) >= n,
                               timeout=60, settle=2)
    found: dict = {}
    for r in oversized(letters):
        h = headers(r)
        where = (h["dl_service"], h["dl_topic"].removeprefix(kafka_settings.namespace),
                 (int(h["dl_partition"]), int(h["dl_offset"])))
        found.setdefault(where, []).append((h, r.value))
    return found
