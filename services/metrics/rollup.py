"""Consuming the domain topics into the KPI store: the metrics service's event subscriber.

A raw aiokafka consumer (FastStream handles one message at a time; this needs whole batches and
control over offsets) reads the membership, activities, outcomes and demand topics in batches.
Each batch is parsed, deduplicated by event identity (source and id) and folded into facts in
memory (a chunk of records at a time), then stored with its offsets in one MongoDB transaction
(services/metrics/store.py). On assignment the consumer seeks to the offsets stored with the
facts, never to Kafka's committed ones, which it writes only afterwards as a hint for tools.

Duplicates: a resent event has the same source, id and payload, so the same partition key: its
copies always arrive on the same topic-partition. Each partition's applied identities are kept
(as digests) with the facts; in memory, a Bloom filter of a fixed size (services/metrics/dedupe.py)
rules out most of them at once, and what it cannot rule out is looked up among the stored ones.
Memory does not grow with history. Two sources' equal ids are two events.
"""

import asyncio
import gc
import logging
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from bson.errors import InvalidDocument
from prometheus_client import Counter, Gauge, Histogram
from pymongo.errors import BulkWriteError, PyMongoError, WriteError

from services.metrics import domain
from services.metrics.dedupe import RecentIdentities, digest
from services.metrics.domain import Cells
from services.metrics.store import Batch, Fenced, MetricsStore
from shared.bloom import BloomFilter
from shared.catalog import ACTIVITIES, DEMAND, MEMBERSHIP, OUTCOMES, Topic
from shared.consumer import EVENTS_CONSUMED, count_consumed_from
from shared.envelope import EventError, parse_plain
from shared.kafka import client_options
from shared.observability import RETRIES, count_retries_of
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

SOURCES: tuple[Topic, ...] = (MEMBERSHIP, ACTIVITIES, OUTCOMES, DEMAND)
# Records parsed and folded between turns of the event loop (~3 ms here): the batch being stored
# goes on meanwhile, and so do the service's HTTP requests (a batch of 20,000 takes ~0.5 s).
FOLD_CHUNK = 256

BATCH_EVENTS = Histogram("backbone_metrics_batch_events", "Records per batch stored in one transaction",
                         buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000))
