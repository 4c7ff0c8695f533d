"""The outbox relay: publishes committed changes' events to Kafka exactly once, for any service
that writes its events into an outbox in the same transaction as its changes (membership does).

At least once is easy (publish, then mark sent; a crash in between publishes again). Exactly
once on the topic needs one more step: before publishing a batch the relay notes where each
affected partition ended. A relay that finds records with such a note (its predecessor died
between publishing and marking) first reads those partitions from the noted offsets and marks
every record it finds there as sent; only the rest are published again. One relay runs at a
time (a lease in MongoDB), so nothing else writes these records in between.

The service's store keeps the records (`OutboxStore`: in order, each `{_id: event id, type, topic,
key, value, attempt}`) and the lease; the service names the relay's counters (`OutboxMetrics`).
A Worker runs `round` (shared/worker.py), woken by the store's commits.
"""

import asyncio
import logging
import os
import signal
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Gauge

from shared.kafka import client_options, log_ends
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

LEASE = "outbox-relay"
KEPT = timedelta(days=7)  # sent records are pruned after this


class OutboxStore(Protocol):
    async def unsent(self, limit: int) -> list[dict]: ...
    async def mark_attempt(self, ids: list[str], offsets: dict[str, dict[int, int]]) -> None: ...
    async def mark_sent(self, ids: list[str]) -> None: ...
    async def prune_sent(self, older_than: timedelta) -> None: ...
    async def hold_lease(self, name: str, owner: str) -> bool: ...
    async def release_lease(self, name: str, owner: str) -> None: ...


@dataclass(frozen=True)
class OutboxMetrics:
    published: Counter
    recovered: Counter
    pending: Gauge


class OutboxRelay:
    def __init__(self, store: OutboxStore, broker: KafkaBroker, kafka: KafkaSettings, metrics: OutboxMetrics, *,
                 client_id: str, batch: int = 500, fault_point: str | None = None):
        self.store, self.broker, self.kafka, self.metrics = store, broker, kafka, metrics
        self.client_id, self.batch = client_id, batch
        self.fault_point = fault_point  # tests only: where to SIGKILL this process
        self.owner = uuid.uuid4().hex

    async def round(self) -> None:
        """One round (a Worker's step): while holding the lease, relay batches until none is left.
        The lease is renewed before every batch, so a live relay keeps a short lease through any backlog."""
        if await self.store.hold_lease(LEASE, self.owner):
            while await self.relay_once() and await self.store.hold_lease(LEASE, self.owner):
                pass
            await self.store.prune_sent(KEPT)

    async def release(self) -> None:
        await self.store.release_lease(LEASE, self.owner)

    async def relay_once(self) -> bool:
        """Publish one batch; True if there may be more."""
        records = await self.store.unsent(self.batch)
        self.metrics.pending.set(len(records))
        if not records:
            return False
        interrupted = [r for r in records if r["attempt"]]
        if interrupted:
            found = await self._already_published(interrupted)
            await self.store.mark_sent(sorted(found))
            self.metrics.recovered.inc(len(found))
            records = [r for r in records if r["_id"] not in found]
        if records:
            ids = [r["_id"] for r in records]
            await self.store.mark_attempt(ids, await self._end_offsets({r["topic"] for r in records}))
            self._fault("before_publish")
            pending = [await self.broker.publish(r["value"], r["topic"], key=r["key"],
                                                 headers={"ce_type": r["type"], "ce_id": r["_id"],
                                                          "content-type": "application/cloudevents+json"},
                                                 no_confirm=True) for r in records]
            await asyncio.gather(*pending)  # acks=all for every record
            self._fault("after_publish")
            await self.store.mark_sent(ids)
            self.metrics.published.inc(len(ids))
        return True

    def _fault(self, point: str) -> None:
        if self.fault_point == point:
            log.warning("fault injection: killing this process", extra={"point": point})
            os.kill(os.getpid(), signal.SIGKILL)

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(**client_options(self.kafka), enable_auto_commit=False,
                                group_id=None, client_id=self.client_id)

    async def _end_offsets(self, topics: set[str]) -> dict[str, dict[int, int]]:
        consumer = self._consumer()
        await consumer.start()
        try:
            partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            if not partitions:
                await consumer.topics()  # metadata not loaded yet
                partitions = [TopicPartition(t, p) for t in topics
                              for p in sorted(consumer.partitions_for_topic(t) or ())]
            # Where recovery starts reading: Tansu's short answer (shared.kafka.log_ends) is still at
            # or before the end, so it only reads a little more, and no relay round waits on a fetch.
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        offsets: dict[str, dict[int, int]] = {}
        for tp, end in ends.items():
            offsets.setdefault(tp.topic, {})[tp.partition] = end
        return offsets

    async def _already_published(self, records: list[dict]) -> set[str]:
        """Ids of these records found on their topics from the offsets noted before publishing."""
        wanted = {r["_id"] for r in records}
        start: dict[TopicPartition, int] = {}
        for r in records:
            for topic, parts in r["attempt"].items():
                for partition, offset in parts.items():
                    tp = TopicPartition(topic, int(partition))
                    start[tp] = min(start.get(tp, offset), offset)
        consumer = self._consumer()
        await consumer.start()
        found: set[str] = set()
        try:
            consumer.assign(list(start))
            ends = await log_ends(self.kafka, list(start), self.client_id)
            for tp, offset in start.items():
                consumer.seek(tp, offset)
            remaining = {tp for tp in start if ends[tp] > start[tp]}
            deadline = asyncio.get_running_loop().time() + 60
            while remaining:
                if asyncio.get_running_loop().time() > deadline:  # publish nothing rather than guess
                    raise TimeoutError("outbox recovery could not read the topic tail")
                batches = await consumer.getmany(*remaining, timeout_ms=1000)
                for tp, messages in batches.items():
                    for message in messages:
                        ce_id = dict(message.headers).get("ce_id", b"").decode()
                        if ce_id in wanted:
                            found.add(ce_id)
                    if messages and messages[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()
        log.info("outbox recovery after an interrupted relay",
                 extra={"interrupted": len(records), "already_published": len(found)})
        return found
