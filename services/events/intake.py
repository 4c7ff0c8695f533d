"""The one path every submitted event takes, from HTTP or from backbone.inbound: duplicate
check, rules, publish to its catalogue topic with acks=all, then record it as accepted."""

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from enum import StrEnum

from prometheus_client import Counter
from pydantic import BaseModel, Field

from services.events import domain
from services.events.store import EventsStore
from shared.envelope import CloudEvent, EventError
from shared.kafka import publish_many
from shared.service import Runtime

EVENTS_SUBMITTED = Counter(
    "backbone_events_submitted_total",
    "Events submitted to the events service, by entry point and what became of them",
    ["entry", "outcome"],  # entry: http, kafka; outcome: accepted, duplicate, rejected
)


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # in Kafka (acks=all) and recorded
    DUPLICATE = "duplicate"  # this event id was accepted before; nothing new was published
    REJECTED = "rejected"  # invalid or breaking a rule; `errors` name the fields


class EventResult(BaseModel):
    id: str | None = Field(description="the event id, when the event had a readable one")
    status: Outcome
    errors: list[dict[str, str]] = Field(default_factory=list, description='e.g. {"field": "data.employer_id", "message": "..."}')


class _PartnershipLocks:
    def __init__(self) -> None:
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @asynccontextmanager
    async def hold(self, partnership_ids: Iterable[str]) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for pid in sorted(set(partnership_ids)):  # one global order, so two batches never deadlock
                await stack.enter_async_context(self._locks[pid])
            yield


class Intake:
    def __init__(self, runtime: Runtime, store: EventsStore):
        self.runtime = runtime
        self.store = store
        # Rules read state, then the event is published, then its effect is stored. Two
        # submissions for one partnership at once could both pass a rule only one may (cancel and
        # complete of one activity), and Kafka's order must be the order the rules saw, so a
        # partnership's submissions take turns. The HTTP API and the inbound consumer share this
        # process's locks; running several instances needs partnership-affine routing.
        self._locks = _PartnershipLocks()

    def refuse(self, event_id: str | None, error: EventError, entry: str) -> EventResult:
        """The result for an event that did not even parse."""
        EVENTS_SUBMITTED.labels(entry, Outcome.REJECTED).inc()
        return EventResult(id=event_id, status=Outcome.REJECTED, errors=error.errors)

    async def submit(self, events: list[CloudEvent], entry: str) -> list[EventResult]:
        """Decide every event in order, later ones seeing the effects of earlier accepted ones.

        Returns only once every accepted event is in Kafka with acks=all. Raises (nothing is
        reported accepted) if Kafka or MongoDB fails; the caller retries the whole submission.

        Crash window: the event ids and effects are recorded only AFTER Kafka acknowledged. A
        crash in between leaves the events in Kafka but unrecorded; the caller got no answer and
        retries, the retry is decided against the same state, so it is accepted again and
        republished under the same event id, which every consumer deduplicates. The other order
        (record first) would make that retry a "duplicate" of an event that never reached Kafka:
        lost. At-least-once with stable ids is the design; exactly-once effects are downstream.
        """
        partnership_ids = [pid for e in events if (pid := getattr(e.data, "partnership_id", None))]
        async with self._locks.hold(partnership_ids):
            seen = await self.store.recorded([e.id for e in events])
            facts = await self.store.facts(domain.references(e.data for e in events if e.id not in seen))
            results: list[EventResult] = []
            accepted: list[CloudEvent] = []
            for event in events:
                if event.id in seen:
                    results.append(EventResult(id=event.id, status=Outcome.DUPLICATE))
                    continue
                errors = domain.check(event.data, facts)
                if errors:
                    results.append(EventResult(id=event.id, status=Outcome.REJECTED, errors=errors))
                    continue
                domain.apply(event.data, facts)
                seen.add(event.id)  # the same id later in this submission is a duplicate
                accepted.append(event)
                results.append(EventResult(id=event.id, status=Outcome.ACCEPTED))
            await publish_many(self.runtime.broker, self.runtime.settings.kafka, accepted)
            await self.store.record(accepted, facts)
        for result in results:
            EVENTS_SUBMITTED.labels(entry, result.status).inc()
        return results