BATCH_SECONDS = Histogram("backbone_metrics_batch_seconds", "Time to fold and store one batch",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
# Besides every service's backbone_consumer_lag (from the group's committed offsets, which the rollup
# writes only as hints after storing): what the KPIs do not include yet, from the offsets stored with them.
CONSUMER_LAG = Gauge("backbone_metrics_consumer_lag", "Records on a partition not yet stored in the KPI store",
                     ["topic", "partition"])
STORE_VERSION = Gauge("backbone_metrics_store_version", "The KPI store version this process writes")
CONFIRMATIONS = Counter("backbone_metrics_dedupe_lookups_total",
                        "Identities the seen filter could not rule out, looked up in the KPI store, by answer "
                        "(new ones were the filter's false alarms: many mean METRICS_DEDUPE_FILTER_MIB is too small)",
                        ["answer"])
for _answer in ("duplicate", "new"):
    CONFIRMATIONS.labels(_answer)
FENCED_BATCHES = Counter("backbone_metrics_fenced_batches_total",
                         "Batches not stored because another consumer or a rebuild moved the store on")

DeadLetter = Callable[[ConsumerRecord, str, str], Awaitable[None]]
# A record of a batch as read: its parsed event and identity digest, or why it cannot be parsed (and b"").
Parsed = tuple[ConsumerRecord, dict | EventError, bytes]


class _Failed(Exception):
    """Recording one event raised: a bug, to dead-letter so that the partition goes on."""

    def __init__(self, position: tuple[TopicPartition, int], detail: str):
        self.position = position
        self.detail = detail


class Rollup:
    """Folds batches of records into one version of the KPI store, exactly once.

    `role` is "current" for the service (which follows the store to a rebuilt version when it is
    switched over) or "building" for a rebuild."""

    def __init__(self, consumer: AIOKafkaConsumer, store: MetricsStore, kafka: KafkaSettings, *, role: str,
                 version: int, dead_letter: DeadLetter | None = None,
                 on_stored: Callable[[Cells], None] | None = None, seen_filter_mib: int = 64):
        self.consumer = consumer
        self.store = store
        self.kafka = kafka
        self.role = role
        self.version = version
        self.dead_letter = dead_letter
        self.on_stored = on_stored
        self.lock = asyncio.Lock()  # a rebalance waits for the batch in progress
        self.assigned: set[TopicPartition] = set()
        # Stored next offset of each partition (None: nothing stored yet); kept after a revocation,
        # so a partition that comes back at the same offset needs no reload of its identities.
        self.positions: dict[TopicPartition, int | None] = {}
        # Every identity applied on the partitions this rollup has held (and, after a resync, what it
        # held before): an identity it says were never applied was not, the others are looked up.
        self.seen = BloomFilter(seen_filter_mib)
        self.recent = RecentIdentities()  # of what this rollup stored itself: exact, bounded
        self.refused = 0  # records no one can accept (parse errors, failing recorders)
        self.stopping = False
        # The batch being stored while the next is parsed and folded, and its task.
        self._being_stored: Batch | None = None
        self._storing: asyncio.Task[None] | None = None
        # A batch was not stored (fenced, or failed) after later records were fetched: resync first.
        self.stale = False

    async def resume(self, tps: set[TopicPartition]) -> None:
        """Take over partitions where the store says they stand."""
        stored = await _retrying(lambda: self.store.positions(self.version, tps), self)
        for tp in tps:
            position = stored.get(tp)
            if self.positions.get(tp, -1) != position:
                await _retrying(partial(self._remember_stored, tp), self)
            self.positions[tp] = position
            if position is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, position)
        self.assigned |= set(tps)

    async def _remember_stored(self, tp: TopicPartition) -> None:
        async for packed in self.store.seen(self.version, tp):
            self.seen.add(packed)

    async def resync(self) -> None:
        """After a batch not stored: re-read the store's version, offsets and ids, seek there."""
        await self.quiesce()
        if self.role == "current":
            self.version = await _retrying(self.store.version, self)
            STORE_VERSION.set(self.version)
        self.positions.clear()  # the filter keeps what it holds: it may only say "maybe" more often
        self.recent.clear()  # the store's version may have changed
        await self.resume(set(self.assigned))
        self.stale = False

    async def process(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Fold a batch and store it: returns once it is stored (or found fenced)."""
        await self.take(records)
        async with self.lock:
            await self.settle()

    async def take(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Fold a batch and start storing it, returning while it is stored, so that the next batch
        is fetched, parsed and folded meanwhile: the database works on its own. The next batch is
        folded as if the one being stored were (its identities applied, its offsets reached), and
        stored only once it is; if it turns out fenced or failed, the next is dropped with the
        records fetched after it, and the rollup resyncs (seeks back to the stored offsets)."""
        started = time.perf_counter()
        try:
            await self._take(records, started)
        except BaseException:
            self.stale = True  # these records are fetched, and not stored
            raise

    async def _take(self, records: dict[TopicPartition, list[ConsumerRecord]], started: float) -> None:
        with _collector_paused():
            async with self.lock:
                if self.stale:
                    await self.resync()
                    return
                ahead = self._being_stored
                starts = {tp: ahead.moves[tp][1] if ahead and tp in ahead.moves else self.positions[tp]
                          for tp in records if tp in self.assigned}  # revoked while fetched: dropped
                unstored = _unstored(records, starts)
                ahead_seen = ahead.seen if ahead else {}
                failed: dict[tuple[TopicPartition, int], str] = {}
                while True:
                    try:
                        batch, outcomes, refused = await self._fold(unstored, starts, ahead_seen, failed)
                        break
                    except _Failed as exc:
                        log.exception("recording an event failed; dead-lettering it",
                                      extra={"offset": exc.position[1]})
                        failed[exc.position] = exc.detail
                await self.settle()
                if self.stale:  # folded against a batch that was not stored
                    await self.resync()
                    return
                if not batch.moves:
                    return
                # Dead letters go out before the batch is stored, so its offsets never pass a record
                # that is nowhere; a fenced batch's are sent again by the new owner (at least once).
                for record, reason, detail in refused:
                    if self.dead_letter is None:
                        log.warning("refused record skipped", extra={"reason": reason, "topic": record.topic,
                                                                     "partition": record.partition,
                                                                     "offset": record.offset})
                    else:
                        await _retrying(partial(self.dead_letter, record, reason, detail), self)
                fetched = sum(len(rows) for rows in records.values())
                self._being_stored = batch
                self._storing = asyncio.create_task(self._store(batch, outcomes, len(refused), fetched, started))

    async def settle(self) -> None:
        """Wait until the batch being stored is stored, or not: fenced (then `stale`) or failed
        (then `stale` too, and its error re-raised). Call it holding `lock`."""
        storing, self._storing, self._being_stored = self._storing, None, None
        if storing is not None:
            await storing

    async def quiesce(self) -> None:
        """`settle`, a failure only logged: the next batch resyncs (`stale`)."""
        try:
            await self.settle()
        except Exception:  # noqa: BLE001 - the store task's own failure, already counted by _retrying
            log.warning("the batch being stored was not stored; resyncing before the next", exc_info=True)

    async def _store(self, batch: Batch, outcomes: Tally, refused: int, fetched: int, started: float) -> None:
        try:
            await _retrying(lambda: self.store.apply(self.version, self.role, batch), self)
        except Fenced as exc:
            FENCED_BATCHES.inc()
            log.warning("batch discarded: %s; re-reading stored offsets", exc)
            self.stale = True
            return
        except BaseException:
            self.stale = True
            raise
        for tp, (_, after) in batch.moves.items():
            self.positions[tp] = after
            self.recent.add(batch.seen[tp])
        self.seen.add(b"".join(key for keys in batch.seen.values() for key in keys))  # numpy's cost is per call
        self.refused += refused
        for (topic, outcome), n in outcomes.items():
            EVENTS_CONSUMED.labels(topic, outcome).inc(n)
        BATCH_EVENTS.observe(fetched)
        BATCH_SECONDS.observe(time.perf_counter() - started)
        if self.on_stored:
            self.on_stored(batch.cells)
        if self.role == "current":
            try:  # only a hint for tools: the stored offsets are the truth
                await self.consumer.commit({tp: after for tp, (_, after) in batch.moves.items()})
            except KafkaError as exc:
                log.info("offset hint not committed: %s", type(exc).__name__)

    async def _parsed(self, records: list[ConsumerRecord]) -> list[Parsed]:
        """Each record parsed, with its identity's digest (turning the event loop every FOLD_CHUNK)."""
        parsed: list[Parsed] = []
        for count, r in enumerate(records, 1):
            try:
                event = parse_plain(r.value)
            except EventError as exc:
                parsed.append((r, exc, b""))
            else:
                parsed.append((r, event, digest(event["source"], event["id"])))
            if count % FOLD_CHUNK == 0:
                await asyncio.sleep(0)
        return parsed

    def _known(self, rows: list[Parsed]) -> tuple[set[bytes], set[bytes]]:
        """Of the identities of `rows`: those known applied (this rollup stored them recently), and
        those that may have been and must be looked up (the filter cannot rule them out)."""
        keys = [key for _, _, key in rows if key]
        maybe = {key for key, flagged in zip(keys, self.seen.maybe_seen(keys), strict=True) if flagged}
        recent = {key for key in maybe if key in self.recent}
        return recent, maybe - recent

    async def _looked_up(self, tp: TopicPartition, unsure: set[bytes]) -> set[bytes]:
        applied = await self.store.stored_among(self.version, tp, unsure)
        CONFIRMATIONS.labels("duplicate").inc(len(applied))
        CONFIRMATIONS.labels("new").inc(len(unsure) - len(applied))
        return applied

    async def _chunks(self, tp: TopicPartition,
                      rows: list[ConsumerRecord]) -> AsyncIterator[tuple[list[Parsed], set[bytes]]]:
        """A partition's records a chunk (FOLD_CHUNK) at a time, parsed, with those of their identities
        stored as applied. A chunk holding an identity to look up takes the rest of the partition
        along, so that a partition costs one lookup a batch at most."""
        start = 0
        while start < len(rows):
            end = start + FOLD_CHUNK
            chunk = await self._parsed(rows[start:end])
            applied, unsure = self._known(chunk)
            if unsure and end < len(rows):
                chunk += (rest := await self._parsed(rows[end:]))
                end = len(rows)
                applied_rest, unsure_rest = self._known(rest)
                applied |= applied_rest
                unsure |= unsure_rest
            if unsure:
                applied |= await _retrying(partial(self._looked_up, tp, unsure), self)
            yield chunk, applied
            start = end

    async def _fold(self, records: dict[TopicPartition, list[ConsumerRecord]],
                    starts: dict[TopicPartition, int | None], ahead_seen: dict[TopicPartition, list[bytes]],
                    failed: dict) -> tuple[Batch, Tally, list]:
        """Each partition's records a chunk at a time (`_chunks`): parsed, told apart from those
        applied already (stored, or in `ahead_seen`: being stored), folded and dropped. Not the whole
        batch parsed first: 20,000 events alive until folded made parsing a third dearer (fresh
        memory for every event, bench/README.md)."""
        batch, outcomes, refused = Batch(), Tally[tuple[str, str]](), []
        for tp, rows in records.items():
            if not rows:
                continue
            topic = tp.topic.removeprefix(self.kafka.namespace)
            fresh: list[bytes] = []
            done = set(ahead_seen.get(tp, ()))  # grows with the batch's own: a copy inside it is a duplicate too
            failed_here = {offset: detail for (failed_tp, offset), detail in failed.items() if failed_tp == tp}
            ignored = 0
            async for chunk, applied in self._chunks(tp, rows):
                done |= applied
                for r, event, key in chunk:
                    if failed_here and r.offset in failed_here:
                        refused.append((r, "handler_error", failed_here[r.offset]))
                        outcomes[(topic, "dead_lettered")] += 1
                        continue
                    if isinstance(event, EventError):
                        refused.append((r, event.reason, str(event)))
                        outcomes[(topic, "dead_lettered")] += 1
                        continue
                    if key in done:
                        outcomes[(topic, "duplicate")] += 1
                        continue
                    try:
                        used = domain.record(event, batch.cells)
                    except Exception as exc:
                        raise _Failed((tp, r.offset), f"{type(exc).__name__}: {exc}") from exc
                    if used:
                        fresh.append(key)
                        done.add(key)
                    else:
                        ignored += 1
            outcomes[(topic, "processed")] += len(fresh)
            outcomes[(topic, "ignored")] += ignored
            batch.moves[tp] = (starts[tp], rows[-1].offset + 1)
            batch.seen[tp] = fresh
        return batch, outcomes, refused

    def lag(self) -> dict[TopicPartition, int]:
        lags = {}
        for tp in self.assigned:
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                lags[tp] = max(0, highwater - (self.positions.get(tp) or 0))
        return lags


_pauses = 0  # batches parsing and folding now (a rebuild's and the service's may share a process)
_collector_was_enabled = True


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a batch is parsed and folded. Its facts grow
    until it is stored: collections meanwhile would find them (and a chunk's parsed events) alive
    again and again, and each full one scans everything else the process holds as well (in
    bench/rollup.py a fifth to a quarter of the rollup's time, when whole batches were parsed
    first). Parsed events hold no reference cycles, so reference counting frees them once folded;
    cycles made elsewhere meanwhile wait for the next collection."""
    global _pauses, _collector_was_enabled
    if _pauses == 0:
        _collector_was_enabled = gc.isenabled()
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0 and _collector_was_enabled:
            gc.enable()


def _unstored(records: dict[TopicPartition, list[ConsumerRecord]],
              starts: dict[TopicPartition, int | None]) -> dict[TopicPartition, list[ConsumerRecord]]:
    """The records of each partition in `starts` from its start on (those before were stored
    already: fetched before a seek back)."""
    return {tp: rows if (start := starts[tp]) is None else [r for r in rows if r.offset >= start]
            for tp, rows in records.items() if tp in starts}


async def _retrying(call: Callable[[], Awaitable], rollup: Rollup):
    """Wait out an unavailable database or broker: nothing moves on until the call succeeds.

    A write the database refuses (a document too large, a validation failure) is waited out too:
    skipping it would lose the batch's events. It is logged as an error and counted apart
    (cause "refused", alert BackboneStoreRefusesWrites): it needs an operator, not patience."""
    delay = 0.2
    while True:
        try:
            return await call()
        except (PyMongoError, KafkaError, OSError, InvalidDocument) as exc:
            if rollup.stopping:
                raise
            cause = _cause(exc)
            if cause == "refused":
                log.error("the KPI store refuses a write, retrying: %s", _refusal(exc))
            else:
                log.warning("infrastructure unavailable, retrying: %s", type(exc).__name__)
            RETRIES.labels("metrics_rollup", cause).inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _cause(exc: Exception) -> str:
    """"refused" for documents the database (or the driver, for their size) will not take: a
    retry alone does not change that, unlike a server away or a transaction conflict."""
    if isinstance(exc, InvalidDocument):
        return "refused"
    if isinstance(exc, (WriteError, BulkWriteError)) and not exc.has_error_label("TransientTransactionError"):
        return "refused"
    return "infrastructure"


def _refusal(exc: Exception) -> str:
    """What the database said, without the documents (they may name people)."""
    if isinstance(exc, (WriteError, BulkWriteError)):
        codes = sorted({e.get("code") for e in (exc.details or {}).get("writeErrors", [])} - {None}) or [exc.code]
        return f"{type(exc).__name__} codes {codes}"
    return type(exc).__name__


class Rebalance(ConsumerRebalanceListener):
    """Waits for the batch in progress before giving partitions up; resumes new ones from the store."""

    def __init__(self, rollup: Rollup):
        self.rollup = rollup

    async def on_partitions_revoked(self, revoked) -> None:
        async with self.rollup.lock:
            await self.rollup.quiesce()
            self.rollup.assigned.difference_update(revoked)
        for tp in revoked:
            CONSUMER_LAG.remove(tp.topic.removeprefix(self.rollup.kafka.namespace), str(tp.partition))

    async def on_partitions_assigned(self, assigned) -> None:
        async with self.rollup.lock:
            await self.rollup.quiesce()
            await self.rollup.resume(set(assigned))
        log.info("partitions assigned", extra={"partitions": len(assigned)})


class MetricsConsumer:
    """The service's consumer: group `<namespace>backbone-metrics`, batches of up to
    `max_batch_events` records, stored into the current version of the KPI store."""

    def __init__(self, store: MetricsStore, kafka: KafkaSettings, *, max_batch_events: int, poll_timeout_ms: int,
                 dead_letter: DeadLetter, on_stored: Callable[[Cells], None] | None = None,
                 seen_filter_mib: int = 64):
        self.store = store
        self.seen_filter_mib = seen_filter_mib
        self.kafka = kafka
        self.max_batch_events = max_batch_events
        self.poll_timeout_ms = poll_timeout_ms
        self.dead_letter = dead_letter
        self.on_stored = on_stored
        self.rollup: Rollup | None = None
        self._joined = False

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(  # aiokafka clients belong to the running event loop
            **client_options(self.kafka),
            group_id=self.kafka.group("metrics"),
            client_id="backbone-metrics",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.kafka.session_timeout_ms,
            heartbeat_interval_ms=self.kafka.heartbeat_interval_ms,
            request_timeout_ms=self.kafka.request_timeout_ms,
        )
        self.rollup = Rollup(consumer, self.store, self.kafka, role="current", version=await self.store.version(),
                             dead_letter=self.dead_letter, on_stored=self.on_stored,
                             seen_filter_mib=self.seen_filter_mib)
        STORE_VERSION.set(self.rollup.version)
        topics = [self.kafka.topic(t.name) for t in SOURCES]
        count_consumed_from(self.kafka, topics)
        count_retries_of("metrics_rollup", "infrastructure", "refused")
        consumer.subscribe(topics, listener=Rebalance(self.rollup))

    async def poll(self) -> float:
        """One batch (the rollup Worker's step), stored while the next step fetches, parses and folds
        the next. A failed batch stored nothing: a later step fetches it again from the stored offsets."""
        assert self.rollup is not None, "start() first"
        if not self._joined:  # here, not in start(): joining the group can wait for a rebalance
            await self.rollup.consumer.start()
            self._joined = True
        try:
            records = await self.rollup.consumer.getmany(timeout_ms=self.poll_timeout_ms,
                                                         max_records=self.max_batch_events)
            await self.rollup.take(records)
        except Exception:
            self.rollup.stale = True  # the next step starts from the stored offsets
            raise
        for tp, lag in self.rollup.lag().items():
            CONSUMER_LAG.labels(tp.topic.removeprefix(self.kafka.namespace), str(tp.partition)).set(lag)
        return 0  # getmany waits for records itself

    async def stop(self) -> None:
        """Leave the group (after the rollup Worker has stopped, its batch finished or cancelled),
        once the batch being stored is stored (or, stopping, has failed once)."""
        if self.rollup is not None:
            self.rollup.stopping = True
            async with self.rollup.lock:
                await self.rollup.quiesce()
            await self.rollup.consumer.stop()
