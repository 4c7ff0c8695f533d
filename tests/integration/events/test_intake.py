"""The intake on the real stack: nothing is recorded as accepted unless Kafka acknowledged it,
so a submission that failed half-way is accepted in full on retry; concurrent submissions are
decided in groups exactly as if they had come one after another."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.errors import KafkaConnectionError
from prometheus_client import REGISTRY
from pymongo.errors import PyMongoError

from services.events.domain import identity, record_of
from services.events.intake import Intake, Outcome
from services.events.store import EventsStore, sheets_of
from shared.catalog import ACTIVITIES, OUTCOMES
from shared.contracts import activities as act
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.envelope import CloudEvent, new_event
from shared.kafka import ensure_topics, make_producer, publish_many
from shared.lease import DEFAULT_LEASE, RELEASED
from tests.examples import EXAMPLES, P
from tests.integration.events.conftest import example
from tests.integration.topics import header, read_topic

pytestmark = pytest.mark.integration


class UnreachableProducer:
    async def send(self, *args, **kwargs):
        raise KafkaConnectionError("broker away")


class LateFailingProducer:
    """Kafka failing after a while: by then the group's records are written, not yet committed."""

    async def send(self, *args, **kwargs):
        await asyncio.sleep(0.5)
        raise KafkaConnectionError("broker away")


class SlowProducer:
    """Kafka taking its time: the replica sits between its rules and its record."""

    def __init__(self, producer, seconds: float):
        self.producer, self.seconds = producer, seconds

    async def send(self, *args, **kwargs):
        await asyncio.sleep(self.seconds)
        return await self.producer.send(*args, **kwargs)


class KafkaAwayAWhile:
    """Kafka failing the first events sent (after a while), then back."""

    def __init__(self, producer):
        self.producer, self.back = producer, False

    async def send(self, *args, **kwargs):
        if not self.back:
            await asyncio.sleep(0.3)
            self.back = True
            raise KafkaConnectionError("broker away")
        return await self.producer.send(*args, **kwargs)


class ProducerAfterWrites:
    """Kafka that takes a group's events only once their records are written (not yet committed)."""

    def __init__(self, producer, written: asyncio.Event):
        self.producer, self.written = producer, written

    async def send(self, *args, **kwargs):
        await self.written.wait()
        return await self.producer.send(*args, **kwargs)


class _Runtime:
    """What the intake uses of a service's runtime (shared.service.Runtime): its batch publishing."""

    def __init__(self, producer, kafka_settings):
        self.producer, self.kafka_settings = producer, kafka_settings

    async def publish_many(self, events: list[CloudEvent]) -> None:
        await publish_many(self.producer, self.kafka_settings, events)


def identities(events: list[CloudEvent]) -> list[str]:
    return [identity(e.source, e.id) for e in events]


def _hires(count: int) -> list[CloudEvent]:
    return [new_event(example(out.HireRecorded, hire_id=f"h-{i}", person_id=f"p-{i}"), source="/test")
            for i in range(count)]


@pytest.fixture
async def store(client, mongo_settings) -> EventsStore:
    """The events database with one partnership and its member, as the roster consumer leaves it."""
    store = EventsStore(client[mongo_settings.database_prefix + "events"])
    await store.save_partnership(EXAMPLES[mem.PartnershipCreated])
    await store.member_joined(EXAMPLES[mem.MemberJoined])
    return store


