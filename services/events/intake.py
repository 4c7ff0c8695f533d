"""The one path every submitted event takes, from HTTP or from backbone.inbound: duplicate
check, rules, publish to its catalogue topic with acks=all, and record it as accepted in a
transaction written meanwhile and committed once Kafka has acknowledged. An event that only waits
for something to arrive (`domain.hold_reason`) is held in MongoDB instead, and decided again on
the same path (see services/events/holds.py) until it passes or its hold ends."""

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field

from services.events import domain
from services.events.domain import Facts
from services.events.recorded import RecordedFilter
from services.events.store import EventsStore, HeldStatus, Holds, held_doc, hire_key
from shared.envelope import CloudEvent, EventError, parse_event
from shared.kafka import dead_letter
from shared.lease import DEFAULT_IDLE
from shared.mongo import duplicate_key
from shared.service import Runtime

EVENTS_SUBMITTED = Counter(
    "backbone_events_submitted_total",
    "Events submitted to the events service, by entry point and what became of them",
    ["entry", "outcome"],  # entry: http, kafka; outcome: accepted, duplicate, rejected, pending
)
HELD_DECIDED = Counter("backbone_events_held_decided_total", "Held events decided at last, by outcome",
                       ["entry", "outcome"])  # outcome: accepted, rejected (refused or dead-lettered)
for _entry in ("http", "kafka"):  # every series from 0, so the first one shows in increase()
    for _outcome in ("accepted", "duplicate", "rejected", "pending"):
        EVENTS_SUBMITTED.labels(_entry, _outcome)
    for _outcome in ("accepted", "rejected"):
        HELD_DECIDED.labels(_entry, _outcome)
GROUP_SUBMISSIONS = Histogram("backbone_events_intake_group_submissions",
                              "Submissions decided, published and stored together", buckets=(1, 2, 5, 10, 20, 50, 100))


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # in Kafka (acks=all) and recorded
    DUPLICATE = "duplicate"  # this source's event id was accepted before; nothing new was published
    REJECTED = "rejected"  # invalid or breaking a rule; `errors` name the fields
    PENDING = "pending"  # held (stored) until what it names arrives, then decided again by itself


class EventResult(BaseModel):
    id: str | None = Field(description="the event id, when the event had a readable one")
    status: Outcome
    errors: list[dict[str, str]] = Field(
        default_factory=list,
        description='e.g. {"field": "data.employer_id", "message": "...", "reason": "unknown_organisation"}; '
                    "`reason` on the errors that may pass later")


@dataclass(frozen=True)
class Candidate:
    """An event to decide: submitted now, or held earlier and decided again (`held`)."""

    event: CloudEvent
    entry: str  # http, kafka
    origin: dict | None = None  # a Kafka event's record: topic, and partition and offset when known
    held: bool = False


@dataclass
class _Submission:
    candidates: list[Candidate]
    decided: asyncio.Future  # its results, or why the whole group failed


