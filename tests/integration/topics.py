"""Reading a topic back in tests: every record up to its end, again until a condition holds."""

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.catalog import Topic
from shared.kafka import log_ends

FETCH_BYTES = 64 * 1024 * 1024  # poison and oversized probes are larger than the client's default


async def read_topic(kafka_settings, topic: Topic, until=lambda records: True, timeout: float = 20.0,
                     settle: float = 0.0) -> list:
    """Every record of `topic` up to its end, read again until `until(records)` holds (for what
    arrives asynchronously). After an HTTP 2xx the events are in Kafka, so reading to the end
    (shared.kafka.log_ends) sees every copy: a duplicate cannot hide in a later poll. With `settle`, the topic is
    read once more that many seconds after the condition held, so late extra copies show."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_settings.bootstrap_servers, enable_auto_commit=False,
                                fetch_max_bytes=FETCH_BYTES, max_partition_fetch_bytes=FETCH_BYTES)
    await consumer.start()
    partitions = [TopicPartition(kafka_settings.topic(topic.name), p) for p in range(topic.partitions)]
    consumer.assign(partitions)

    async def everything() -> list:
        await consumer.seek_to_beginning(*partitions)
        end = await log_ends(kafka_settings, partitions)
        records: list = []
        while any([await consumer.position(p) < end[p] for p in partitions]):
            for batch in (await consumer.getmany(*partitions, timeout_ms=300)).values():
                records.extend(batch)
        return records

    try:
        async with asyncio.timeout(timeout):
            while not until(records := await everything()):
                await asyncio.sleep(0.2)
        if settle:
            await asyncio.sleep(settle)
            records = await everything()
        return records
    finally:
        await consumer.stop()


def header(record, name: str) -> str | None:
    value = dict(record.headers).get(name)
    return value.decode() if value is not None else None


def headers(record) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}
