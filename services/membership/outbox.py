"""The outbox relay: publishes committed changes' events to Kafka exactly once.

At least once is easy (publish, then mark sent; a crash in between publishes again). Exactly
once on the topic needs one more step: before publishing a batch the relay notes where each
affected partition ended. A relay that finds records with such a note (its predecessor died
between publishing and marking) first reads those partitions from the noted offsets and marks
every record it finds there as sent; only the rest are published again. One relay runs at a
time (a lease in MongoDB), so nothing else writes these records in between.
"""

import asyncio
import logging
import os
import signal
import uuid
from datetime import timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Gauge

from services.membership.store import MembershipStore
from shared.kafka import client_options
from shared.observability import RETRIES, count_retries_of
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

PUBLISHED = Counter("backbone_membership_outbox_published_total", "Outbox records published to Kafka")
RECOVERED = Counter("backbone_membership_outbox_recovered_total",
                    "Outbox records found already on Kafka after a relay crash, not published again")
PENDING = Gauge("backbone_membership_outbox_pending", "Outbox records not yet on Kafka (at the last look)")
count_retries_of("outbox", "infrastructure")

LEASE = "outbox-relay"


class OutboxRelay:
    def __init__(self, store: MembershipStore, broker: KafkaBroker, kafka: KafkaSettings, *, batch: int = 500,
                 poll_seconds: float = 1.0, fault_point: str | None = None):
        self.store, self.broker, self.kafka = store, broker, kafka
        self.batch, self.poll_seconds = batch, poll_seconds
        self.fault_point = fault_point  # tests only: where to SIGKILL this process
        self.owner = uuid.uuid4().hex
        self.wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        store.on_commit = self.wake.set

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.store.release_lease(LEASE, self.owner)

    async def _run(self) -> None:
        while True:
            try:
                # Renewed before every batch: a live relay keeps a short lease through any backlog.
                if await self.store.hold_lease(LEASE, self.owner):
                    while await self.relay_once() and await self.store.hold_lease(LEASE, self.owner):
                        pass
                    await self.store.prune_sent(timedelta(days=7))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database away: try again on the next round
                log.warning("outbox relay round failed", extra={"error": type(exc).__name__})
                RETRIES.labels("outbox", "infrastructure").inc()
            try:
                await asyncio.wait_for(self.wake.wait(), self.poll_seconds)
            except TimeoutError:
                pass
            self.wake.clear()

    async def relay_once(self) -> bool:
        """Publish one batch; True if there may be more."""
        records = await self.store.unsent(self.batch)
        PENDING.set(len(records))
        if not records:
            return False
        interrupted = [r for r in records if r["attempt"]]
        if interrupted:
            found = await self._already_published(interrupted)
            await self.store.mark_sent(sorted(found))
            RECOVERED.inc(len(found))
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
            PUBLISHED.inc(len(ids))
        return True

    def _fault(self, point: str) -> None:
        if self.fault_point == point:
            log.warning("fault injection: killing this process", extra={"point": point})
            os.kill(os.getpid(), signal.SIGKILL)

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(**client_options(self.kafka), enable_auto_commit=False,
                                group_id=None, client_id="backbone-membership-outbox")

    async def _end_offsets(self, topics: set[str]) -> dict[str, dict[int, int]]:
        consumer = self._consumer()
        await consumer.start()
        try:
            partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            if not partitions:
                await consumer.topics()  # metadata not loaded yet
                partitions = [
                    TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
                ]
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
            ends = await consumer.end_offsets(list(start))
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
