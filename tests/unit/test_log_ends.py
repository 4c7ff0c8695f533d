"""shared.kafka.log_ends without a broker: the end is the fetch's high watermark, not the
end-offset answer, and a broker that never answers a fetch is an error, not a wait for ever."""

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from shared import kafka
from shared.settings import KafkaSettings

PARTITIONS = [TopicPartition("t", 0), TopicPartition("t", 1)]


class Consumer:
    """Answers end-offset requests with `floor`; its fetches bring each partition's high
    watermark (`ends`) after `answers_after` of them, or never (None)."""

    made: list["Consumer"] = []

    def __init__(self, floor: int, ends: dict[TopicPartition, int], answers_after: int | None):
        self.floor, self.ends, self.answers_after = floor, ends, answers_after
        self.fetches, self.positions, self.stopped = 0, {}, False
        Consumer.made.append(self)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def end_offsets(self, partitions):
        return {tp: self.floor for tp in partitions}

    def assign(self, partitions) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    def seek(self, tp, offset) -> None:
        self.positions[tp] = offset

    def highwater(self, tp):
        answered = self.answers_after is not None and self.fetches >= self.answers_after
        return self.ends[tp] if answered else None

    async def getmany(self, *partitions, timeout_ms: int):
        self.fetches += 1
        await asyncio.sleep(timeout_ms / 1000)
        return {}


def consumers(monkeypatch, **behaviour) -> None:
    Consumer.made.clear()
    monkeypatch.setattr(kafka, "AIOKafkaConsumer", lambda **options: Consumer(**behaviour))


async def test_the_end_is_the_fetched_high_watermark_not_the_reported_end_offset(monkeypatch):
    consumers(monkeypatch, floor=1, ends={PARTITIONS[0]: 500, PARTITIONS[1]: 1}, answers_after=2)
    assert await kafka.log_ends(KafkaSettings(), PARTITIONS) == {PARTITIONS[0]: 500, PARTITIONS[1]: 1}
    (consumer,) = Consumer.made
    assert consumer.positions == dict.fromkeys(PARTITIONS, 1)  # fetched from the floor, not from 0
    assert consumer.stopped


async def test_fetches_that_never_answer_raise_after_the_request_timeout(monkeypatch):
    consumers(monkeypatch, floor=0, ends={}, answers_after=None)
    with pytest.raises(KafkaTimeoutError, match="no fetch answered"):
        await kafka.log_ends(KafkaSettings(request_timeout_ms=300), PARTITIONS)
    assert Consumer.made[0].stopped


async def test_no_partitions_asks_nothing(monkeypatch):
    consumers(monkeypatch, floor=0, ends={}, answers_after=0)
    assert await kafka.log_ends(KafkaSettings(), []) == {}
    assert Consumer.made == []