@pytest.mark.parametrize("unreachable", [UnreachableProducer, LateFailingProducer])
async def test_events_are_recorded_only_after_kafka_acknowledged(kafka_settings, store, unreachable):
    runtime = _Runtime(unreachable(), kafka_settings)
    intake = Intake(runtime, store)
    scheduled = new_event(EXAMPLES[act.ActivityScheduled], source="/test")
    completed = new_event(EXAMPLES[act.ActivityCompleted], source="/test")
    with pytest.raises(KafkaConnectionError):
        await intake.submit([scheduled, completed], entry="http")
    assert await store.recorded(identities([scheduled, completed])) == set()
    assert await store.activity(P, "tour-1") is None

    await ensure_topics(kafka_settings)
    async with make_producer(kafka_settings, "events") as runtime.producer:
        results = await intake.submit([scheduled, completed], entry="http")
    assert [r.status for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert (await store.activity(P, "tour-1")).status == "completed"
    assert [header(r, "ce_id") for r in await read_topic(kafka_settings, ACTIVITIES)] == [scheduled.id, completed.id]


async def test_a_groups_records_are_written_while_kafka_takes_its_events(kafka_settings, store, events_producer):
    """The database's work does not wait for Kafka's: the transaction writes while the events are
    published and commits once they are (were the writes after the publish, Kafka here would wait
    for ever)."""
    hires, written = _hires(3), asyncio.Event()
    insert_many = store.accepted.insert_many

    async def insert_and_tell(*args, **kwargs):
        result = await insert_many(*args, **kwargs)
        assert await store.recorded(identities(hires)) == set()  # written, not committed: unseen outside
        written.set()
        return result

    store.accepted.insert_many = insert_and_tell
    intake = Intake(_Runtime(ProducerAfterWrites(events_producer, written), kafka_settings), store)
    results = await asyncio.wait_for(intake.submit(hires, entry="http"), 20)
    assert [r.status for r in results] == [Outcome.ACCEPTED] * 3
    assert await store.recorded(identities(hires)) == set(identities(hires))
    assert sorted(header(r, "ce_id") for r in await read_topic(kafka_settings, OUTCOMES)) == sorted(e.id for e in hires)


def _groups() -> tuple[float, float]:
    """(groups decided, submissions in them) so far in this process."""
    return (REGISTRY.get_sample_value("backbone_events_intake_group_submissions_count") or 0,
            REGISTRY.get_sample_value("backbone_events_intake_group_submissions_sum") or 0)


async def test_concurrent_submissions_are_decided_as_if_one_after_another(kafka_settings, store, events_producer):
    """A tour is scheduled; then, all at once: 30 hires, its cancellation, its completion (which
    a cancelled tour must refuse), the schedule resent and one hire resent. Only arrival order
    decides, whichever submissions end up in one group."""
    intake = Intake(_Runtime(events_producer, kafka_settings), store, max_group_events=10)
    scheduled = new_event(EXAMPLES[act.ActivityScheduled], source="/test")
    hires = _hires(30)
    cancelled = new_event(EXAMPLES[act.ActivityCancelled], source="/test")
    completed = new_event(EXAMPLES[act.ActivityCompleted], source="/test")
    submissions = ([[scheduled]] + [[h] for h in hires[:15]] + [[cancelled], [completed], [scheduled]]
                   + [[h] for h in hires[15:]] + [[hires[3]]])
    before = _groups()
    tasks = [asyncio.create_task(intake.submit(s, entry="http")) for s in submissions]  # in arrival order
    results = [r for rs in await asyncio.gather(*tasks) for r in rs]
    groups, decided = (after - b for after, b in zip(_groups(), before, strict=True))

    statuses = [r.status for r in results]
    assert statuses == ([Outcome.ACCEPTED] * 17 + [Outcome.REJECTED, Outcome.DUPLICATE]
                        + [Outcome.ACCEPTED] * 15 + [Outcome.DUPLICATE])
    assert results[17].errors[0]["field"] == "data.activity_id"
    assert decided == len(submissions) and 1 < groups < len(submissions)  # grouped, none above 10 events
    assert (await store.activity(P, "tour-1")).status == "cancelled"
    assert await store.recorded(identities(hires)) == set(identities(hires))
    assert [header(r, "ce_id") for r in await read_topic(kafka_settings, ACTIVITIES)] == [scheduled.id, cancelled.id]
    assert sorted(header(r, "ce_id") for r in await read_topic(kafka_settings, OUTCOMES)) == sorted(e.id for e in hires)


async def test_a_failed_group_fails_every_submission_in_it(kafka_settings, store):
    intake = Intake(_Runtime(UnreachableProducer(), kafka_settings), store)
    hires = _hires(5)
    outcomes = await asyncio.gather(*(intake.submit([h], entry="http") for h in hires), return_exceptions=True)
    assert all(isinstance(o, KafkaConnectionError) for o in outcomes), outcomes
    assert await store.recorded(identities(hires)) == set()


async def test_a_cancelled_turn_leaves_its_group_to_the_next(kafka_settings, store, events_producer):
    """A client that goes away mid-decision cancels its own turn, not the submissions it had
    taken along: the next in line decides them. Here the group of `taker` and `rest` is being
    decided ahead while `first`'s is stored, and hangs; `taker` holds the turn, waiting for it."""
    calls, stuck = 0, asyncio.Event()
    recorded = store.recorded

    async def second_decision_hangs(ids):
        nonlocal calls
        calls += 1
        if calls == 2:
            stuck.set()
            await asyncio.Event().wait()
        return await recorded(ids)

    store.recorded = second_decision_hangs
    intake = Intake(_Runtime(events_producer, kafka_settings), store)
    hires = _hires(4)
    first, taker, *rest = [asyncio.create_task(intake.submit([h], entry="http")) for h in hires]
    await asyncio.wait_for(stuck.wait(), 20)
    assert [r.status for [r] in [await asyncio.wait_for(first, 20)]] == [Outcome.ACCEPTED]
    for _ in range(20):  # the turn passes to `taker`, which waits for its group's decision
        await asyncio.sleep(0)
    taker.cancel()
    decided = await asyncio.wait_for(asyncio.gather(*rest), 20)
    assert [r.status for [r] in decided] == [Outcome.ACCEPTED] * 2
    with pytest.raises(asyncio.CancelledError):
        await taker
    # Its caller got no answer; its event went through with the others (a retry is a duplicate).
    assert await recorded(identities(hires)) == set(identities(hires))
    assert [header(r, "ce_id") for r in await read_topic(kafka_settings, OUTCOMES)] == [h.id for h in hires]


def _ahead() -> dict[str, float]:
    return {outcome: REGISTRY.get_sample_value("backbone_events_groups_ahead_total", {"outcome": outcome}) or 0.0
            for outcome in ("ahead", "after", "redone")}


def _since(before: dict[str, float]) -> dict[str, float]:
    return {outcome: n - before[outcome] for outcome, n in _ahead().items()}


async def test_the_next_group_is_decided_while_one_is_stored_and_stored_after_it(kafka_settings, store,
                                                                                events_producer):
    """While a group is stored (Kafka slow here), the next in line, which reads nothing it
    changes, is decided: then published and stored after it, in arrival order."""
    intake = Intake(_Runtime(SlowProducer(events_producer, 0.3), kafka_settings), store)
    hires, before = _hires(6), _ahead()
    first, second = [asyncio.create_task(intake.submit(group, entry="http")) for group in (hires[:3], hires[3:])]
    assert [r.status for r in await first + await second] == [Outcome.ACCEPTED] * 6
    assert _since(before) == {"ahead": 1, "after": 0, "redone": 0}
    assert await store.recorded(identities(hires)) == set(identities(hires))
    assert [header(r, "ce_id") for r in await read_topic(kafka_settings, OUTCOMES)] == [h.id for h in hires]


async def test_a_group_reading_what_the_one_stored_changes_is_decided_after_it(kafka_settings, store,
                                                                              events_producer):
    """A retention check of a hire being stored, and that hire again: decided once it is stored,
    so the check finds the hire and the hire is a duplicate."""
    intake = Intake(_Runtime(SlowProducer(events_producer, 0.3), kafka_settings), store)
    [hire] = _hires(1)
    check = new_event(example(out.RetentionChecked, hire_id="h-0", person_id="p-0"), source="/test")
    before = _ahead()
    first, second = [asyncio.create_task(intake.submit(group, entry="http")) for group in ([hire], [check, hire])]
    assert [r.status for r in await first + await second] == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.DUPLICATE]
    assert _since(before) == {"ahead": 0, "after": 1, "redone": 0}


