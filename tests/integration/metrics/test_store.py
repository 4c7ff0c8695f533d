"""The KPI store's exactly-once guard on the real MongoDB-protocol server: a batch is stored with
its offsets in one transaction only if the stored offsets are still those it started from and its
store version still has its role; otherwise nothing of it is stored."""

from datetime import date

import pytest
from aiokafka import TopicPartition
from pymongo import AsyncMongoClient

from services.metrics.dedupe import digest
from services.metrics.domain import Cells, record
from services.metrics.store import COMPACT_AT, Batch, Fenced, MetricsStore
from shared.contracts.membership import MemberJoined
from shared.contracts.outcomes import HireRecorded
from shared.envelope import new_event

pytestmark = pytest.mark.integration

TP = TopicPartition("t.backbone.outcomes", 2)


def batch(before: int | None, after: int, *hire_ids: str, start: date = date(2025, 7, 1)) -> Batch:
    b = Batch()
    events = [new_event(HireRecorded(partnership_id="sw-mp", hire_id=h, person_id="p", employer_id="acme",
                                     soc_code="51-4041", start_date=start, resident=True), source="/t")
              for h in hire_ids]
    for e in events:
        record(e.model_dump(), b.cells)
    b.moves[TP] = (before, after)
    b.seen[TP] = [digest(e.source, e.id) for e in events]
    return b


async def hires(store: MetricsStore, version: int) -> int:
    return sum(f.counts["hires"] for _, _, f in await store.dated(version, None, "2025-07"))


@pytest.fixture
async def store(mongo_settings):
    client = AsyncMongoClient(mongo_settings.uri.get_secret_value(), retryWrites=False)
    store = MetricsStore(client[mongo_settings.database_prefix + "metrics"])
    await store.setup()
    yield store
    await client.close()


async def test_a_stale_consumer_stores_nothing(store):
    first, last = batch(None, 3, "h1", "h2"), batch(3, 4, "h3")
    await store.apply(1, "current", first)
    # Another consumer that also believed nothing was stored yet, or that the partition was at 1:
    stale = [batch(None, 5, "x1"), batch(1, 5, "x2")]
    for attempt in stale:
        with pytest.raises(Fenced):
            await store.apply(1, "current", attempt)
    await store.apply(1, "current", last)
    assert await store.positions(1, [TP]) == {TP: 4}
    assert await hires(store, 1) == 3
    applied = {*first.seen[TP], *last.seen[TP]}
    assert await store.stored_among(1, TP, applied | {*stale[0].seen[TP], *stale[1].seen[TP]}) == applied


async def test_a_switched_version_fences_the_old_writer_and_the_rebuild(store):
    await store.apply(1, "current", batch(None, 2, "h1"))
    version = await store.start_rebuild()
    assert version == 2 and await store.start_rebuild() == 2  # an interrupted rebuild resumes
    await store.apply(2, "building", batch(None, 2, "h1"))
    await store.apply(1, "current", batch(2, 3, "h2"))  # the service goes on meanwhile
    assert await store.finish_rebuild(2) == 1
    with pytest.raises(Fenced):
        await store.apply(1, "current", batch(3, 4, "h3"))  # the service must move to version 2
    with pytest.raises(Fenced):
        await store.apply(2, "building", batch(2, 3, "h2"))  # the rebuild is over
    await store.apply(2, "current", batch(2, 3, "h2"))
    assert (await store.version(), await hires(store, 2)) == (2, 2)
    assert await store.positions(2, [TP]) == {TP: 3}


async def test_facts_merge_into_what_is_stored(store):
    await store.apply(1, "current", batch(None, 1, "h1"))
    await store.apply(1, "current", batch(1, 2, "h2"))
    [(_, month, facts)] = await store.dated(1, ["sw-mp"], "2025-01")
    assert month == "2025-07" and facts.counts["hires"] == 2
    assert set(facts.latest) == {"hire:sw-mp/h1", "hire:sw-mp/h2"}
    assert facts.lineage["hires"][0] == 2


