"""The KPI store in MongoDB.

Versioned: each version has its own collections: `facts_v<N>` (mergeable facts per partnership
and month, roster or directory entry, in pieces merged when read: COMPACT_AT below),
`offsets_v<N>` (the next Kafka offset to apply, per topic-partition), `seen_v<N>` (the identities
of the events applied, per topic-partition) and `stamps_v<N>` (per partnership, and "" for the
directory, a stamp that every batch changing its facts renews in the same transaction, and one per
month of its dated facts: readers
keep what they computed from facts while the stamps of what it read are unchanged,
services/metrics/cache.py). The control document in `kpi_store` names the version readers use
(`current`) and the one a rebuild is writing (`building`), so a rebuild fills a new version while
the service keeps the old one up to date, and switches over in one write.

Exactly once: a batch's facts, its event ids and the offsets it moves to are written in ONE
transaction that first checks (compare-and-set) that the stored offsets are still those the batch
started from and that its version is still the one for its role. A consumer that lost its
partitions in a rebalance, or was frozen while another took over, fails that check and writes
nothing. Kafka's own committed offsets are only a hint for tools; the stored ones are the truth.
"""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from aiokafka import TopicPartition
from bson import Binary
from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.metrics import dedupe
from services.metrics.domain import DATED_SOURCES, ROSTER, Cells, DocKey, Facts, doc_id
from services.metrics.kpis import Milestone
from shared.mongo import IN_SLICE, create_collections

CONTROL_ID = "store"
# A key's facts are stored as pieces, one per batch that changes them, merged when read: a batch
# writes what it folded and reads nothing back, whatever the history. Every COMPACT_AT-th piece of
# a key merges them into one, so reads merge a bounded number of pieces.
COMPACT_AT = 16
# A merged piece this large is sealed: never merged again, so no document nears the database's
# per-document limit (16 MiB) and compaction reads a bounded amount, however long a key's history
# (a partnership's roster holds all its activities). Headroom: COMPACT_AT batch pieces merge onto it.
SEAL_BYTES = 4 * 1024 * 1024
MAX_PIECE_COUNTS = 200_000
MERGE_BATCH = 64  # stored pieces a read holds at a time while merging them
# one thread merges for every read: its allocations stay in one malloc arena (memory peaks lower)
_MERGING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-merge")
READS_AT_ONCE = 4  # queries of one read in flight at a time: each holds a batch of stored pieces
LAST_MONTH = "9999-12"  # dated facts are by month (YYYY-MM); a roster's bucket sorts after it


class Stamp(NamedTuple):
    """What the stored batches last changed of a partnership's facts (cache.py)."""

    facts: str  # renewed by every batch changing any of its facts
    roster: str | None  # ... its roster; None: unchanged since the store had stamps
    months: Mapping[str, str] = MappingProxyType({})  # month -> renewed by every batch changing its dated facts


def partition_key(tp: TopicPartition) -> str:
    """How stored offsets and identities name their topic-partition."""
    return f"{tp.topic}/{tp.partition}"


# The collections of stored offsets (`offsets_v<N>`: {_id: partition_key, next}), which a restore
# renumbers to the offsets the restored topics give their records (cli/archive.py).
OFFSETS = re.compile(r"offsets_v\d+")


class Fenced(Exception):
    """The stored offsets or the store version moved on under this consumer: it must re-read them."""


@dataclass
class Batch:
    """A batch folded in memory, ready to be stored in one transaction."""

    cells: Cells = field(default_factory=Cells)
    # per partition: (stored next offset the batch starts from, or None if none yet; next offset after it)
    moves: dict[TopicPartition, tuple[int | None, int]] = field(default_factory=dict)
    seen: dict[TopicPartition, list[bytes]] = field(default_factory=dict)  # digests of the identities it applies