async def test_a_group_decided_ahead_is_decided_again_when_the_one_stored_fails(kafka_settings, store,
                                                                               events_producer):
    """Kafka fails the group being stored: the group decided meanwhile is decided again in its
    own turn (the failed group's turn is given up), and goes through once Kafka is back."""
    intake = Intake(_Runtime(KafkaAwayAWhile(events_producer), kafka_settings), store)
    hires, before = _hires(4), _ahead()
    first, second = [asyncio.create_task(intake.submit(group, entry="http")) for group in (hires[:2], hires[2:])]
    with pytest.raises(KafkaConnectionError):
        await first
    assert [r.status for r in await second] == [Outcome.ACCEPTED] * 2
    assert _since(before) == {"ahead": 1, "after": 0, "redone": 1}
    assert await store.recorded(identities(hires)) == set(identities(hires[2:]))
    assert [header(r, "ce_id") for r in await read_topic(kafka_settings, OUTCOMES)] == [h.id for h in hires[2:]]


async def test_a_group_decided_ahead_whose_turn_passed_is_decided_again(kafka_settings, store, events_producer):
    """The group decided ahead is left waiting (its caller went away), the turn is given up once
    idle, and a later submission finds that group first in line: decided again, in the new turn."""
    intake = Intake(_Runtime(SlowProducer(events_producer, 0.3), kafka_settings), store,
                    keep_turn=timedelta(seconds=0.05))
    hires, before = _hires(3), _ahead()
    first, second = [asyncio.create_task(intake.submit([hire], entry="http")) for hire in hires[:2]]
    async with asyncio.timeout(20):
        while _since(before)["ahead"] < 1:
            await asyncio.sleep(0.01)
    second.cancel()
    assert [r.status for r in await first] == [Outcome.ACCEPTED]
    async with asyncio.timeout(20):
        while (await store.turns.collection.find_one({"_id": P}))["until"].replace(tzinfo=UTC) > RELEASED:
            await asyncio.sleep(0.01)
    assert [r.status for r in await intake.submit(hires[2:], entry="http")] == [Outcome.ACCEPTED]
    assert _since(before) == {"ahead": 2, "after": 0, "redone": 1}  # the later one ahead of it, in the new turn
    turns = {s["identities"][0]: s["turn"] async for s in store.accepted.find({}, {"turn": 1, "identities": 1})}
    assert turns == dict(zip(identities(hires), [1, 2, 2], strict=True))  # the second in the turn it was stored in


