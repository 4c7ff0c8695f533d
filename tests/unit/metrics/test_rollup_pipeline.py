"""The rollup stores a batch while it fetches, parses and folds the next, and stores the next only
once that one is stored: duplicates across the two count once, a fenced batch takes the records
fetched after it along (the resync seeks back), a rebalance waits for the batch being stored, a
batch is folded a chunk at a time, and a record whose recording fails is dead-lettered alone.
Over an in-memory KPI store that keeps what MetricsStore.apply keeps (offsets compared and moved,
identities applied) and can hold a batch until the test lets it through."""

import asyncio
import gc

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from pymongo.errors import AutoReconnect

from services.metrics import rollup as rollup_module
from services.metrics.dedupe import among
from services.metrics.rollup import FENCED_BATCHES, FOLD_CHUNK, Rebalance, Rollup
from services.metrics.store import Batch, Fenced
from shared.contracts import outcomes as out
from shared.envelope import new_event
from shared.settings import KafkaSettings
from tests.examples import example

TP = TopicPartition("backbone.outcomes", 0)


def hires(first: int, count: int) -> list[bytes]:
    return [new_event(example(out.HireRecorded, hire_id=f"h-{i}", person_id=f"p-{i}"), source="/ats").to_json()
            for i in range(first, first + count)]


def records(values: list[bytes], first_offset: int) -> dict[TopicPartition, list[ConsumerRecord]]:
    return {TP: [ConsumerRecord(TP.topic, TP.partition, first_offset + i, 0, 0, None, value, None, len(value), 0, [])
                 for i, value in enumerate(values)]}


class KpiStore:
    """What the rollup asks of MetricsStore, in memory. `gate`, when set, holds every apply until
    it is open; `fence` makes the next apply fail as another owner's move would, `failure` raises
    once."""

    def __init__(self):
        self.next: dict[TopicPartition, int] = {}
        self.ids: dict[TopicPartition, list[bytes]] = {}
        self.stored: list[Batch] = []
        self.gate: asyncio.Event | None = None
        self.fence = False
        self.failure: Exception | None = None
        self.on_apply = lambda: None

    async def version(self) -> int:
        return 1

    async def positions(self, version, tps):
        return {tp: self.next[tp] for tp in tps if tp in self.next}

    async def seen(self, version, tp):
        for packed in self.ids.get(tp, []):
            yield packed

    async def stored_among(self, version, tp, digests):
        return among(b"".join(self.ids.get(tp, [])), digests)

    async def apply(self, version, role, batch: Batch) -> None:
        for _ in range(3):  # round trips of a transaction: the loop turns meanwhile
            await asyncio.sleep(0)
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        if self.fence or any(self.next.get(tp) != before for tp, (before, _) in batch.moves.items()):
            self.fence = False
            raise Fenced("offsets moved")
        for tp, (_, after) in batch.moves.items():
            self.next[tp] = after
            self.ids.setdefault(tp, []).append(b"".join(batch.seen[tp]))
        self.stored.append(batch)
        self.on_apply()


class Consumer:
    def __init__(self):
        self.sought: list[tuple[TopicPartition, int | None]] = []

    def seek(self, tp, offset) -> None:
        self.sought.append((tp, offset))

    async def seek_to_beginning(self, tp) -> None:
        self.sought.append((tp, None))

    async def commit(self, offsets) -> None:
        return None


@pytest.fixture
async def kpi_store() -> KpiStore:
    return KpiStore()


@pytest.fixture
async def rollup(kpi_store) -> Rollup:
    rollup = Rollup(Consumer(), kpi_store, KafkaSettings(), role="current", version=1, seen_filter_mib=1)  # type: ignore[arg-type]
    await rollup.resume({TP})
    return rollup


def applied(store: KpiStore) -> int:
    return sum(len(batch.seen[TP]) for batch in store.stored)


