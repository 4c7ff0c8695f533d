"""Which events of a group are held already (`EventsStore.pending`) on the real database: found
whether their sources hold a few events (listed) or more than the group asks (looked up one by one),
and only while they wait."""

from datetime import UTC, datetime

import pytest

from services.events.domain import identity
from services.events.store import EventsStore, HeldStatus

pytestmark = pytest.mark.integration


def held(source: str, event_id: str, status: HeldStatus = HeldStatus.PENDING) -> dict:
    return {"_id": identity(source, event_id), "source": source, "id": event_id, "status": status,
            "partnership_id": "p", "organisations": [], "next_attempt_at": datetime.now(UTC), "attempts": 0}


def asked(source: str, *event_ids: str) -> dict[str, str]:
    return {identity(source, event_id): source for event_id in event_ids}


async def test_the_held_events_of_a_group_are_found_while_they_wait(client, mongo_settings):
    store = EventsStore(client[mongo_settings.database_prefix + "events"])
    await store.setup()
    await store.held.insert_many(
        [held("/ats", "a"), held("/ats", "b"), held("/ats", "c"), held("/ats", "refused", HeldStatus.REJECTED),
         held("/ats", "took", HeldStatus.ACCEPTED)] + [held("/lms", f"l{n}") for n in range(30)])

    async def found(sources: dict[str, str]) -> set[str]:
        return set(await store.pending(sources))

    # /ats holds three, fewer than asked: listed, then fetched.
    assert await found(asked("/ats", "a", "b", "refused", "took", "new")) == set(asked("/ats", "a", "b"))
    # /lms holds thirty, more than asked: each looked up.
    assert await found(asked("/lms", "l1", "l29", "new")) == set(asked("/lms", "l1", "l29"))
    # A group of both; an id held by another source is another event.
    group = asked("/ats", "c", "l1") | asked("/lms", "l2", "a") | asked("/forms", "a")
    assert await found(group) == set(asked("/ats", "c") | asked("/lms", "l2"))
    assert await found(asked("/forms", "a", "b")) == set()
    assert (await store.pending(asked("/ats", "a")))[identity("/ats", "a")]["status"] == HeldStatus.PENDING
