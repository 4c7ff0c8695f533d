"""How far the events service's view of membership is behind: records on backbone.membership not
yet stored in its read model (the consumer group's committed offsets against the topic's end),
summed over partitions. Clients read it to tell whether a held event waits for a roster change
that is already on its way."""

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Gauge

from shared.catalog import MEMBERSHIP
from shared.kafka import client_options
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

MEMBERSHIP_LAG = Gauge("backbone_events_membership_lag",
                       "Records on backbone.membership not yet in the events service's read model")


class MembershipLag:
    def __init__(self, settings: KafkaSettings, group: str, every_seconds: float = 5.0):
        self.settings = settings
        self.group = group
        self.every_seconds = every_seconds
        self.records: int | None = None  # None until measured
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="events-membership-lag")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        admin = AIOKafkaAdminClient(**client_options(self.settings), client_id="backbone-events-lag")
        ends = AIOKafkaConsumer(**client_options(self.settings), client_id="backbone-events-lag", group_id=None,
                                enable_auto_commit=False)
        topic = self.settings.topic(MEMBERSHIP.name)
        partitions = [TopicPartition(topic, p) for p in range(MEMBERSHIP.partitions)]
        try:
            await admin.start()
            await ends.start()
            while True:
                try:
                    self.records = await self._measure(admin, ends, partitions)
                    MEMBERSHIP_LAG.set(self.records)
                except Exception as exc:  # noqa: BLE001 - Kafka away: the last figure stays, measured again later
                    log.warning("membership lag not measured: %s", type(exc).__name__)
                await asyncio.sleep(self.every_seconds)
        finally:
            await ends.stop()
            await admin.close()

    async def _measure(self, admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer,
                       partitions: list[TopicPartition]) -> int:
        committed = await admin.list_consumer_group_offsets(self.group, partitions=partitions)
        end, start = await ends.end_offsets(partitions), await ends.beginning_offsets(partitions)
        positions = {tp: max(start[tp], meta.offset if (meta := committed.get(tp)) and meta.offset >= 0 else 0)
                     for tp in partitions}
        return sum(max(0, end[tp] - positions[tp]) for tp in partitions)