async def test_a_batch_is_stored_while_the_next_is_parsed(rollup, kpi_store, monkeypatch):
    parsed = 0
    parse_plain = rollup_module.parse_plain

    def counting(raw):
        nonlocal parsed
        parsed += 1
        return parse_plain(raw)

    monkeypatch.setattr(rollup_module, "parse_plain", counting)
    parsed_when_stored: list[int] = []
    kpi_store.on_apply = lambda: parsed_when_stored.append(parsed)
    first, second = hires(0, 300), hires(300, 20 * FOLD_CHUNK)

    await rollup.take(records(first, 0))
    assert kpi_store.stored == []  # being stored: take returned before
    await rollup.take(records(second, len(first)))
    async with rollup.lock:
        await rollup.settle()

    # The first batch was stored while the second was still being parsed, not after.
    assert len(first) < parsed_when_stored[0] < len(first) + len(second)
    assert applied(kpi_store) == len(first) + len(second)
    assert rollup.positions[TP] == len(first) + len(second)


async def test_the_next_batch_is_stored_after_the_one_before_and_a_copy_across_them_counts_once(
        rollup, kpi_store):
    kpi_store.gate = asyncio.Event()
    first = hires(0, 10)
    await rollup.take(records(first, 0))
    second = asyncio.create_task(rollup.take(records([first[3], *hires(10, 5)], len(first))))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not second.done() and kpi_store.stored == []  # folded, waiting for the first to be stored

    kpi_store.gate.set()
    await second
    async with rollup.lock:
        await rollup.settle()
    assert [len(batch.seen[TP]) for batch in kpi_store.stored] == [10, 5]  # the copy of first[3] is not applied
    assert rollup.positions[TP] == 16


async def test_records_fetched_after_a_fenced_batch_are_dropped_and_the_rollup_seeks_back(rollup, kpi_store):
    fenced_before = FENCED_BATCHES._value.get()
    kpi_store.fence = True
    await rollup.take(records(hires(0, 10), 0))
    await rollup.take(records(hires(10, 10), 10))  # fetched after it: folded against offsets never stored

    assert FENCED_BATCHES._value.get() - fenced_before == 1
    assert kpi_store.stored == [] and not rollup.stale
    assert rollup.consumer.sought[-1] == (TP, None)  # back to where the store says: nothing stored yet
    await rollup.process(records(hires(0, 20), 0))  # fetched again from there
    assert applied(kpi_store) == 20 and rollup.positions[TP] == 20


async def test_a_rebalance_waits_for_the_batch_being_stored(rollup, kpi_store):
    kpi_store.gate = asyncio.Event()
    await rollup.take(records(hires(0, 10), 0))
    revoked = asyncio.create_task(Rebalance(rollup).on_partitions_revoked({TP}))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not revoked.done() and TP in rollup.assigned

    kpi_store.gate.set()
    await revoked
    assert TP not in rollup.assigned
    assert applied(kpi_store) == 10 and rollup.positions[TP] == 10  # stored before the partition was given up


async def test_a_batch_that_failed_makes_the_next_take_resync_before_folding(rollup, kpi_store):
    kpi_store.failure = AutoReconnect("database away")
    rollup.stopping = True  # a stopping rollup gives up at the first failure instead of retrying
    await rollup.take(records(hires(0, 10), 0))
    with pytest.raises(AutoReconnect):
        await rollup.take(records(hires(10, 10), 10))
    assert rollup.stale

    rollup.stopping = False
    await rollup.take(records(hires(10, 10), 10))  # fetched before the resync: dropped
    assert kpi_store.stored == [] and rollup.consumer.sought[-1] == (TP, None) and not rollup.stale