@pytest.mark.parametrize("lease, kafka_seconds", [(DEFAULT_LEASE, 0.5), (timedelta(seconds=0.6), 2.0)],
                         ids=["within_the_lease", "kafka_slower_than_the_lease"])
async def test_replicas_take_turns_per_partnership(lease, kafka_seconds, kafka_settings, mongo_settings, client,
                                                   store, events_producer):
    """Two replicas on one database: one asked to cancel a scheduled tour, the other to complete
    it, at once. The second waits for the first's turn and sees the tour cancelled. With Kafka
    slower than the whole lease, the heartbeat keeps the turn: the other decides after, never in between."""
    db = client[mongo_settings.database_prefix + "events"]
    slow = Intake(_Runtime(SlowProducer(events_producer, kafka_seconds), kafka_settings), EventsStore(db, lease))
    quick = Intake(_Runtime(events_producer, kafka_settings), EventsStore(db, lease))
    scheduled = new_event(EXAMPLES[act.ActivityScheduled], source="/test")
    cancelled = new_event(EXAMPLES[act.ActivityCancelled], source="/test")
    completed = new_event(EXAMPLES[act.ActivityCompleted], source="/test")
    assert [r.status for r in await quick.submit([scheduled], entry="http")] == [Outcome.ACCEPTED]

    cancelling = asyncio.create_task(slow.submit([cancelled], entry="http"))
    async with asyncio.timeout(20):
        while not await store.turns.collection.find_one({"_id": P, "holder": slow.replica}):
            await asyncio.sleep(0.01)
    [refused] = await quick.submit([completed], entry="http")
    [accepted] = await cancelling
    assert (accepted.status, refused.status) == (Outcome.ACCEPTED, Outcome.REJECTED)
    assert refused.errors[0]["field"] == "data.activity_id"
    assert (await store.activity(P, "tour-1")).status == "cancelled"
    assert [header(r, "ce_id") for r in await read_topic(kafka_settings, ACTIVITIES)] == [scheduled.id, cancelled.id]


