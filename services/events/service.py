"""The events service's use cases. Each takes the caller's Principal and decides access first:
who may submit, record and read what, whatever the transport (HTTP or a partner's inbound topic).

- Submitting needs a writing role (viewers never submit), each event's partnership writable by
  the caller, and each event's `source` one the caller may send as: an event's identity is its
  source and id, so binding the source to the key is what keeps one sender from colliding with
  or probing another's ids.
- Reading an activity, or what became of an event, needs read access to its partnership
  (viewers included); reading its records (what each said) needs write access to it.
"""

from datetime import datetime
from typing import Protocol

from services.events.domain import Activity, identity
from services.events.intake import EventResult
from shared.auth import WRITERS, Principal
from shared.contracts.base import PartnershipEvent
from shared.envelope import CloudEvent, new_event
from shared.errors import DomainError, NotAllowed, NotAuthenticated, NotFound


class Intake(Protocol):
    async def submit(
        self, events: list[CloudEvent], entry: str, origins: list[dict] | None = None
    ) -> list[EventResult]: ...


class Activities(Protocol):
    async def activity(self, partnership_id: str, activity_id: str) -> Activity | None: ...

    async def status(self, partnership_id: str, event_identity: str) -> dict | None: ...

    async def records(self, partnership_id: str, ids: list[str] | None, event_type: str | None,
                      before: datetime | None, limit: int) -> list[dict]: ...


def authorise(caller: Principal, event: CloudEvent) -> None:
    """NotAllowed unless the caller may send as the event's source and write its partnership."""
    caller.require_source(event.source)
    if (partnership_id := getattr(event.data, "partnership_id", None)) is not None:
        caller.require_writer(partnership_id)


class EventsService:
    def __init__(self, intake: Intake, activities: Activities):
        self.intake = intake
        self.activities = activities

    async def submit(self, caller: Principal, parsed: list[CloudEvent | EventResult]) -> list[EventResult]:
        """CloudEvents over HTTP, in order (`parsed`: what did not even parse is already its
        result). Any event the caller may not send refuses the whole submission."""
        caller.require_role(*WRITERS)
        events = [p for p in parsed if isinstance(p, CloudEvent)]
        for event in events:
            authorise(caller, event)
        decided = iter(await self.intake.submit(events, entry="http") if events else [])
        return [next(decided) if isinstance(p, CloudEvent) else p for p in parsed]

    async def record(self, caller: Principal, data: PartnershipEvent, idempotency_key: str | None) -> EventResult:
        """One event from a typed endpoint, sent as the caller's own source; the idempotency key
        (or a new id) is its id, so a retry with the same key is accepted once."""
        caller.require_writer(data.partnership_id)
        [result] = await self.intake.submit([new_event(data, source=caller.source, id=idempotency_key)], entry="http")
        return result

    async def activity(self, caller: Principal, partnership_id: str, activity_id: str) -> Activity:
        caller.require_partnership(partnership_id)
        found = await self.activities.activity(partnership_id, activity_id)
        if found is None:
            raise NotFound("no such activity")
        return found

    async def status(self, caller: Principal, partnership_id: str, source: str, event_id: str) -> dict:
        """What became of an event of the partnership: accepted, pending (held) or rejected after its hold."""
        caller.require_partnership(partnership_id)
        found = await self.activities.status(partnership_id, identity(source, event_id))
        if found is None:
            raise NotFound("no such event accepted or held in this partnership")
        return found

    async def records(self, caller: Principal, partnership_id: str, *, ids: list[str] | None = None,
                      event_type: str | None = None, before: datetime | None = None, limit: int = 50) -> list[dict]:
        """The partnership's accepted events (what, when, who sent it, voided or not): record-level data,
        for those who keep the partnership's records (viewers see its figures, not its records)."""
        caller.require_writer(partnership_id)
        return await self.activities.records(partnership_id, ids, event_type, before, limit)

    async def submit_inbound(self, caller: Principal | None, key_id: str, events: list[CloudEvent],
                             origins: list[dict] | None = None) -> list[EventResult | DomainError]:
        """Records from the inbound topic of key `key_id` (`origins`: each one's coordinates), sent
        as that key (`caller`: None when it is revoked or unknown). Each event the key may not send
        is refused on its own (the others go on, as Kafka records do); the rest are decided as one
        submission."""
        refusals = [_refusal(caller, key_id, event) for event in events]
        origins = origins or [{"topic": ""}] * len(events)
        allowed = [
            (event, origin) for event, origin, refusal in zip(events, origins, refusals, strict=True) if refusal is None
        ]
        decided = iter(await self.intake.submit([e for e, _ in allowed], entry="kafka",
                                                origins=[o for _, o in allowed]) if allowed else [])
        return [refusal or next(decided) for refusal in refusals]


def _refusal(caller: Principal | None, key_id: str, event: CloudEvent) -> DomainError | None:
    if caller is None:
        return NotAuthenticated(f"key {key_id!r} is revoked or unknown")
    try:
        caller.require_role(*WRITERS)
        authorise(caller, event)
    except NotAllowed as exc:
        return exc
    return None
