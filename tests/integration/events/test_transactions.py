"""The events store's transactions beside other replicas' on the real database. A replica killed
in the middle of one leaves it open until the server reaps it (SecantusDB: after 60 s idle); a
replica waking held events writes the documents a decision may write too."""

import asyncio
from datetime import UTC, datetime

import pytest

from services.events.domain import Facts, Hire, References, identity, record_of
from services.events.store import EventsStore, HeldStatus, Holds, sheets_of
from shared.contracts import outcomes as out
from shared.envelope import new_event
from tests.examples import EXAMPLES, P

pytestmark = pytest.mark.integration


def held(event_id: str) -> dict:
    return {"_id": identity("/ats", event_id), "status": HeldStatus.PENDING, "partnership_id": P,
            "organisations": ["microboard"], "next_attempt_at": datetime.now(UTC), "attempts": 0}


def hire(n: int) -> tuple:
    data = EXAMPLES[out.HireRecorded].model_copy(update={"hire_id": f"h-{n}"})
    event = new_event(data, source="/ats", id=f"hire-{n}")
    return event, Hire(partnership_id=P, hire_id=data.hire_id, person_id=data.person_id,
                       employer_id=data.employer_id, start_date=data.start_date)


async def test_a_replica_killed_in_its_first_transaction_does_not_block_the_others(client, mongo_settings):
    """Its transaction wrote the first accepted records (with a hire) and the first held event.
    Fails when a decision's transaction is what first flags the indexes of the records' identities
    and ids, of the hires' keys, or of the held events' organisations multikey: every other
    transaction writing there conflicts until that one ends."""
    db = client[mongo_settings.database_prefix + "events"]
    survivor = EventsStore(db)
    await survivor.setup()
    killed_event, killed_hire = hire(1)
    async with client.start_session() as killed:  # its transaction never ends while the survivor works
        await killed.start_transaction()
        await survivor.accepted.insert_many(
            sheets_of([record_of(killed_event)], {identity(killed_event.source, killed_event.id): killed_hire}),
            session=killed)
        await survivor.held.insert_one(held("killed-early"), session=killed)

        event, new_hire = hire(2)
        async with asyncio.timeout(15):
            await survivor.record([event], Facts(new_hires=[new_hire]), Holds(new=[held("survivor-early")]))
    assert await survivor.recorded([identity(event.source, event.id)]) == {identity(event.source, event.id)}
    assert set((await survivor.facts(References(hires={(P, "h-1"), (P, "h-2")}))).hires) == {(P, "h-2")}
    assert await survivor.held_count() == 1


async def test_a_decision_that_conflicts_with_another_transaction_is_retried_whole(client, mongo_settings):
    """Fails without the retry: the conflicting write fails the decision at once (a 503)."""
    db = client[mongo_settings.database_prefix + "events"]
    store = EventsStore(db)
    await store.setup()
    waiting = identity("/ats", "early-hire")
    await store.held.insert_one(held("early-hire"))
    event, new_hire = hire(3)

    async with client.start_session() as waker:  # another replica waking the held event, slowly
        await waker.start_transaction()
        await store.held.update_one({"_id": waiting}, {"$set": {"next_attempt_at": datetime.now(UTC)}},
                                    session=waker)
        decision = asyncio.create_task(store.record(
            [event], Facts(new_hires=[new_hire]),
            Holds(settled={waiting: {"status": HeldStatus.REJECTED, "reason": "too late"}})))
        await asyncio.sleep(0.5)
        assert not decision.done()  # waiting for the other transaction, not failed
        await waker.commit_transaction()
    async with asyncio.timeout(15):
        await decision

    assert (await store.held.find_one({"_id": waiting}))["status"] == HeldStatus.REJECTED
    assert await store.recorded([identity(event.source, event.id)]) == {identity(event.source, event.id)}
    assert set((await store.facts(References(hires={(P, "h-3")}))).hires) == {(P, "h-3")}