async def test_a_stored_batch_renews_the_stamps_of_what_it_changed_only(store):
    """Kept read figures (services/metrics/cache.py) are as good as these stamps."""
    await store.apply(1, "current", batch(None, 1, "h1"))
    stamps = await store.stamps(1)
    assert set(stamps) == {"sw-mp"} and stamps["sw-mp"][1] is None  # its roster is unchanged
    joined = batch(1, 2)
    record(new_event(MemberJoined(partnership_id="nw-mp", membership_id="m", organisation_id="acme",
                                  organisation_kind="employer", role="member", joined_on=date(2025, 7, 1)),
                     source="/t").model_dump(), joined.cells)
    await store.apply(1, "current", joined)
    renewed = await store.stamps(1)
    assert renewed["sw-mp"] == stamps["sw-mp"] and renewed["nw-mp"][0] == renewed["nw-mp"][1] is not None
    with pytest.raises(Fenced):
        await store.apply(1, "current", batch(None, 3, "h2"))
    assert await store.stamps(1) == renewed  # nothing of a fenced batch is stored
    await store.apply(1, "current", batch(2, 3, "h3"))
    assert (await store.stamps(1))["sw-mp"] != stamps["sw-mp"]


async def test_a_stored_batch_renews_the_stamps_of_the_months_it_changed_only(store):
    """What lets a read take a partnership's changed months from the store again, not all of them."""
    await store.apply(1, "current", batch(None, 1, "h1"))
    await store.apply(1, "current", batch(1, 2, "h2", start=date(2025, 9, 3)))
    first = (await store.stamps(1))["sw-mp"]
    assert set(first.months) == {"2025-07", "2025-09"} and first.months["2025-09"] == first.facts
    await store.apply(1, "current", batch(2, 3, "h3", start=date(2025, 9, 4)))
    then = (await store.stamps(1))["sw-mp"]
    assert then.months["2025-07"] == first.months["2025-07"] and then.months["2025-09"] not in first.months.values()
    [(pid, month, facts)] = await store.dated(1, ["sw-mp"], "2025-07", ["2025-09"])
    assert (pid, month, facts.counts["hires"]) == ("sw-mp", "2025-09", 2)
    assert await store.dated(1, ["sw-mp"], "2025-08", ["2025-07"]) == []  # before the first month asked


async def test_facts_are_stored_in_pieces_merged_every_compact_at(store, mongo_settings):
    """A batch writes its own facts and reads none back; a key's pieces stay bounded and add up."""
    pieces = store._facts(1)
    for n in range(2 * COMPACT_AT + 3):
        await store.apply(1, "current", batch(n or None, n + 1, f"h{n}"))
        assert await pieces.count_documents({"k": "outcomes/sw-mp/2025-07"}) <= COMPACT_AT
    assert await hires(store, 1) == 2 * COMPACT_AT + 3
    restarted = MetricsStore(store.db)  # a new process compacts a key at its first write
    await restarted.apply(1, "current", batch(2 * COMPACT_AT + 3, 2 * COMPACT_AT + 4, "last"))
    assert await pieces.count_documents({"k": "outcomes/sw-mp/2025-07"}) == 1
    [(_, _, facts)] = await store.dated(1, ["sw-mp"], "2025-07")
    assert facts.counts["hires"] == len([k for k in facts.latest if k.startswith("hire:")]) == 2 * COMPACT_AT + 4


async def test_a_large_merged_piece_is_sealed_and_never_merged_again(store):
    """However long a key's history, no document nears the database's per-document limit and a
    compaction reads a bounded amount: merged pieces past `seal_bytes` are left as they are."""
    store.seal_bytes = 3_000  # a few dozen hires: the real limit is SEAL_BYTES
    pieces = store._facts(1)
    sealed_ids: set[str] = set()
    for n in range(6 * COMPACT_AT):
        await store.apply(1, "current", batch(n or None, n + 1, f"h{n}"))
        stored = await pieces.find({"k": "outcomes/sw-mp/2025-07"}).to_list()
        now_sealed = {d["_id"] for d in stored if d.get("sealed")}
        assert sealed_ids <= now_sealed  # a sealed piece is never merged (nor deleted) again
        sealed_ids = now_sealed
        assert len(stored) - len(now_sealed) <= COMPACT_AT
        assert all(len(d["packed"]) >= store.seal_bytes for d in stored if d.get("sealed"))
        assert all(len(d["packed"]) < 2 * store.seal_bytes for d in stored)
    assert len(sealed_ids) >= 2
    [(_, _, facts)] = await store.dated(1, ["sw-mp"], "2025-07")
    assert facts.counts["hires"] == len([k for k in facts.latest if k.startswith("hire:")]) == 6 * COMPACT_AT


def test_cells_are_keyed_by_source_partnership_and_month():
    cells = Cells()
    record(
        new_event(
            HireRecorded(
                partnership_id="sw-mp",
                hire_id="h",
                person_id="p",
                employer_id="acme",
                soc_code="51-4041",
                start_date=date(2025, 7, 1),
                resident=True,
            ),
            source="/t",
        ).model_dump(),
        cells,
    )
    assert list(cells) == [("outcomes", "sw-mp", "2025-07")]
