"""The rollup's duplicates on the real servers, through its seen filter's two answers: "never
applied" (no lookup) and "maybe" (looked up among the identities stored with the KPIs). A filter
that says "maybe" to everything must count exactly what a fresh one counts; copies that arrive
after a restart are found through the store."""

from datetime import date

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from services.metrics.rollup import SOURCES, Rollup
from services.metrics.store import MetricsStore
from shared.contracts.outcomes import HireRecorded
from shared.envelope import new_event
from shared.kafka import client_options, ensure_topics, log_ends, make_producer, publish_many
from shared.mongo import make_client

pytestmark = pytest.mark.integration

HIRES = 300


def hires(count: int) -> list:
    return [new_event(HireRecorded(partnership_id="sw-mp", hire_id=f"h-{i}", person_id=f"p-{i}", employer_id="acme",
                                   soc_code="51-4041", start_date=date(2025, 7, 1), resident=True), source="/ats")
            for i in range(count)]


def lookups(answer: str) -> float:
    return REGISTRY.get_sample_value("backbone_metrics_dedupe_lookups_total", {"answer": answer}) or 0


async def fold_everything(kafka_settings, store: MetricsStore, *, everything_maybe: bool) -> None:
    """A rollup on every partition, from where the store says, until it has stored all there is."""
    consumer = AIOKafkaConsumer(**client_options(kafka_settings), group_id=kafka_settings.group("metrics"),
                                enable_auto_commit=False)  # assigned, not subscribed: the group only keeps hints
    rollup = Rollup(consumer, store, kafka_settings, role="current", version=await store.version(), seen_filter_mib=1)
    if everything_maybe:
        rollup.seen.bits[:] = 0xFF
    tps = [TopicPartition(kafka_settings.topic(t.name), p) for t in SOURCES for p in range(t.partitions)]
    await consumer.start()
    try:
        consumer.assign(tps)
        await rollup.resume(set(tps))
        ends = await log_ends(kafka_settings, tps)
        while any((rollup.positions.get(tp) or 0) < end for tp, end in ends.items()):
            await rollup.process(await consumer.getmany(timeout_ms=200, max_records=100))
    finally:
        await consumer.stop()


async def hires_counted(store: MetricsStore) -> int:
    return sum(f.counts["hires"] for _, _, f in await store.dated(await store.version(), None, "2025-07"))


async def test_a_filter_that_rules_nothing_out_counts_exactly_and_restarts_find_copies_in_the_store(
        kafka_settings, mongo_settings):
    await ensure_topics(kafka_settings)
    client = make_client(mongo_settings)
    store = MetricsStore(client[mongo_settings.database_prefix + "metrics"])
    await store.setup()
    events = hires(HIRES)
    try:
        async with make_producer(kafka_settings, "dedupe-test") as producer:
            # Every event twice, the copies in other batches (batches are 100 records) and in the same one.
            await publish_many(producer, kafka_settings, events + events[:150])
            await publish_many(producer, kafka_settings, events[150:])
        before = lookups("duplicate"), lookups("new")
        await fold_everything(kafka_settings, store, everything_maybe=True)
        assert await hires_counted(store) == HIRES
        # Copies in later batches were answered by the recent identities; new events the filter
        # could not rule out were looked up and found new.
        assert lookups("new") - before[1] >= HIRES - 100 and lookups("duplicate") == before[0]

        # A restart: a fresh filter, filled from the store, and every event sent once more.
        async with make_producer(kafka_settings, "dedupe-test") as producer:
            await publish_many(producer, kafka_settings, events)
        before_restart = lookups("duplicate")
        await fold_everything(kafka_settings, store, everything_maybe=False)
        assert await hires_counted(store) == HIRES
        assert lookups("duplicate") - before_restart == HIRES  # each copy found among the stored identities
        # (a fresh rollup remembers no recent identities: the filter sent each to the store)
    finally:
        await client.close()
