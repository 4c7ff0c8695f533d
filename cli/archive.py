"""`backbone backup` / `backbone restore`: one tar archive of an installation's whole state.

The archive holds every database collection (BSON, read through the MongoDB protocol) and every
topic's records (read through the Kafka protocol, partition by partition, key, value, headers and
timestamp kept). The database is dumped before the topics, so every effect in the dump comes from a
record in the archive. Consumer groups' positions are not kept: after a restore those consumers
read the topics from the start, and the effects already in the database are skipped by their event
ids (idempotent by design), so the KPIs come out as before.

The metrics rollup keeps its offsets in the database instead (services/metrics/store.py). A
restore renumbers them: the restored broker numbers each partition's records 0, 1, 2, ... while
the archived log may have holes (Tansu, killed between numbering a batch and writing it, leaves
one; Kafka's transaction markers take offsets too), and an offset kept from before would then skip
as many new records. Each record's offset is archived with it; archives written before that
(format 1) have their stored offsets dropped, so the rollup reads from the start.
"""

import asyncio
import bisect
import contextlib
import io
import json
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import bson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import MongoClient

from cli.stack import Endpoints, LocalStack

SYSTEM_DATABASES = {"admin", "local", "config"}
FORMAT = 2  # 2: each record's offset archived with it
QUIET_SECONDS = 5.0


class ArchiveError(RuntimeError):
    pass


def backup(stack: LocalStack, path: Path) -> dict[str, int]:
    """Archive a running installation (or start its servers for the time of the backup)."""
    started = stack.running() is None
    endpoints = stack.up().endpoints
    try:
        with tarfile.open(path, "w:gz") as tar:
            documents = _dump_database(endpoints, tar)
            records, partitions = asyncio.run(_dump_topics(endpoints, tar))
            _add(tar, "manifest.json", json.dumps({"format": FORMAT, "partitions": partitions}).encode())
    finally:
        if started:
            stack.down()
    return {"documents": documents, "records": records}


def restore(stack: LocalStack, path: Path) -> dict[str, int]:
    """Load an archive into an empty, stopped installation; `backbone run` then continues from it."""
    if stack.running():
        raise ArchiveError("stop the installation first: restore loads into an empty installation")
    if stack.data_dir and any((stack.data_dir / part).exists() and any((stack.data_dir / part).iterdir())
                              for part in ("mongo", "kafka")):
        raise ArchiveError(f"{stack.data_dir} is not empty: restore into a new --data-dir (or delete it)")
    endpoints = stack.up().endpoints
    try:
        with tarfile.open(path, "r:gz") as tar:
            manifest = json.loads(_read(tar, "manifest.json"))
            documents = _load_database(endpoints, tar)
            records, renumbered = asyncio.run(_load_topics(endpoints, tar, manifest["partitions"]))
            _renumber_stored_offsets(endpoints, renumbered)
    finally:
        stack.down()
    return {"documents": documents, "records": records}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    _add_file(tar, name, io.BytesIO(data), len(data))