async def test_a_burst_of_groups_keeps_the_turn_and_another_replica_follows_it(kafka_settings, store,
                                                                               events_producer):
    """Groups back to back take the partnership's turn once and write under one turn number; a
    replica wanting the turn meanwhile waits for the burst to end (the turn kept no longer than
    `keep_turn` after its last group), then decides against everything the burst recorded."""
    keeping = Intake(_Runtime(events_producer, kafka_settings), store, keep_turn=timedelta(seconds=1))
    other = Intake(_Runtime(events_producer, kafka_settings), store)
    await asyncio.gather(keeping.recorded.load(), other.recorded.load())
    hires = _hires(4)
    for hire in hires[:3]:
        assert [r.status for r in await keeping.submit([hire], entry="http")] == [Outcome.ACCEPTED]
    lease = await store.turns.collection.find_one({"_id": P})
    assert (lease["holder"], lease["taken"]) == (keeping.replica, 1)
    waiting = asyncio.create_task(other.submit(hires[2:], entry="http"))
    [result] = await keeping.submit([hires[3]], entry="http")  # still its turn: the other waits
    assert result.status == Outcome.ACCEPTED
    assert [r.status for r in await asyncio.wait_for(waiting, 20)] == [Outcome.DUPLICATE] * 2
    assert [s["turn"] async for s in store.accepted.find({}, {"turn": 1})] == [1] * 4
    assert (await store.turns.collection.find_one({"_id": P}))["taken"] == 2


async def test_a_turn_held_by_a_dead_replica_passes_when_its_lease_runs_out(kafka_settings, store, events_producer):
    # What a replica that died in its turn leaves behind.
    await store.turns.collection.insert_one(
        {"_id": P, "holder": "gone", "until": datetime.now(UTC) + timedelta(seconds=3)}
    )
    intake = Intake(_Runtime(events_producer, kafka_settings), store)
    hire = new_event(example(out.HireRecorded, hire_id="h-late"), source="/test")
    submitting = asyncio.create_task(intake.submit([hire], entry="http"))
    await asyncio.sleep(0.3)
    assert not submitting.done()  # waiting for the lease
    [result] = await asyncio.wait_for(submitting, 20)
    assert result.status == Outcome.ACCEPTED


async def test_a_held_event_that_no_longer_parses_is_refused_for_good(kafka_settings, store, events_producer):
    intake = Intake(_Runtime(events_producer, kafka_settings), store, hold=timedelta(minutes=15))
    hire = new_event(example(out.HireRecorded, employer_id="acme"), source="/test")
    [held] = await intake.submit([hire], entry="http")
    assert (held.status, held.errors[0]["reason"]) == (Outcome.PENDING, "unknown_organisation")
    await store.held.update_one({}, {"$set": {"event": '{"specversion": "1.0"}'}})  # as a tightened contract reads it
    later = datetime.now(UTC) + timedelta(hours=1)
    await intake.decide_held(await store.due(later, 10))
    refused = await store.status(P, identity(hire.source, hire.id))
    assert (refused["status"], refused["reason"]) == ("rejected", "invalid_event")
    assert await store.due(later, 10) == []  # never tried again


