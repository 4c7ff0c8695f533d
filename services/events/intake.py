"""The one path every submitted event takes, from HTTP or from backbone.inbound: duplicate
check, rules, publish to its catalogue topic with acks=all, then record it as accepted."""

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field

from services.events import domain
from services.events.store import EventsStore
from shared.envelope import CloudEvent, EventError
from shared.service import Runtime

EVENTS_SUBMITTED = Counter(
    "backbone_events_submitted_total",
    "Events submitted to the events service, by entry point and what became of them",
    ["entry", "outcome"],  # entry: http, kafka; outcome: accepted, duplicate, rejected
)
GROUP_SUBMISSIONS = Histogram("backbone_events_intake_group_submissions",
                              "Submissions decided, published and stored together", buckets=(1, 2, 5, 10, 20, 50, 100))


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # in Kafka (acks=all) and recorded
    DUPLICATE = "duplicate"  # this source's event id was accepted before; nothing new was published
    REJECTED = "rejected"  # invalid or breaking a rule; `errors` name the fields


class EventResult(BaseModel):
    id: str | None = Field(description="the event id, when the event had a readable one")
    status: Outcome
    errors: list[dict[str, str]] = Field(default_factory=list, description='e.g. {"field": "data.employer_id", "message": "..."}')


@dataclass
class _Submission:
    events: list[CloudEvent]
    decided: asyncio.Future  # its results, or why the whole group failed


class Intake:
    """Decides submissions one group at a time, in the order they arrived.

    Rules read state, then the events are published, then their effects are stored. Two
    submissions at once could both pass a rule only one may (cancel and complete of one
    activity), and Kafka's order must be the order the rules saw, so submissions take turns:
    within the process here, across replicas by a per-partnership lease in the store.
    Taking turns one by one would cap the service at one database round trip, one acks=all
    publish and one transaction per submission (~100 small requests/s here, queueing for
    seconds beyond): instead whoever holds the turn decides every submission waiting by then
    as one group (group commit), each later event seeing the earlier ones' effects exactly as
    if they had come one after another. The HTTP API and the inbound consumer share the turn."""

    def __init__(self, runtime: Runtime, store: EventsStore, max_group_events: int = 1000):
        self.runtime = runtime
        self.store = store
        self.max_group_events = max_group_events
        self.replica = uuid.uuid4().hex  # who holds a partnership's turn in the store
        self._waiting: deque[_Submission] = deque()
        self._turn = asyncio.Lock()

    def refuse(self, event_id: str | None, error: EventError, entry: str) -> EventResult:
        """The result for an event that did not even parse."""
        EVENTS_SUBMITTED.labels(entry, Outcome.REJECTED).inc()
        return EventResult(id=event_id, status=Outcome.REJECTED, errors=error.errors)

    async def submit(self, events: list[CloudEvent], entry: str) -> list[EventResult]:
        """Decide every event in order, later ones (and later submissions) seeing the effects of
        earlier accepted ones.

        Returns only once every accepted event is in Kafka with acks=all. Raises (nothing is
        reported accepted) if Kafka or MongoDB fails; the caller retries the whole submission.

        Crash window: the event ids and effects are recorded only AFTER Kafka acknowledged. A
        crash in between leaves the events in Kafka but unrecorded; the caller got no answer and
        retries, the retry is decided against the same state, so it is accepted again and
        republished under the same event id, which every consumer deduplicates. The other order
        (record first) would make that retry a "duplicate" of an event that never reached Kafka:
        lost. At-least-once with stable ids is the design; exactly-once effects are downstream.
        """
        submission = _Submission(events, asyncio.get_running_loop().create_future())
        self._waiting.append(submission)
        async with self._turn:
            while not submission.decided.done():  # else an earlier turn took it along
                await self._decide_group()
        results = submission.decided.result()
        for result in results:
            EVENTS_SUBMITTED.labels(entry, result.status).inc()
        return results

    async def _decide_group(self) -> None:
        group = [self._waiting.popleft()]
        size = len(group[0].events)
        while self._waiting and size + len(self._waiting[0].events) <= self.max_group_events:
            size += len(self._waiting[0].events)
            group.append(self._waiting.popleft())
        GROUP_SUBMISSIONS.observe(len(group))
        try:
            results = iter(await self._decide([e for s in group for e in s.events]))
        except asyncio.CancelledError:
            self._waiting.extendleft(reversed(group))  # the next turn decides them again
            raise
        except Exception as exc:  # noqa: BLE001 - Kafka or MongoDB away: each caller re-raises it and retries
            for s in group:
                s.decided.set_exception(exc)
            return
        for s in group:
            s.decided.set_result([next(results) for _ in s.events])

    async def _decide(self, events: list[CloudEvent]) -> list[EventResult]:
        partnership_ids = {pid for e in events if (pid := getattr(e.data, "partnership_id", None))}
        async with self.store.turn(partnership_ids, self.replica):
            return await self._decide_alone(events)

    async def _decide_alone(self, events: list[CloudEvent]) -> list[EventResult]:
        identities = [domain.identity(e.source, e.id) for e in events]
        seen = await self.store.recorded(identities)
        facts = await self.store.facts(domain.references(e.data for e, i in zip(events, identities) if i not in seen))
        results: list[EventResult] = []
        accepted: list[CloudEvent] = []
        for event, event_identity in zip(events, identities):
            if event_identity in seen:
                results.append(EventResult(id=event.id, status=Outcome.DUPLICATE))
                continue
            errors = domain.check(event.data, facts)
            if errors:
                results.append(EventResult(id=event.id, status=Outcome.REJECTED, errors=errors))
                continue
            domain.apply(event.data, facts)
            seen.add(event_identity)  # the same source and id later in this group is a duplicate
            accepted.append(event)
            results.append(EventResult(id=event.id, status=Outcome.ACCEPTED))
        await self.runtime.publish_many(accepted)
        await self.store.record(accepted, facts)
        return results
