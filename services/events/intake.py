"""The one path every submitted event takes, from HTTP or from backbone.inbound: duplicate
check, rules, publish to its catalogue topic with acks=all, and record it as accepted in a
transaction written meanwhile and committed once Kafka has acknowledged. An event that only waits
for something to arrive (`domain.hold_reason`) is held in MongoDB instead, and decided again on
the same path (see services/events/holds.py) until it passes or its hold ends."""

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field

from services.events import domain
from services.events.domain import Facts
from services.events.recorded import RecordedFilter
from services.events.store import EventsStore, HeldStatus, Holds, held_doc, hire_key
from shared.envelope import CloudEvent, EventError, identity, parse_event
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
DECIDED_AHEAD = Counter(
    "backbone_events_groups_ahead_total",
    "Groups of submissions next in line while a group was stored: decided meanwhile (ahead), left for their "
    "turn because they read what it changes or name another partnership (after), or decided ahead and again "
    "because the turn passed meanwhile or the group before failed (redone)", ["outcome"])
for _outcome in ("ahead", "after", "redone"):
    DECIDED_AHEAD.labels(_outcome)
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


def _answer(group: list[_Submission], outcome: list[EventResult] | Exception) -> None:
    """Each submission's results (the group's, in order), or why the whole group failed."""
    results = iter(outcome) if isinstance(outcome, list) else None
    for submission in group:
        answer = [next(results) for _ in submission.candidates] if results is not None else None
        if submission.decided.done():  # answered once stored, whatever its turn's holder did next
            continue
        if isinstance(outcome, Exception):
            submission.decided.set_exception(outcome)
        else:
            submission.decided.set_result(answer)


def _partnerships(candidates: list[Candidate]) -> set[str]:
    return {pid for c in candidates if (pid := getattr(c.event.data, "partnership_id", None))}


@dataclass
class _Decision:
    """A group decided in its partnerships' `turns`, not yet published or stored."""

    turns: dict[str, int]
    facts: Facts
    results: list[EventResult] = field(default_factory=list)
    accepted: list[CloudEvent] = field(default_factory=list)
    holds: Holds = field(default_factory=Holds)
    expired: list[tuple[Candidate, dict]] = field(default_factory=list)  # held Kafka events refused: dead letters
    changed: set[tuple[str, object]] = field(default_factory=set)  # `domain.changed_by`


@dataclass
class _Ahead:
    """The next group in line, decided while the one before it is stored, to store next."""

    group: list[_Submission]
    deciding: asyncio.Future[_Decision]