class MetricsStore:
    def __init__(self, db: AsyncDatabase, seal_bytes: int = SEAL_BYTES):
        self.db = db
        self.seal_bytes = seal_bytes
        # (version, key) -> pieces of the key stored since its last compaction by this process; a
        # key not counted here is compacted at its next write
        self.pieces: dict[tuple[int, DocKey], int] = {}
        self.client = db.client
        self.control = db["kpi_store"]
        self.milestones = db["milestones"]  # reached milestones, across versions: each is announced once

    def _facts(self, version: int):
        return self.db[f"facts_v{version}"]

    def _offsets(self, version: int):
        return self.db[f"offsets_v{version}"]

    def _seen(self, version: int):
        return self.db[f"seen_v{version}"]

    def _stamps(self, version: int):
        return self.db[f"stamps_v{version}"]

    def _collections(self, version: int) -> tuple:
        return self._facts(version), self._offsets(version), self._seen(version), self._stamps(version)

    async def _create_collections(self, version: int) -> None:
        await create_collections(self.db, [c.name for c in self._collections(version)])
        await self._facts(version).create_index([("p", 1), ("b", 1)])
        await self._facts(version).create_index([("s", 1), ("b", 1)])
        await self._facts(version).create_index("k")
        await self._seen(version).create_index("tp")

    async def setup(self) -> None:
        try:
            await self.control.insert_one({"_id": CONTROL_ID, "current": 1, "building": None})
        except DuplicateKeyError:
            pass  # an earlier start, or another instance, made it
        await self._create_collections(await self.version())

    async def _control(self) -> dict:
        control = await self.control.find_one({"_id": CONTROL_ID})
        if control is None:
            raise RuntimeError("the metrics store is not set up: no control document")
        return control

    async def version(self) -> int:
        """The version readers use and the service writes."""
        return (await self._control())["current"]

    # --- the consumer's progress ---------------------------------------------------------------

    async def positions(self, version: int, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        by_id = {partition_key(tp): tp for tp in tps}
        docs = await self._offsets(version).find({"_id": {"$in": list(by_id)}}).to_list()
        return {by_id[d["_id"]]: d["next"] for d in docs}

    async def seen(self, version: int, tp: TopicPartition) -> AsyncIterator[bytes]:
        """The digests of the identities applied on a partition, concatenated, a stored batch at a time."""
        async for doc in self._seen(version).find({"tp": partition_key(tp)}, {"ids": 1}):
            yield bytes(doc["ids"])

    async def stored_among(self, version: int, tp: TopicPartition, digests: set[bytes]) -> set[bytes]:
        """Those of `digests` applied on the partition already (a read of all its identities:
        the rollup asks only for what its filter cannot rule out)."""
        found: set[bytes] = set()
        async for packed in self.seen(version, tp):
            found |= dedupe.among(packed, digests)
        return found

    async def apply(self, version: int, role: str, batch: Batch) -> None:
        """Store a batch exactly once, or raise Fenced and store nothing."""
        facts, offsets, seen = self._facts(version), self._offsets(version), self._seen(version)
        stamp = uuid.uuid4().hex
        compacted = {key for key in batch.cells if self.pieces.get((version, key), COMPACT_AT) >= COMPACT_AT}

        async def write(session) -> None:
            control = await self.control.find_one({"_id": CONTROL_ID}, session=session)
            if control is None or control[role] != version:
                raise Fenced(f"store version {version} is no longer {role}")
            moves = [
                InsertOne({"_id": partition_key(tp), "next": after}) if before is None
                else UpdateOne({"_id": partition_key(tp), "next": before}, {"$set": {"next": after}})
                for tp, (before, after) in batch.moves.items()
            ]
            try:
                result = await offsets.bulk_write(moves, session=session)
            except BulkWriteError as exc:  # someone stored this partition's first batch meanwhile
                raise Fenced("offsets moved") from exc
            if result.matched_count != sum(before is not None for before, _ in batch.moves.values()):
                raise Fenced("offsets moved")
            if batch.cells:
                await self._add_facts(facts, batch.cells, compacted, stamp, session)
                await self._stamps(version).bulk_write(_renewals(batch.cells, stamp), ordered=False,
                                                       session=session)
            # Named by the server, not by offset: a restore renumbers offsets (cli/archive.py), so
            # a batch after it may end at an offset one before it ended at.
            new_ids = [{"tp": partition_key(tp), "ids": Binary(b"".join(digests))}
                       for tp, digests in batch.seen.items() if digests]
            if new_ids:
                await seen.insert_many(new_ids, session=session)

        async with self.client.start_session() as session:
            await session.with_transaction(write)
        for key in batch.cells:  # only once stored: a retried transaction writes the same plan again
            self.pieces[(version, key)] = 1 if key in compacted else self.pieces.get((version, key), 0) + 1
        if len(self.pieces) > MAX_PIECE_COUNTS:
            self.pieces.clear()  # forgotten counts only mean an earlier compaction

    async def _add_facts(self, facts, cells: Cells, compacted: set[DocKey], stamp: str, session) -> None:
        """A batch's facts as pieces of their own, except where a key has pieces enough: there they
        are merged, with every stored piece of the key not sealed, into one."""
        merged = {key: Facts().merge(cells[key]) for key in compacted}  # copies: a retried transaction comes back
        keys = [doc_id(key) for key in compacted]
        for first in range(0, len(keys), IN_SLICE):  # SecantusDB answers long $in lists in quadratic time
            where = {"k": {"$in": keys[first:first + IN_SLICE]}, "sealed": {"$ne": True}}
            async for d in facts.find(where, {"s": 1, "p": 1, "b": 1, "counts": 1, "packed": 1}, session=session):
                _merge_piece(merged, d)
            await facts.delete_many(where, session=session)
        documents = [_document(key, merged.get(key, piece), stamp) for key, piece in cells.items()]
        for document in documents:
            if len(document["packed"]) >= self.seal_bytes:
                document["sealed"] = True
        await facts.insert_many(documents, ordered=False, session=session)

    # --- rebuilds --------------------------------------------------------------------------

    async def start_rebuild(self) -> int:
        """The version a rebuild writes: the one an interrupted rebuild left, or a new one."""
        control = await self._control()
        if control["building"] is not None:
            return control["building"]
        version = control["current"] + 1
        for collection in self._collections(version):
            await collection.drop()  # leftovers of a rebuild of that number that was abandoned
        await self._create_collections(version)
        await self.control.update_one({"_id": CONTROL_ID, "building": None}, {"$set": {"building": version}})
        return version

    async def finish_rebuild(self, version: int) -> int:
        """Make the rebuilt version current; drop the versions before the one it replaces."""
        result = await self.control.update_one({"_id": CONTROL_ID, "building": version},
                                               {"$set": {"current": version, "building": None}})
        if result.matched_count != 1:
            raise Fenced(f"version {version} is no longer being built")
        for older in range(1, version - 1):
            for collection in self._collections(older):
                await collection.drop()
        return version - 1

    # --- reading -----------------------------------------------------------------------------

    async def rosters(self, version: int, known: Iterable[str] = ()) -> dict[str, Facts]:
        """Every partnership's roster but those `known` already."""
        merged = await _merged(self._facts(version).find({"s": "membership", "b": ROSTER, "p": {"$nin": list(known)}}))
        return {partnership_id: facts for (_, partnership_id, _), facts in merged.items()}

    async def directory(self, version: int) -> list[Facts]:
        """The directory of organisations, regions and sectors."""
        return [Facts.unpack(d["counts"], d["packed"])
                async for d in self._facts(version).find({"s": "membership", "b": {"$ne": ROSTER}})]

    async def stamps(self, version: int) -> dict[str, Stamp]:
        """partnership id ("" for the directory) -> its stamps (facts, roster)."""
        return {d["_id"]: Stamp(d["g"], d.get("r"), d.get("m", {})) async for d in self._stamps(version).find()}

    async def dated(
        self, version: int, partnership_ids: list[str] | None, first_month: str, months: list[str] | None = None
    ) -> list[tuple[str, str, Facts]]:
        """(partnership, month, facts) of the dated facts from `first_month` on (of these `months`
        only, if given); all partnerships if None. One query per partnership (per source for all
        of them), each an equality and a range or list of months: the local server (SecantusDB)
        answers those from an index, but scans the whole collection for a query with lists on
        several fields (1.3 s for a partnership's month at 13k stored pieces, against 5 ms)."""
        buckets: dict = ({"$gte": first_month, "$lte": LAST_MONTH} if months is None
                         else {"$in": [m for m in months if m >= first_month]})
        where = ([{"s": source, "b": buckets} for source in DATED_SOURCES] if partnership_ids is None
                 else [{"p": partnership_id, "b": buckets} for partnership_id in partnership_ids])
        facts, gate = self._facts(version), asyncio.Semaphore(READS_AT_ONCE)

        async def read(query: dict) -> dict[DocKey, Facts]:
            async with gate:
                return await _merged(facts.find(query))

        merged: dict[DocKey, Facts] = {}
        for found in await asyncio.gather(*(read(query) for query in where)):
            merged |= found  # no key is in two: each query is of one partnership or one source
        return [(partnership_id, month, facts) for (source, partnership_id, month), facts in merged.items()
                if source in DATED_SOURCES]  # a partnership's roster is not dated

    async def months_with_facts(self, version: int) -> set[tuple[str, str]]:
        return {(d["p"], d["b"]) for source in DATED_SOURCES  # one source a query: see `dated`
                async for d in self._facts(version).find({"s": source}, {"p": 1, "b": 1})}

    # --- milestones ------------------------------------------------------------------------

    async def announced(self, keys: list[str]) -> set[str]:
        return {d["_id"] for d in await self.milestones.find({"_id": {"$in": keys}}, {"_id": 1}).to_list()}

    async def record_milestones(self, reached: list[Milestone]) -> None:
        try:
            await self.milestones.insert_many(
                [{"_id": m.key, "partnership_id": m.partnership_id, "kpi": m.kpi, "period": m.period,
                  "threshold": m.threshold, "reason": m.reason} for m in reached], ordered=False)
        except BulkWriteError as exc:  # another instance recorded some first: theirs are as good
            if any(e["code"] != 11000 for e in exc.details["writeErrors"]):
                raise


def _merge_piece(found: dict[DocKey, Facts], d: dict) -> None:
    """A stored piece merged into what is found of its key."""
    facts = Facts.unpack(d["counts"], d["packed"])
    key = (d["s"], d["p"], d["b"])
    if key in found:
        found[key].merge(facts)
    else:
        found[key] = facts


async def _merged(pieces: AsyncCursor) -> dict[DocKey, Facts]:
    """Stored pieces merged per key, a batch at a time in the merge thread: the merge is CPU work
    kept off the event loop, and only one batch of stored pieces is held besides what is merged."""
    found: dict[DocKey, Facts] = {}
    while batch := await pieces.to_list(MERGE_BATCH):
        await asyncio.get_running_loop().run_in_executor(_MERGING, _merge_pieces, found, batch)
    return found


def _merge_pieces(found: dict[DocKey, Facts], batch: list[dict]) -> None:
    for d in batch:
        _merge_piece(found, d)


def _renewals(cells: Cells, stamp: str) -> list[UpdateOne]:
    """New stamps for the partnerships (and the directory) whose facts a batch changes; the roster
    stamp too where their roster changes, and the month's where their dated facts of a month do."""
    renewed: dict[str, dict[str, str]] = {}
    for source, partnership_id, bucket in cells:
        renewed.setdefault(partnership_id, {"g": stamp})
        if bucket == ROSTER:
            renewed[partnership_id]["r"] = stamp
        elif source in DATED_SOURCES:
            renewed[partnership_id][f"m.{bucket}"] = stamp
    return [UpdateOne({"_id": pid}, {"$set": fields}, upsert=True) for pid, fields in renewed.items()]


def _document(key: DocKey, facts: Facts, stamp: str) -> dict:
    source, partnership_id, bucket = key
    return {"_id": f"{doc_id(key)}@{stamp}", "k": doc_id(key), "s": source, "p": partnership_id, "b": bucket,
            "counts": dict(facts.counts), "packed": Binary(facts.pack())}
