"""`backbone backup` and `backbone restore` on real servers: the offsets the metrics rollup keeps in
the database follow the records to the offsets the restored broker gives them, holes in the
archived log included (a restored broker numbers records without holes)."""

import asyncio
import io
import json
import tarfile

import bson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import MongoClient

from cli.archive import backup, restore
from cli.stack import LocalStack

pytestmark = pytest.mark.integration

TOPIC = "backbone.outcomes"
PARTITION = TopicPartition(TOPIC, 0)
KEY = f"{TOPIC}/0"  # how the rollup's stored offsets name the partition


async def create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
    finally:
        await admin.close()


async def produce_batches(bootstrap: str, batches: list[list[bytes]]) -> None:
    """Each list one record batch of the partition (one object in Tansu's storage)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for values in batches:
            batch = producer.create_batch()
            for value in values:
                batch.append(key=None, value=value, timestamp=None)
            batch.close()
            await (await producer.send_batch(batch, TOPIC, partition=0))
    finally:
        await producer.stop()


async def records(bootstrap: str) -> list[tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([PARTITION])
        consumer.seek(PARTITION, 0)
        read: list[tuple[int, bytes]] = []
        while batches := await consumer.getmany(PARTITION, timeout_ms=2000):
            read += [(m.offset, m.value) for m in batches[PARTITION]]
        return read
    finally:
        await consumer.stop()


def stored_offsets(mongo_uri: str) -> dict[str, int]:
    """The partition's next offset to apply in each version of the KPI store."""
    with MongoClient[dict](mongo_uri) as client:
        db = client.backbone_metrics
        return {name: db[name].find_one({"_id": KEY})["next"] for name in ("offsets_v1", "offsets_v2")}


async def records_of(stack: LocalStack) -> list[tuple[int, bytes]]:
    state = stack.up()
    try:
        return await records(state.endpoints.bootstrap_servers)
    finally:
        stack.down()


async def test_a_restore_moves_the_rollups_stored_offsets_past_a_hole_in_the_archived_log(tmp_path):
    first = LocalStack(tmp_path / "first-stack", data_dir=tmp_path / "first")
    state = first.up()
    try:
        await create_topic(state.endpoints.bootstrap_servers)
        await produce_batches(state.endpoints.bootstrap_servers, [[b"a0", b"a1", b"a2"], [b"b0", b"b1"],
                                                                  [b"c0", b"c1", b"c2"], [b"d0"]])
        with MongoClient[dict](state.endpoints.mongo_uri) as client:
            client.backbone_metrics.offsets_v1.insert_one({"_id": KEY, "next": 9})  # all applied
            client.backbone_metrics.offsets_v2.insert_one({"_id": KEY, "next": 4})  # a rebuild, inside a hole
    finally:
        first.down()
    # What Tansu leaves when it is killed between numbering a batch and writing it: offsets taken,
    # their records nowhere. One hole inside the log (3-4), one at its end (8).
    for offset in (3, 8):
        next((tmp_path / "first" / "kafka").rglob(f"partitions/0000000000/records/{offset:020}.batch*")).unlink()
    assert [value for _, value in await records_of(first)] == [b"a0", b"a1", b"a2", b"c0", b"c1", b"c2"]

    await asyncio.to_thread(backup, first, tmp_path / "backup.tar.gz")  # each runs its own event loop
    second = LocalStack(tmp_path / "second-stack", data_dir=tmp_path / "second")
    await asyncio.to_thread(restore, second, tmp_path / "backup.tar.gz")

    state = second.up()
    try:
        restored = await records(state.endpoints.bootstrap_servers)
        assert restored == list(enumerate([b"a0", b"a1", b"a2", b"c0", b"c1", b"c2"]))
        # Everything applied: the next record is the first new one, not two records past it.
        assert stored_offsets(state.endpoints.mongo_uri) == {"offsets_v1": 6, "offsets_v2": 3}
        await produce_batches(state.endpoints.bootstrap_servers, [[b"e0"]])
        assert (await records(state.endpoints.bootstrap_servers))[-1] == (6, b"e0")
    finally:
        second.down()


def test_an_archive_without_offsets_has_the_stored_offsets_dropped(tmp_path):
    """Archives written before records kept their offsets (format 1): the rollup reads those
    partitions from the start, skipping by event identity what it applied."""
    path = tmp_path / "old.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, content in {
            "mongo/backbone_metrics/offsets_v1.bson": bson.encode({"_id": KEY, "next": 8}),
            f"kafka/{TOPIC}.bson": b"".join(bson.encode({"partition": 0, "key": None, "value": f"r{i}".encode(),
                                                         "timestamp": 1_700_000_000_000, "headers": []})
                                            for i in range(3)),
            "manifest.json": json.dumps({"format": 1, "partitions": {TOPIC: 1}}).encode(),
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    stack = LocalStack(tmp_path / "stack", data_dir=tmp_path / "data")
    restore(stack, path)
    state = stack.up()
    try:
        with MongoClient[dict](state.endpoints.mongo_uri) as client:
            assert client.backbone_metrics.offsets_v1.find_one({"_id": KEY}) is None
    finally:
        stack.down()