async def _decided(ahead: asyncio.Future[_Decision]) -> _Decision | None:
    """A decision made ahead, or None if making it failed (made again in its turn, failing there
    for its callers if the cause lasts)."""
    try:
        return await ahead
    except Exception:  # noqa: BLE001
        return None


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
    if they had come one after another. The HTTP API and the inbound consumer share the turn.

    Storing a group is most of its time (the database's index work for its records). Meanwhile
    the next group in line is decided ahead, when nothing it reads is what the group being stored
    changes (`domain.read_by`, `domain.changed_by`): its rules then come out the same whether that
    group is stored yet or not. It is published and stored after that group, in arrival order;
    one that reads what it changes waits, as before (new hires 1.16x-1.22x quicker on two hosts,
    resent batches 0.91x-0.93x; bench/README.md)."""

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
        self._ahead: _Ahead | None = None
        self._arrived = asyncio.Event()  # a submission joined those waiting
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
        self._arrived.set()
        while not submission.decided.done():
            if await self._take_turn(submission.decided):  # else answered by the turn's holder
                try:
                    while not submission.decided.done():  # else an earlier turn took it along
                        await self._decide_group()
                finally:
                    self._turn.release()
        return submission.decided.result()

    async def _take_turn(self, answered: asyncio.Future) -> bool:
        """Wait for the turn, or for an answer from the turn's holder: whether the turn was taken.
        A group's callers are answered once it is stored, while its holder decides the next."""
        if not self._turn.locked():
            return await self._turn.acquire()  # at once
        turn = asyncio.ensure_future(self._turn.acquire())
        try:
            await asyncio.wait([turn, answered], return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            if not turn.cancel() and not turn.cancelled():  # taken as the caller went away
                self._turn.release()
            raise
        return not turn.cancel() and not turn.cancelled()  # else no longer waited for

    async def _decide_group(self) -> None:
        ahead, self._ahead = self._ahead, None
        group = ahead.group if ahead else self._next_group()
        GROUP_SUBMISSIONS.observe(len(group))
        try:
            await self._decide(group, ahead.deciding if ahead else None)
        except asyncio.CancelledError:
            self._waiting.extendleft(reversed([s for s in group if not s.decided.done()]))  # the next turn decides them
            raise
        except Exception as exc:  # noqa: BLE001 - Kafka or MongoDB away: each caller re-raises it and retries
            _answer(group, exc)

    def _next_group(self) -> list[_Submission]:
        group = [self._waiting.popleft()]
        size = len(group[0].candidates)
        while self._waiting and size + len(self._waiting[0].candidates) <= self.max_group_events:
            size += len(self._waiting[0].candidates)
            group.append(self._waiting.popleft())
        return group

    async def _decide(self, group: list[_Submission], ahead: asyncio.Future[_Decision] | None) -> None:
        """Decide the group (unless it was decided `ahead`, in the turn held still), then publish
        and store it, and meanwhile start deciding the next group ahead if it can be (`_following`)."""
        candidates = [c for s in group for c in s.candidates]
        async with self.turns.hold(_partnerships(candidates)) as turns:
            decision = await _decided(ahead) if ahead else None
            if decision is not None and decision.turns != turns:  # the turn passed meanwhile
                decision = None
            if ahead and decision is None:
                DECIDED_AHEAD.labels("redone").inc()
            decision = decision or await self._decision(candidates, turns)
            storing = asyncio.ensure_future(self._store(group, decision))
            following = None
            try:
                following = await self._following(decision, storing)
                await storing
            except BaseException:
                for task in (storing, following and following.deciding):
                    if task:
                        task.cancel()
                        await asyncio.gather(task, return_exceptions=True)
                if following:  # decided in a turn that passes now: decided again in the next
                    DECIDED_AHEAD.labels("redone").inc()
                    self._waiting.extendleft(reversed(following.group))
                raise
            self._ahead = following  # the next to hold the turn stores it, once decided

    async def _following(self, decision: _Decision, storing: asyncio.Future) -> _Ahead | None:
        """The next group in line (once one arrives, while `decision`'s group is `storing`), being
        decided then: decided in the same turns, it reads nothing that group changes, so the group
        being stored or not makes no difference to it. Else it is decided in its turn, once that
        group is stored."""
        while not self._waiting:
            if storing.done():
                return None
            self._arrived.clear()
            arrival = asyncio.ensure_future(self._arrived.wait())
            try:
                await asyncio.wait([storing, arrival], return_when=asyncio.FIRST_COMPLETED)
            finally:
                arrival.cancel()
        group = self._next_group()
        candidates = [c for s in group for c in s.candidates]
        events = [c.event for c in candidates]
        reads = domain.read_by(domain.references(e.data for e in events), [identity(e.source, e.id) for e in events])
        partnerships = _partnerships(candidates)
        if partnerships <= decision.turns.keys() and not reads & decision.changed:
            DECIDED_AHEAD.labels("ahead").inc()
            turns = {pid: decision.turns[pid] for pid in partnerships}
            return _Ahead(group, asyncio.ensure_future(self._decision(candidates, turns)))
        DECIDED_AHEAD.labels("after").inc()
        self._waiting.extendleft(reversed(group))
        return None

    async def _decision(self, candidates: list[Candidate], turns: dict[str, int]) -> _Decision:
        """Each event's result by the rules, against the state stored and the group's earlier events."""
        events = [c.event for c in candidates]
        identities = [identity(e.source, e.id) for e in events]
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
        decision = _Decision(turns, facts)
        holds = decision.holds
        for candidate, event_identity in zip(candidates, identities, strict=True):
            event, held = candidate.event, pending.get(event_identity)
            if event_identity in seen or (candidate.held and held is None):  # decided before (or by another replica)
                if candidate.held and held is not None:  # accepted by another path: the hold is over
                    holds.settled[event_identity] = {"status": HeldStatus.ACCEPTED, "decided_at": now}
                decision.results.append(EventResult(id=event.id, status=Outcome.DUPLICATE))
                continue
            if held is not None and not candidate.held:  # sent again while held: still held
                decision.results.append(EventResult(id=event.id, status=Outcome.PENDING, errors=held["errors"]))
                continue
            errors = domain.check(event.data, facts)
            if not errors:
                event = event.model_copy(update={"data": domain.completed(event.data, facts)})
                domain.apply(event.data, facts, event.id)
                facts.records[event_identity] = domain.record_of(event)  # a void later in the group may name it
                seen.add(event_identity)  # the same source and id later in this group is a duplicate
                decision.accepted.append(event)
                decision.results.append(EventResult(id=event.id, status=Outcome.ACCEPTED))
                if candidate.held:
                    holds.settled[event_identity] = {"status": HeldStatus.ACCEPTED, "decided_at": now}
                    HELD_DECIDED.labels(candidate.entry, "accepted").inc()
                continue
            decision.results.append(result := self._hold_or_refuse(candidate, event_identity, held, errors, now,
                                                                   holds, decision.expired))
            if result.status is Outcome.PENDING and held is None:
                pending[event_identity] = holds.new[-1]  # the same event later in this group: pending
        decision.changed = domain.changed_by(facts, identities)
        return decision

    async def _store(self, group: list[_Submission], decision: _Decision) -> None:
        """Publish the accepted events and store the decision, then answer the group's callers
        (here, so that an answer once stored is never lost to the turn's holder being cancelled)."""
        accepted, facts = decision.accepted, decision.facts
        self.recorded.add([identity(e.source, e.id) for e in accepted], [hire_key(h) for h in facts.new_hires])
        publishing = asyncio.ensure_future(self._publish(accepted, decision.expired))
        try:
            await self.store.record(accepted, facts, decision.holds, published=publishing, turns=decision.turns)
        except BaseException as exc:
            publishing.cancel()  # its events, if Kafka has them, are accepted again on retry
            await asyncio.gather(publishing, return_exceptions=True)
            if duplicate_key(exc):  # the filter ruled out an event recorded after all
                self.recorded.distrust()
            if isinstance(exc, Exception):
                _answer(group, exc)
            raise
        self.recorded.recorded(decision.turns)
        if accepted:
            for listener in self.on_accepted:
                listener({domain.partnership_of(e.data) for e in accepted})
        _answer(group, decision.results)

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
