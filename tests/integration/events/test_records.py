"""Accepted records kept a partnership's day of one group to a document (services/events/store.py,
`sheets_of`), on the real database: each record found once by identity and by id, the records page
newest first across days and groups, voids marked once, an identity accepted once even if the
rules were bypassed, and records of the one-document-each layout moved over at setup."""

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import BulkWriteError

from services.events.domain import Facts, References, identity, record_of
from services.events.store import EventsStore
from shared.contracts import activities as act
from shared.contracts import outcomes as out
from shared.envelope import CloudEvent, new_event
from tests.examples import EXAMPLES, P

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 9, tzinfo=UTC)


@pytest.fixture
async def store(client, mongo_settings) -> EventsStore:
    store = EventsStore(client[mongo_settings.database_prefix + "events"])
    await store.setup()
    return store


def hire(n: int, time: datetime, partnership_id: str = P) -> CloudEvent:
    data = EXAMPLES[out.HireRecorded].model_copy(update={"hire_id": f"h-{n}", "partnership_id": partnership_id})
    return new_event(data, source="/ats", id=f"hire-{n:03d}", time=time)


def newest_first(events: list[CloudEvent]) -> list[str]:
    return [e.id for e in sorted(sorted(events, key=lambda e: e.id), key=lambda e: e.time, reverse=True)]


async def test_the_records_page_walks_every_record_newest_first_across_days_and_groups(store):
    # 63 hires: 60 over 8 days, three of them the same second, and three months and years before
    # (in each window the page reads, store.PAGE_WINDOWS); accepted in groups of 7 in shuffled
    # order, and another partnership's in between.
    events = [hire(n, START + timedelta(hours=3 * n)) for n in range(57)]
    events += [hire(n, START + timedelta(hours=100)) for n in (59, 57, 58)]
    events += [hire(60 + n, START - timedelta(days=days)) for n, days in enumerate((40, 400, 1500))]
    shuffled = random.Random(7).sample(events, len(events))
    for first in range(0, len(shuffled), 7):
        await store.record(shuffled[first:first + 7], Facts())
        await store.record([hire(100 + first, START + timedelta(days=2), partnership_id="other")], Facts())
    assert len({sheet["day"] async for sheet in store.accepted.find({"partnership_id": P})}) == 11

    expected = newest_first(events)  # the same second: by id
    whole = await store.records(P, None, None, None, limit=100)
    assert [row["id"] for row in whole] == expected
    assert all(row["partnership_id"] == P and "_id" not in row and row["time"].tzinfo for row in whole)

    untied = [e for e in events if e.time != START + timedelta(hours=100)]
    seen, before = [], None
    while page := await store.records(P, None, None, before, limit=8):  # as the page's "older" link walks
        seen += [row["id"] for row in page if row["time"] != START + timedelta(hours=100)]
        before = page[-1]["time"]
    assert seen == newest_first(untied)

    picked = [events[3].id, events[41].id, "hire-999"]
    found = await store.records(P, picked, None, None, 50)
    assert [row["id"] for row in found] == newest_first([events[41], events[3]])
    assert await store.records("other", picked, None, None, 50) == []
    every = await store.records(P, [e.id for e in events], None, None, 100)  # sheets found by two queries
    assert [row["id"] for row in every] == expected
    assert await store.records(P, None, "org.backbone.outcome.voided.v1", None, 50) == []
    # a window's oldest day (a week before `before`, where the hire of 40 days before sits) is read once
    earlier = START - timedelta(days=33)
    assert [row["id"] for row in await store.records(P, None, None, earlier, 5)] == newest_first(
        [e for e in events if e.time < earlier])
    later = await store.records(P, None, None, START + timedelta(days=4), 5)
    assert [row["id"] for row in later] == newest_first([e for e in events if e.time < START + timedelta(days=4)])[:5]

    everyone = [identity(e.source, e.id) for e in events]
    assert await store.recorded(everyone + ["/ats never"]) == set(everyone)
    assert (await store.status(P, everyone[5]))["status"] == "accepted"
    assert await store.status("other", everyone[5]) is None


async def test_a_void_marks_its_record_once(store):
    recorded = hire(1, START)
    await store.record([recorded], Facts())
    target = identity(recorded.source, recorded.id)
    for void_id in ("void-1", "void-2"):
        void = new_event(EXAMPLES[out.OutcomeVoided], source="/ats", id=void_id)
        await store.record([void], Facts(voided={target: void_id}))
    [row] = await store.records(P, [recorded.id], None, None, 10)
    assert row["voided_by"] == "void-1"
    facts = await store.facts(References(records={target}))
    assert facts.records[target]["voided_by"] == "void-1"  # what the rules see: voided already


async def test_an_identity_is_accepted_once_even_past_the_rules(store):
    """The unique index is the backstop when two replicas decide the same event (a turn lost late)."""
    first = hire(1, START)
    await store.record([first], Facts())
    with pytest.raises(BulkWriteError, match="E11000"):
        await store.record([hire(2, START), first.model_copy(update={"time": START + timedelta(days=3)})], Facts())
    assert await store.recorded([identity("/ats", "hire-002")]) == set()  # the whole group failed


async def test_a_group_of_large_events_is_stored_in_sheets_below_the_document_limit(store):
    """90 attendance lists of ~200 KB on one day: ~18 MB, over MongoDB's 16 MiB for one document."""
    people = [f"person-{n:07d}" for n in range(14_000)]
    lists = [new_event(EXAMPLES[act.AttendanceRecorded].model_copy(update={"person_ids": people}), source="/ats",
                       id=f"attendance-{n}", time=START) for n in range(90)]
    await store.record(lists, Facts())
    assert await store.recorded([identity(e.source, e.id) for e in lists]) == {identity(e.source, e.id) for e in lists}
    assert await store.accepted.count_documents({"partnership_id": P}) >= 5
    page = await store.records(P, None, None, None, 50)
    assert [row["id"] for row in page] == newest_first(lists)[:50] and len(page[0]["data"]["person_ids"]) == 14_000


async def test_records_kept_one_document_each_are_moved_into_sheets_at_setup(client, mongo_settings):
    db = client[mongo_settings.database_prefix + "events"]
    events = [hire(n, START + timedelta(hours=5 * n)) for n in range(2500)]
    old = [record_of(e) for e in events] + [  # from before records kept what they said
        {"_id": "/ats early", "source": "/ats", "id": "early", "type": "org.backbone.outcome.hire.recorded.v1",
         "partnership_id": P}]
    await db["accepted_events"].insert_many(old)
    # and one an old replica recorded during a rollout after a new one had recorded it in a sheet
    await EventsStore(db).record([events[7]], Facts())

    stores = [EventsStore(db), EventsStore(db)]
    await asyncio.gather(*(s.setup() for s in stores))  # two replicas starting at once
    await stores[0].setup()  # and a restart: nothing left to move

    assert await db["accepted_events"].count_documents({}) == 0
    kept = [r["_id"] async for sheet in db["accepted_records"].find({}) for r in sheet["records"]]
    assert sorted(kept) == sorted(r["_id"] for r in old)  # each once
    assert await stores[1].recorded([r["_id"] for r in old]) == {r["_id"] for r in old}
    assert [row["id"] for row in await stores[1].records(P, None, None, None, 3)] == newest_first(events)[:3]