def _add_file(tar: tarfile.TarFile, name: str, content: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = size, int(time.time())
    tar.addfile(info, content)


def _read(tar: tarfile.TarFile, member: str | tarfile.TarInfo) -> bytes:
    content = tar.extractfile(member)
    if content is None:  # a directory or link where a file belongs: not an archive we wrote
        raise ArchiveError(f"{member if isinstance(member, str) else member.name} is not a file in the archive")
    return content.read()


def _members(tar: tarfile.TarFile, prefix: str):
    for member in tar.getmembers():
        if member.name.startswith(prefix) and member.name.endswith(".bson"):
            yield member.name[len(prefix):-len(".bson")], bson.decode_all(_read(tar, member))


def _dump_database(endpoints: Endpoints, tar: tarfile.TarFile) -> int:
    count = 0
    with MongoClient[dict](endpoints.mongo_uri) as client:
        for db_name in client.list_database_names():
            if db_name in SYSTEM_DATABASES:
                continue
            db = client[db_name]
            for collection in db.list_collection_names():
                docs = list(db[collection].find())
                _add(tar, f"mongo/{db_name}/{collection}.bson", b"".join(bson.encode(d) for d in docs))
                count += len(docs)
    return count


def _load_database(endpoints: Endpoints, tar: tarfile.TarFile) -> int:
    count = 0
    with MongoClient[dict](endpoints.mongo_uri) as client:
        for name, docs in _members(tar, "mongo/"):
            db_name, collection = name.split("/", 1)
            if docs:
                client[db_name][collection].insert_many(docs, ordered=True)
            count += len(docs)
    return count


async def _dump_topics(endpoints: Endpoints, tar: tarfile.TarFile) -> tuple[int, dict[str, int]]:
    started_ms = int(time.time() * 1000)  # after the database's dump: every record its effects come from is older
    # From offset 0, or where a broker's retention left the log's start.
    consumer = AIOKafkaConsumer(bootstrap_servers=endpoints.bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        # Every topic's partitions before any is assigned: from then on the consumer's metadata
        # follows only the topics assigned to it, and knows no partitions of the others.
        topics = sorted(t for t in await consumer.topics() if not t.startswith("__"))
        partitions = {topic: sorted(consumer.partitions_for_topic(topic) or ()) for topic in topics}
        if unknown := [topic for topic, numbers in partitions.items() if not numbers]:
            raise ArchiveError(f"the broker named no partitions of {', '.join(unknown)}: nothing written")
        with contextlib.ExitStack() as files:
            spooled = {topic: files.enter_context(tempfile.TemporaryFile()) for topic in topics}
            count = await _read_to_end(consumer, [TopicPartition(t, p) for t, numbers in partitions.items()
                                                  for p in numbers], started_ms, spooled)
            for topic, file in spooled.items():
                size = file.tell()
                file.seek(0)
                _add_file(tar, f"kafka/{topic}.bson", file, size)
    finally:
        await consumer.stop()
    return count, {topic: len(numbers) for topic, numbers in partitions.items()}


async def _read_to_end(consumer: AIOKafkaConsumer, assigned: list[TopicPartition], before_ms: int,
                       files: Mapping[str, IO[bytes]]) -> int:
    """Every record of these partitions from before `before_ms` (later ones belong to the next
    backup), written to its topic's file; how many. A partition is read to the high watermark of
    the broker's fetch responses: Tansu answers end-offset requests wrongly on its S3 storage (1
    for partitions of thousands of records; 807 for one of 1,083). Where records stop short of it
    (a hole at the log's end, left by a broker killed between numbering a batch and writing it),
    reading ends once nothing has come for QUIET_SECONDS."""
    consumer.assign(assigned)
    for tp in assigned:
        consumer.seek(tp, 0)
    reading, count, last_read = set(assigned), 0, time.monotonic()
    while reading:
        batches = await consumer.getmany(*reading, timeout_ms=1000)
        if batches:
            last_read = time.monotonic()
        elif time.monotonic() - last_read > QUIET_SECONDS:
            break
        for tp, messages in batches.items():
            for m in messages:
                if m.timestamp > before_ms:
                    reading.discard(tp)
                    break
                files[tp.topic].write(bson.encode({"partition": tp.partition, "offset": m.offset, "key": m.key,
                                                   "value": m.value, "timestamp": m.timestamp,
                                                   "headers": [[k, v] for k, v in m.headers]}))
                count += 1
        for tp in list(reading):
            highwater = consumer.highwater(tp)  # None until a fetch response for it
            if highwater is not None and await consumer.position(tp) >= highwater:
                reading.discard(tp)
    return count


class Renumbering:
    """A partition's archived offsets and the offsets the restored broker gave the same records."""

    def __init__(self) -> None:
        self.archived: list[int] = []
        self.restored: list[int] = []

    def add(self, archived: int, restored: int) -> None:
        if not isinstance(archived, int) or archived < 0:
            raise ArchiveError(f"not an offset in the archive: {archived!r}")
        if self.archived and archived <= self.archived[-1]:
            raise ArchiveError(f"offsets out of order in the archive: {archived} after {self.archived[-1]}")
        self.archived.append(archived)
        self.restored.append(restored)

    def position(self, archived: int) -> int:
        """The restored offset of the next record to read, for one that was `archived`: that of
        the first record from there on (in a hole, the first after it), else the restored end."""
        at = bisect.bisect_left(self.archived, archived)
        if at < len(self.archived):
            return self.restored[at]
        return self.restored[-1] + 1 if self.restored else 0


async def _load_topics(endpoints: Endpoints, tar: tarfile.TarFile,
                       partitions: dict[str, int]) -> tuple[int, dict[TopicPartition, Renumbering | None]]:
    """Every archived record produced again into its partition; how many, and per partition its
    records' archived and new offsets (None: the archive has no offsets)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.bootstrap_servers)
    await admin.start()
    try:
        # An archive written before backups read every topic's partitions lists its topics but the
        # first with none (and none of their records): those are left to the services to create.
        await admin.create_topics([NewTopic(t, n, 1) for t, n in partitions.items() if n])
    finally:
        await admin.close()
    # acks=all and no idempotence: Tansu has no InitProducerId; restore runs once into an empty broker.
    producer = AIOKafkaProducer(bootstrap_servers=endpoints.bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    count, renumbered = 0, dict[TopicPartition, Renumbering | None]()
    try:
        for topic, records in _members(tar, "kafka/"):
            sent = []
            for r in records:
                sent.append(await producer.send(topic, r["value"], key=r["key"], partition=r["partition"],
                                                timestamp_ms=r["timestamp"],
                                                headers=[(k, v) for k, v in r["headers"]]))
            await producer.flush()
            for r, future in zip(records, sent, strict=True):
                tp = TopicPartition(topic, r["partition"])
                if "offset" not in r:
                    renumbered[tp] = None
                elif (renumbering := renumbered.setdefault(tp, Renumbering())) is not None:
                    renumbering.add(r["offset"], future.result().offset)
            count += len(records)
    finally:
        await producer.stop()
    return count, renumbered


def _renumber_stored_offsets(endpoints: Endpoints, renumbered: dict[TopicPartition, Renumbering | None]) -> None:
    """The offsets the metrics rollup keeps (every version of its store) moved to the restored
    records': dropped where the archive has no offsets (it reads those partitions from the start,
    skipping what it applied by event identity)."""
    from services.metrics.store import OFFSETS, partition_key  # the one service keeping offsets in its database

    by_key = {partition_key(tp): renumbering for tp, renumbering in renumbered.items()}
    with MongoClient[dict](endpoints.mongo_uri) as client:
        for db_name in client.list_database_names():
            if db_name in SYSTEM_DATABASES:
                continue
            for name in client[db_name].list_collection_names():
                if not OFFSETS.fullmatch(name):
                    continue
                offsets = client[db_name][name]
                for doc in offsets.find():
                    renumbering = by_key.get(doc["_id"], Renumbering())
                    if renumbering is None:
                        offsets.delete_one({"_id": doc["_id"]})
                    else:
                        offsets.update_one({"_id": doc["_id"]}, {"$set": {"next": renumbering.position(doc["next"])}})
