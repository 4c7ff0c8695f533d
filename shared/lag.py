"""Consumer lag of every consumer group a service runs: records on its topics not yet consumed
(the group's committed offsets against the topics' ends), summed over partitions.

Exported as `backbone_consumer_lag{group,topic}` with bounded labels: the group without the
namespace, the topic's catalogue name, and every partner's `backbone.inbound.<key_id>` under one
value, `backbone.inbound.*`. /readyz reports the total per group. Measured by a Worker's step
(shared/service.py runs it for every service), so a broker away only leaves the last figures.
"""

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Gauge

from shared.catalog import Topic
from shared.kafka import client_options, log_ends
from shared.settings import KafkaSettings

CONSUMER_LAG = Gauge("backbone_consumer_lag",
                     "Records on a consumer group's topics not yet consumed, summed over partitions",
                     ["group", "topic"])
KEY = "{key_id}"  # the placeholder of per-partner topic names in the catalogue


class ConsumerLag:
    def __init__(self, settings: KafkaSettings, client_id: str):
        self.settings = settings
        self.client_id = client_id
        self.groups: dict[str, tuple[Topic, ...]] = {}  # group (no namespace) -> catalogue topics
        self.records: dict[str, int] = {}  # group -> records behind, at the last measure
        self._admin: AIOKafkaAdminClient | None = None
        self._ends: AIOKafkaConsumer | None = None

    def follow(self, group_id: str, topics: Iterable[Topic]) -> None:
        """Measure the consumer group `group_id` (as `KafkaSettings.group` names it) on these topics."""
        self.groups[group_id.removeprefix(self.settings.namespace)] = tuple(topics)

    def behind(self) -> dict[str, int | None]:
        """Records each followed group is behind at the last measure (None before the first)."""
        return {group: self.records.get(group) for group in self.groups}

    def of(self, group_id: str) -> int | None:
        """Records `group_id` is behind at the last measure; None before the first."""
        return self.records.get(group_id.removeprefix(self.settings.namespace))

    async def step(self) -> None:
        admin, ends = await self._clients()
        existing = await ends.topics()
        measured = {(group, topic.name): [TopicPartition(t, p) for t in self._names(topic.name, existing)
                                          for p in range(topic.partitions)]
                    for group, topics in self.groups.items() for topic in topics}
        # Each partition's end and start once a step, however many groups read it.
        every = sorted({tp for partitions in measured.values() for tp in partitions})
        end = await log_ends(self.settings, every, self.client_id)
        start = await ends.beginning_offsets(every) if every else {}
        totals = dict.fromkeys(self.groups, 0)
        for (group, name), partitions in measured.items():
            behind = await self._behind(admin, group, partitions, end, start)
            CONSUMER_LAG.labels(group, name.replace(KEY, "*")).set(behind)
            totals[group] += behind
        self.records.update(totals)

    async def close(self) -> None:
        if self._ends:
            await self._ends.stop()
        if self._admin:
            await self._admin.close()
        self._admin = self._ends = None

    def _names(self, name: str, existing: set[str]) -> list[str]:
        if KEY in name:  # every partner's topic
            prefix = self.settings.topic(name.replace(KEY, ""))
            return sorted(t for t in existing if t.startswith(prefix))
        return [t for t in [self.settings.topic(name)] if t in existing]

    async def _behind(self, admin: AIOKafkaAdminClient, group: str, partitions: list[TopicPartition],
                      end: dict[TopicPartition, int], start: dict[TopicPartition, int]) -> int:
        if not partitions:
            return 0
        committed = await admin.list_consumer_group_offsets(self.settings.namespace + group, partitions=partitions)
        # Nothing committed yet: the group reads from the beginning (auto_offset_reset="earliest").
        positions = {tp: max(start[tp], meta.offset if (meta := committed.get(tp)) and meta.offset >= 0 else 0)
                     for tp in partitions}
        return sum(max(0, end[tp] - positions[tp]) for tp in partitions)

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**client_options(self.settings), client_id=self.client_id)
            await admin.start()
            self._admin = admin
        if self._ends is None:
            ends = AIOKafkaConsumer(**client_options(self.settings), client_id=self.client_id, group_id=None,
                                    enable_auto_commit=False)
            await ends.start()
            self._ends = ends
        return self._admin, self._ends