def _answers(check: str, answer: str) -> float:
    return REGISTRY.get_sample_value("backbone_events_recorded_filter_answers_total",
                                     {"check": check, "answer": answer}) or 0.0


async def test_each_replicas_filter_rules_out_new_events_yet_sees_what_the_other_recorded(
        kafka_settings, mongo_settings, client, store, events_producer):
    """Two replicas on one database, each with its filter of what is recorded loaded: new events
    are ruled out without a lookup, and what one records the other finds (in the sheets of the
    partnership's turns it has not seen): the same events are duplicates there, the same hire id
    is refused, and the hire's retention check passes. Each keeps its turn through its burst."""
    db = client[mongo_settings.database_prefix + "events"]
    one, other = (Intake(_Runtime(events_producer, kafka_settings), EventsStore(db), keep_turn=timedelta(minutes=1))
                  for _ in range(2))
    await asyncio.gather(one.recorded.load(), other.recorded.load())
    hires = _hires(3)
    ruled_out = _answers("identity", "new"), _answers("hire", "new")
    assert [r.status for r in await one.submit(hires, entry="http")] == [Outcome.ACCEPTED] * 3
    assert (_answers("identity", "new"), _answers("hire", "new")) == (ruled_out[0] + 3, ruled_out[1] + 3)
    await one.turns.release()  # its burst is over

    assert [r.status for r in await other.submit(hires, entry="http")] == [Outcome.DUPLICATE] * 3
    again = new_event(example(out.HireRecorded, hire_id="h-0", person_id="p-0"), source="/test")
    [refused] = await other.submit([again], entry="http")
    assert (refused.status, refused.errors[0]["field"]) == (Outcome.REJECTED, "data.hire_id")
    check = new_event(example(out.RetentionChecked, hire_id="h-1", person_id="p-1"), source="/test")
    [checked] = await other.submit([check], entry="http")
    assert checked.status == Outcome.ACCEPTED
    await other.turns.release()
    [copy] = await one.submit([check], entry="http")  # and back: the other's record is seen here
    assert copy.status == Outcome.DUPLICATE
    assert {s["turn"] async for s in store.accepted.find({}, {"turn": 1})} == {1, 2}  # each sheet names its turn
    await one.turns.release()
    ids = [header(r, "ce_id") for r in await read_topic(kafka_settings, OUTCOMES)]
    assert ids == [h.id for h in hires] + [check.id]  # each once in Kafka


async def test_a_filter_loaded_at_start_holds_what_was_recorded_before(kafka_settings, store, events_producer):
    earlier = Intake(_Runtime(events_producer, kafka_settings), store)
    hires = _hires(2)
    await earlier.submit(hires, entry="http")
    started = Intake(_Runtime(events_producer, kafka_settings), store)
    await started.recorded.load()
    assert started.recorded.maybe_recorded(identities(hires)) == identities(hires)
    assert [r.status for r in await started.submit(hires, entry="http")] == [Outcome.DUPLICATE] * 2


async def test_a_record_the_filter_could_not_know_is_caught_by_the_unique_index(kafka_settings, store,
                                                                                 events_producer):
    """A record no numbered turn announced (an old replica's, during a rollout): the filter rules the
    event out, the unique index refuses its record, nothing is accepted, and the filter is
    distrusted: the retry looks it up and finds the duplicate."""
    await store.setup()  # the unique index of identities
    intake = Intake(_Runtime(events_producer, kafka_settings), store)
    await intake.recorded.load()
    reloads = []
    intake.recorded.wake = lambda: reloads.append(True)
    [hire] = _hires(1)
    await store.accepted.insert_many(sheets_of([record_of(hire)]))  # no turn: as a replica from before wrote it
    with pytest.raises(PyMongoError):
        await intake.submit([hire], entry="http")
    assert intake.recorded.synced is None and reloads == [True]
    assert [r.status for r in await intake.submit([hire], entry="http")] == [Outcome.DUPLICATE]
    await intake.recorded.load()
    assert intake.recorded.maybe_recorded(identities([hire])) == identities([hire])