class Intake:
    """Decides submissions one group at a time, in the order they arrived.

    Rules read state, then the events are published, their effects stored once they are. Two
    submissions at once could both pass a rule only one may (cancel and complete of one
    activity), and Kafka's order must be the order the rules saw, so submissions take turns:
    within the process here, across replicas by a per-partnership lease in the store.
    Taking turns one by one would cap the service at one database round trip, one acks=all
    publish and one transaction per submission (~100 small requests/s here, queueing for
    seconds beyond): instead whoever holds the turn decides every submission waiting by then
    as one group (group commit), each later event seeing the earlier ones' effects exactly as
    if they had come one after another. The HTTP API and the inbound consumer share the turn."""

    def __init__(self, runtime: Runtime, store: EventsStore, max_group_events: int = 1000,
                 hold: timedelta = timedelta(0),
                 retry: Callable[[int], timedelta] = lambda attempts: timedelta(seconds=1),
                 recorded_filter_mib: int = 32, keep_turn: timedelta = DEFAULT_IDLE):
        self.runtime = runtime
        self.store = store
        self.max_group_events = max_group_events
        self.hold = hold  # how long an event may wait for what it names (0: refused at once)
        self.retry = retry  # attempts so far -> wait until the next one
        self.replica = uuid.uuid4().hex  # who holds a partnership's turn in the store
        self.turns = store.kept_turns(self.replica, keep_turn)  # one group at a time holds them (`_turn`)
        # Rules out lookups of what was never recorded, once loaded (by the app's loader worker).
        self.recorded = RecordedFilter(store, self.replica, recorded_filter_mib)
        self.on_accepted: list[Callable[[set[str]], None]] = []  # partnerships whose events were accepted
        self._waiting: deque[_Submission] = deque()
        self._turn = asyncio.Lock()

    def refuse(self, event_id: str | None, error: EventError, entry: str) -> EventResult:
        """The result for an event that did not even parse."""
        EVENTS_SUBMITTED.labels(entry, Outcome.REJECTED).inc()
        return EventResult(id=event_id, status=Outcome.REJECTED, errors=error.errors)

    async def submit(
        self, events: list[CloudEvent], entry: str, origins: list[dict] | None = None
    ) -> list[EventResult]:
        """Decide every event in order, later ones (and later submissions) seeing the effects of
        earlier accepted ones. A pending event is stored as held before this returns (with its
        record's coordinates, `origins`, when it came from Kafka).

        Returns only once every accepted event is in Kafka with acks=all. Raises (nothing is
        reported accepted) if Kafka or MongoDB fails; the caller retries the whole submission.

        Crash window: the event ids and effects are written while Kafka takes the events, and
        committed only AFTER Kafka acknowledged (a publish that fails aborts them). A
        crash in between leaves the events in Kafka but unrecorded; the caller got no answer and
        retries, the retry is decided against the same state, so it is accepted again and
        republished under the same event id, which every consumer deduplicates. The other order
        (record first) would make that retry a "duplicate" of an event that never reached Kafka:
        lost. At-least-once with stable ids is the design; exactly-once effects are downstream.
        """
        results = await self._submit(
            [Candidate(e, entry, origins[i] if origins else None) for i, e in enumerate(events)]
        )
        for result in results:
            EVENTS_SUBMITTED.labels(entry, result.status).inc()
        return results

    async def decide_held(self, held: list[dict]) -> None:
        """Decide held events (as `store.due` gives them) again, in the order they were held. One
        that no longer parses (its contract tightened since) is refused for good, not retried."""
        candidates, unreadable = [], Holds()
        for doc in held:
            try:
                candidates.append(Candidate(parse_event(doc["event"]), doc["entry"], doc.get("origin"), held=True))
            except EventError as exc:
                unreadable.settled[doc["_id"]] = {"status": HeldStatus.REJECTED, "reason": exc.reason,
                                                  "errors": exc.errors, "decided_at": datetime.now(UTC)}
                HELD_DECIDED.labels(doc["entry"], "rejected").inc()
        if unreadable:
            await self.store.record([], Facts(), unreadable)
        if candidates:
            await self._submit(candidates)

    async def _submit(self, candidates: list[Candidate]) -> list[EventResult]:
        submission = _Submission(candidates, asyncio.get_running_loop().create_future())
        self._waiting.append(submission)
        async with self._turn:
            while not submission.decided.done():  # else an earlier turn took it along
                await self._decide_group()
        return submission.decided.result()

    async def _decide_group(self) -> None:
        group = [self._waiting.popleft()]
        size = len(group[0].candidates)
        while self._waiting and size + len(self._waiting[0].candidates) <= self.max_group_events:
            size += len(self._waiting[0].candidates)
            group.append(self._waiting.popleft())
        GROUP_SUBMISSIONS.observe(len(group))
        try:
            results = iter(await self._decide([c for s in group for c in s.candidates]))
        except asyncio.CancelledError:
            self._waiting.extendleft(reversed(group))  # the next turn decides them again
            raise
        except Exception as exc:  # noqa: BLE001 - Kafka or MongoDB away: each caller re-raises it and retries
            for s in group:
                s.decided.set_exception(exc)
            return
        for s in group:
            s.decided.set_result([next(results) for _ in s.candidates])

    async def _decide(self, candidates: list[Candidate]) -> list[EventResult]:
        partnership_ids = {pid for c in candidates if (pid := getattr(c.event.data, "partnership_id", None))}
        async with self.turns.hold(partnership_ids) as turns:
            return await self._decide_alone(candidates, turns)

    async def _decide_alone(self, candidates: list[Candidate], turns: dict[str, int]) -> list[EventResult]:
        events = [c.event for c in candidates]
        identities = [domain.identity(e.source, e.id) for e in events]
        _, pending = await asyncio.gather(  # one round trip: most of the time nothing is held
            self.recorded.sync(turns),
            self.store.pending({i: c.event.source for c, i in zip(candidates, identities, strict=True)
                                if c.held or self.hold}))
        seen = await self.store.recorded(self.recorded.maybe_recorded(identities))  # none asked, mostly
        refs = domain.references(e.data for e, i in zip(events, identities, strict=True) if i not in seen)
        hires = {hire_key(key): key for key in refs.hires}
        refs.hires = {hires[k] for k in self.recorded.maybe_hires(list(hires))}  # the others are new
        facts = await self.store.facts(refs)
        now = datetime.now(UTC)
        results: list[EventResult] = []
        accepted: list[CloudEvent] = []
        holds = Holds()
        expired: list[tuple[Candidate, dict]] = []  # held Kafka events refused at last: dead letters
        for candidate, event_identity in zip(candidates, identities, strict=True):
            event, held = candidate.event, pending.get(event_identity)
            if event_identity in seen or (candidate.held and held is None):  # decided before (or by another replica)
                if candidate.held and held is not None:  # accepted by another path: the hold is over
                    holds.settled[event_identity] = {"status": HeldStatus.ACCEPTED, "decided_at": now}
                results.append(EventResult(id=event.id, status=Outcome.DUPLICATE))
                continue
            if held is not None and not candidate.held:  # sent again while held: still held
                results.append(EventResult(id=event.id, status=Outcome.PENDING, errors=held["errors"]))
                continue
            errors = domain.check(event.data, facts)
            if not errors:
                event = event.model_copy(update={"data": domain.completed(event.data, facts)})
                domain.apply(event.data, facts, event.id)
                facts.records[event_identity] = domain.record_of(event)  # a void later in the group may name it
                seen.add(event_identity)  # the same source and id later in this group is a duplicate
                accepted.append(event)
                results.append(EventResult(id=event.id, status=Outcome.ACCEPTED))
                if candidate.held:
                    holds.settled[event_identity] = {"status": HeldStatus.ACCEPTED, "decided_at": now}
                    HELD_DECIDED.labels(candidate.entry, "accepted").inc()
                continue
            results.append(result := self._hold_or_refuse(candidate, event_identity, held, errors, now, holds, expired))
            if result.status is Outcome.PENDING and held is None:
                pending[event_identity] = holds.new[-1]  # the same event later in this group: pending
        self.recorded.add([domain.identity(e.source, e.id) for e in accepted], [hire_key(h) for h in facts.new_hires])
        publishing = asyncio.ensure_future(self._publish(accepted, expired))
        try:
            await self.store.record(accepted, facts, holds, published=publishing, turns=turns)
        except BaseException as exc:
            publishing.cancel()  # its events, if Kafka has them, are accepted again on retry
            await asyncio.gather(publishing, return_exceptions=True)
            if duplicate_key(exc):  # the filter ruled out an event recorded after all
                self.recorded.distrust()
            raise
        self.recorded.recorded(turns)
        if accepted:
            for listener in self.on_accepted:
                listener({domain.partnership_of(e.data) for e in accepted})
        return results

    async def _publish(self, accepted: list[CloudEvent], expired: list[tuple[Candidate, dict]]) -> None:
        await self.runtime.publish_many(accepted)
        for candidate, settled in expired:
            await self._dead_letter(candidate, settled)

    def _hold_or_refuse(self, candidate: Candidate, event_identity: str, held: dict | None, errors: list[dict],
                        now: datetime, holds: Holds, expired: list[tuple[Candidate, dict]]) -> EventResult:
        """A failed event: held (again) while what it waits for may still arrive within its hold,
        else refused, for good if it was held (a Kafka event's dead letter then in `expired`)."""
        event = candidate.event
        reason = domain.hold_reason(errors)
        deadline = held["deadline"].replace(tzinfo=UTC) if held else now + self.hold
        if reason and now < deadline:
            if held:
                holds.retries[event_identity] = {
                    "errors": errors,
                    "reason": reason,
                    "next_attempt_at": min(deadline, now + self.retry(held["attempts"] + 1)),
                }
            else:
                holds.new.append(held_doc(event, entry=candidate.entry, origin=candidate.origin, errors=errors,
                                          reason=reason, held_at=now + timedelta(microseconds=len(holds.new)),
                                          deadline=deadline, next_attempt_at=min(deadline, now + self.retry(0))))
            return EventResult(id=event.id, status=Outcome.PENDING, errors=errors)
        if candidate.held:
            holds.settled[event_identity] = {"status": HeldStatus.REJECTED, "reason": reason or "rule_violation",
                                             "errors": errors, "decided_at": now}
            HELD_DECIDED.labels(candidate.entry, "rejected").inc()
            if candidate.entry == "kafka":
                expired.append((candidate, holds.settled[event_identity]))
        return EventResult(id=event.id, status=Outcome.REJECTED, errors=errors)

    async def _dead_letter(self, candidate: Candidate, settled: dict) -> None:
        """A held inbound event that never passed: the dead letter a refusal would have been,
        after its hold, with its record's coordinates (-1 where unknown)."""
        event, origin = candidate.event, candidate.origin or {}
        await dead_letter(self.runtime.broker, self.runtime.settings.kafka, body=event.to_json(),
                          key=domain.partnership_of(event.data).encode(), source_topic=origin.get("topic", ""),
                          partition=origin.get("partition", -1), offset=origin.get("offset", -1),
                          service=self.runtime.name, reason=settled["reason"],
                          detail=f"held for {self.hold.total_seconds():.0f} s: {EventError(settled['errors'])}")