async def test_the_collector_pauses_while_a_batch_is_parsed_and_folded_and_resumes_after_even_on_failure(
        rollup, monkeypatch):
    collecting: list[bool] = []
    parse_plain = rollup_module.parse_plain

    def watching(raw):
        collecting.append(gc.isenabled())
        if len(collecting) == 3:
            raise RuntimeError("a bug in parsing")
        return parse_plain(raw)

    monkeypatch.setattr(rollup_module, "parse_plain", watching)
    await rollup.process(records(hires(0, 2), 0))
    assert collecting == [False, False] and gc.isenabled()
    with pytest.raises(RuntimeError):
        await rollup.process(records(hires(2, 2), 2))
    assert gc.isenabled()


async def test_a_batch_is_folded_a_chunk_at_a_time_with_one_lookup_of_a_partition_at_most(kpi_store, monkeypatch):
    # Stored by an earlier owner: the filter knows these identities, the new owner's recent ones do not.
    first = hires(0, 3 * FOLD_CHUNK)
    earlier = Rollup(Consumer(), kpi_store, KafkaSettings(), role="current", version=1, seen_filter_mib=1)  # type: ignore[arg-type]
    await earlier.resume({TP})
    await earlier.process(records(first, 0))
    rollup = Rollup(Consumer(), kpi_store, KafkaSettings(), role="current", version=1, seen_filter_mib=1)  # type: ignore[arg-type]
    await rollup.resume({TP})

    alive, most_alive = 0, 0  # parsed events not yet folded (or dropped)
    parse_plain, record = rollup_module.parse_plain, rollup_module.domain.record

    def parsing(raw):
        nonlocal alive, most_alive
        alive += 1
        most_alive = max(most_alive, alive)
        return parse_plain(raw)

    def recording(event, cells):
        nonlocal alive
        alive -= 1
        return record(event, cells)

    lookups = 0
    stored_among = kpi_store.stored_among

    async def counting(version, tp, digests):
        nonlocal lookups
        lookups += 1
        return await stored_among(version, tp, digests)

    monkeypatch.setattr(rollup_module, "parse_plain", parsing)
    monkeypatch.setattr(rollup_module.domain, "record", recording)
    monkeypatch.setattr(kpi_store, "stored_among", counting)
    new = hires(3 * FOLD_CHUNK, 4 * FOLD_CHUNK)
    await rollup.process(records(new[:2 * FOLD_CHUNK], len(first)))
    assert most_alive <= FOLD_CHUNK and lookups == 0  # nothing to look up: a chunk at a time

    # Copies in the second chunk and after it: that chunk takes the rest along, one lookup for all.
    resent = [*new[2 * FOLD_CHUNK:3 * FOLD_CHUNK], first[5], *new[3 * FOLD_CHUNK:], first[-1]]
    await rollup.process(records(resent, len(first) + 2 * FOLD_CHUNK))
    assert lookups == 1
    assert applied(kpi_store) == len(first) + len(new)  # each copy counted once


async def test_a_record_whose_recording_fails_is_dead_lettered_and_the_rest_of_the_batch_folded(kpi_store, monkeypatch):
    letters: list[tuple[int, str]] = []

    async def dead_letter(record, reason, detail) -> None:
        letters.append((record.offset, reason))

    rollup = Rollup(Consumer(), kpi_store, KafkaSettings(), role="current", version=1, seen_filter_mib=1,  # type: ignore[arg-type]
                    dead_letter=dead_letter)
    await rollup.resume({TP})
    values = hires(0, 3 * FOLD_CHUNK)
    failing_id = orjson.loads(values[FOLD_CHUNK + 5])["id"]  # in the second chunk, found on the first fold
    record = rollup_module.domain.record

    def recording(event, cells):
        if event["id"] == failing_id:
            raise ValueError("a bug in a recorder")
        return record(event, cells)

    monkeypatch.setattr(rollup_module.domain, "record", recording)
    await rollup.process(records(values, 0))
    assert letters == [(FOLD_CHUNK + 5, "handler_error")]
    assert applied(kpi_store) == len(values) - 1 and rollup.positions[TP] == len(values)
