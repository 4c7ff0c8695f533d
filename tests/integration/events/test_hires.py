"""Hires kept in the sheets of the records that recorded them (services/events/store.py), on the
real database, decided as the intake decides them (the rules' effects, `domain.apply`): found by
their key, gone once voided, their id free to be recorded again, in a later group or the same
one; hires kept one document each moved into sheets at setup; and records voided before a
void's own id was kept given it at setup, once."""

import asyncio

import pytest

from services.events import domain
from services.events.domain import Hire, References, identity, record_of
from services.events.store import EventsStore, hire_key
from shared.contracts import outcomes as out
from shared.envelope import CloudEvent, new_event
from tests.examples import EXAMPLES, P

pytestmark = pytest.mark.integration

H1 = (P, "h-1")


@pytest.fixture
async def store(client, mongo_settings) -> EventsStore:
    store = EventsStore(client[mongo_settings.database_prefix + "events"])
    await store.setup()
    return store


def hire(event_id: str, hire_id: str = "h-1", person_id: str = "person-1") -> CloudEvent:
    return new_event(EXAMPLES[out.HireRecorded].model_copy(update={"hire_id": hire_id, "person_id": person_id}),
                     source="/ats", id=event_id)


def void(event_id: str, voided: CloudEvent) -> CloudEvent:
    return new_event(EXAMPLES[out.OutcomeVoided].model_copy(update={"voided_id": voided.id,
                                                                    "voided_source": voided.source}),
                     source="/ats", id=event_id)


async def decide(store: EventsStore, *events: CloudEvent) -> None:
    """One group, accepted whole as the intake accepts it (its rules passed)."""
    facts = await store.facts(domain.references(e.data for e in events))
    for event in events:
        domain.apply(event.data, facts, event.id)
        facts.records[identity(event.source, event.id)] = record_of(event)
    await store.record(list(events), facts)


async def hires(store: EventsStore, *keys: tuple[str, str]) -> dict:
    return (await store.facts(References(hires=set(keys)))).hires


async def test_a_hire_is_found_until_voided_and_its_id_may_be_recorded_again(store):
    first = hire("hire-1")
    await decide(store, first, hire("hire-2", "h-2", "person-2"))
    assert (await hires(store, H1, (P, "h-2"), (P, "h-3")))[H1].person_id == "person-1"
    assert await hires(store, ("another", "h-1")) == {}  # ids are unique within a partnership only

    again = hire("hire-1b", person_id="person-9")  # a correction: voided and recorded again, one group
    await decide(store, void("void-1", first), again)
    assert (await hires(store, H1))[H1].person_id == "person-9"
    assert (await hires(store, (P, "h-2")))[(P, "h-2")].person_id == "person-2"  # its sheet's other hire stays

    await decide(store, void("void-2", again))  # voided alone: gone
    assert await hires(store, H1) == {}
    third = hire("hire-1c", person_id="person-3")
    await decide(store, third)
    assert (await hires(store, H1))[H1].person_id == "person-3"
    assert await store.accepted.count_documents({"hires.key": hire_key(H1)}) == 1


async def test_a_hire_recorded_voided_and_recorded_again_in_one_group_is_kept_with_its_last_record(store):
    first, last = hire("hire-1", person_id="person-1"), hire("hire-2", person_id="person-2")
    await decide(store, first, void("void-1", first), last)
    assert (await hires(store, H1))[H1].person_id == "person-2"
    [sheet] = await store.accepted.find({"hires.key": hire_key(H1)}).to_list()
    assert [h["person_id"] for h in sheet["hires"]] == ["person-2"]
    assert [r.get("voided_by") for r in sheet["records"] if r["type"] == first.type] == ["void-1", None]


async def test_hires_kept_one_document_each_are_moved_into_sheets_at_setup(client, mongo_settings):
    db = client[mongo_settings.database_prefix + "events"]
    old = [Hire(partnership_id=pid, hire_id=f"h-{n}", person_id=f"person-{n}", employer_id="microboard",
                start_date="2026-03-02") for pid in (P, "scmip") for n in range(1200)]
    await db["hires"].insert_many([{"_id": f"{h.partnership_id}/{h.hire_id}", "hire": h.model_dump(mode="json")}
                                   for h in old])
    # one that an old replica recorded during a rollout, a new one having recorded it in a sheet
    await decide(EventsStore(db), hire("hire-7", "h-7", "person-7"))

    stores = [EventsStore(db), EventsStore(db)]
    await asyncio.gather(*(s.setup() for s in stores))  # two replicas starting at once
    await stores[0].setup()  # and a restart: nothing left to move

    assert await db["hires"].count_documents({}) == 0
    keys = [(h.partnership_id, h.hire_id) for h in old]
    found = await hires(stores[1], *keys)
    assert found == {(h.partnership_id, h.hire_id): h for h in old} | {(P, "h-7"): found[(P, "h-7")]}
    assert found[(P, "h-7")].start_date == EXAMPLES[out.HireRecorded].start_date  # the one in a sheet kept
    kept = [h["key"] async for sheet in db["accepted_records"].find({}) for h in sheet.get("hires", [])]
    assert sorted(kept) == sorted(hire_key(k) for k in keys)  # each once
    # moved hires show no records: only the one decided in a sheet has one
    assert [row["id"] for row in await stores[1].records(P, None, None, None, 10)] == ["hire-7"]


async def voided_by(store: EventsStore, *ids: str) -> dict[str, str | None]:
    return {r["id"]: r.get("voided_by") for r in await store.records(P, list(ids), None, None, 10)}


async def as_voided_before_the_fix(store: EventsStore, record: CloudEvent) -> None:
    """`voided_by` as a void left it before 4c3ea42: the voided record's own id."""
    record_identity = identity(record.source, record.id)
    await store.accepted.update_one({"identities": record_identity}, {"$set": {"records.$[r].voided_by": record.id}},
                                    array_filters=[{"r._id": record_identity}])


async def test_records_voided_before_voids_kept_their_id_are_mended_at_setup_once(store):
    first, second, kept = hire("hire-1"), hire("hire-2", "h-2", "person-2"), hire("hire-3", "h-3", "person-3")
    await decide(store, first, second, kept)
    await decide(store, void("void-1", first), void("void-2", second))
    for record in (first, second):
        await as_voided_before_the_fix(store, record)
    await store.upgrades.delete_many({})  # a store from before the upgrade
    assert await voided_by(store, "hire-1", "hire-2") == {"hire-1": "hire-1", "hire-2": "hire-2"}

    await asyncio.gather(store.setup(), EventsStore(store.accepted.database).setup())  # two replicas starting
    assert await voided_by(store, "hire-1", "hire-2", "hire-3") == {"hire-1": "void-1", "hire-2": "void-2",
                                                                    "hire-3": None}

    await as_voided_before_the_fix(store, first)
    await store.setup()  # the upgrade is done: no sheet is read again
    assert await voided_by(store, "hire-1") == {"hire-1": "hire-1"}
