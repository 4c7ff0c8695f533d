"""Metrics rollup throughput on the real local broker and database.

Pushes N mixed domain events (a program year of a dozen partnerships, in time order, with a few
resends) through the Kafka-protocol broker, then measures in the same run:
  raw     plain aiokafka consumption of the same topics (an upper bound: no work at all)
  raw + validating  the same, validating each record as the rollup does and nothing else
  raw + validating + recording  also folding each record into facts in memory, as the rollup
          does; no dedupe, nothing stored: the ceiling of this validation and fact model in
          one process
  rollup  the metrics service's consumer: parse, dedupe, fold, one transaction per batch (stored
          while the next batch is parsed), until every KPI fact and offset is stored; the
          ceiling and the rollup take turns, --passes times, each rollup compared with the
          ceiling pass just before it
  naive   one MongoDB write per event (a straightforward per-message subscriber), on a prefix
Each clock starts at the first record fetched, so consumer-group joins are not counted.
Afterwards the stored KPIs are checked against a fresh computation over the distinct events.

    .venv/bin/python bench/rollup.py [--events 100000] [--naive-events 5000] [--batch 20000] [--passes 5]
"""

import argparse
import asyncio
import gc
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

from cli.stack import Endpoints, LocalStack  # noqa: E402
from services.metrics import domain, kpis  # noqa: E402
from services.metrics import rollup as rollup_module  # noqa: E402
from services.metrics.rollup import SOURCES  # noqa: E402
from services.metrics.store import MetricsStore  # noqa: E402
from shared.catalog import event_type_of  # noqa: E402
from shared.contracts import activities as act  # noqa: E402
from shared.contracts import demand as dem  # noqa: E402
from shared.contracts import membership as mem  # noqa: E402
from shared.contracts import outcomes as out  # noqa: E402
from shared.envelope import CloudEvent, new_event, parse_plain  # noqa: E402
from shared.kafka import ensure_topics  # noqa: E402
from shared.mongo import make_client  # noqa: E402
from shared.periods import parse_period  # noqa: E402
from shared.settings import KafkaSettings, MongoSettings  # noqa: E402

PY_START = date(2025, 7, 1)
KINDS = ["employer"] * 6 + ["education", "training_provider", "chamber", "workforce_board"]


def scenario(n: int, partnerships: int, seed: int = 7, year_start: date = PY_START) -> list[CloudEvent]:
    """A program year of events in time order: roster first, then activities and outcomes. Ids
    carry the year, so the scenarios of several years are one history."""
    rnd = random.Random(seed)
    year = f"{year_start.year}-"
    pids = [f"rsp-{i:02d}" for i in range(partnerships)]
    events: list[CloudEvent] = []

    def emit(data, when: datetime) -> None:
        events.append(new_event(data, source="/bench", time=when))

    t0 = datetime(year_start.year, 7, 1, 8, tzinfo=UTC)
    for i, pid in enumerate(pids):
        emit(mem.PartnershipCreated(partnership_id=pid, name=f"Partnership {i}", region_id=f"region-{i % 4}",
                                    sector_id=f"sector-{i % 3}", stage="launched"), t0)
        for m in range(30):
            emit(mem.MemberJoined(partnership_id=pid, membership_id=f"m-{m}", organisation_id=f"org-{i}-{m}",
                                  organisation_kind=KINDS[m % len(KINDS)], role="member",
                                  joined_on=date(year_start.year - 1, 1, 1) + timedelta(days=m * 17)), t0)
        emit(mem.TargetSet(partnership_id=pid, kpi="hires", period=f"PY{year_start.year}",
                           value=n // partnerships // 8), t0)
    hires: dict[str, list[tuple[str, date]]] = {pid: [] for pid in pids}
    mix = [("hire", 20), ("retention", 15), ("separation", 2), ("placement", 7), ("enrolled", 8), ("completed", 7),
           ("credential", 5), ("apprenticeship", 3), ("activity", 10), ("attendance", 15), ("survey", 5), ("resend", 3)]
    kinds, weights = zip(*mix, strict=True)
    count = n - len(events)
    for k in range(count):
        day = year_start + timedelta(days=364 * k // count)
        when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        pid = rnd.choice(pids)
        p = rnd.randrange(10_000)
        org = f"org-{pids.index(pid)}-{rnd.randrange(30)}"
        kind = rnd.choices(kinds, weights)[0]
        if kind == "resend" and events:
            events.append(events[rnd.randrange(max(0, len(events) - 2000), len(events))])
        elif kind == "hire" or (kind in ("retention", "separation") and not hires[pid]):
            hire_id = f"h-{year}{k}"
            hires[pid].append((hire_id, day))
            emit(out.HireRecorded(partnership_id=pid, hire_id=hire_id, person_id=f"p-{p}", employer_id=org,
                                  soc_code="51-4041", start_date=day, hourly_wage=15 + rnd.randrange(100) / 4,
                                  resident=rnd.random() < 0.7, career_changer=rnd.random() < 0.2), when)
        elif kind in ("retention", "separation"):
            hire_id, _ = rnd.choice(hires[pid])
            if kind == "retention":
                emit(out.RetentionChecked(partnership_id=pid, hire_id=hire_id, person_id=f"p-{p}", employer_id=org,
                                          checked_on=day, still_employed=rnd.random() < 0.85), when)
            else:
                emit(out.SeparationRecorded(partnership_id=pid, hire_id=hire_id, person_id=f"p-{p}",
                                            employer_id=org, separated_on=day), when)
        elif kind == "placement":
            emit(out.PlacementRecorded(partnership_id=pid, placement_id=f"pl-{year}{k}", person_id=f"p-{p}",
                                       programme_id="mpi", provider_id="college", employer_id=org,
                                       soc_code="51-2092", start_date=day), when)
        elif kind == "enrolled":
            emit(out.TrainingEnrolled(partnership_id=pid, person_id=f"p-{p}", programme_id="mpi",
                                      provider_id="college", enrolled_on=day), when)
        elif kind == "completed":
            emit(out.TrainingCompleted(partnership_id=pid, person_id=f"p-{p}", programme_id="mpi",
                                       provider_id="college", completed_on=day), when)
        elif kind == "credential":
            emit(out.CredentialEarned(partnership_id=pid, person_id=f"p-{p}", credential="NIMS Level I",
                                      provider_id="college", earned_on=day), when)
        elif kind == "apprenticeship":
            emit(out.ApprenticeshipStarted(partnership_id=pid, person_id=f"p-{p}", employer_id=org,
                                           soc_code="51-4041", started_on=day), when)
        elif kind == "activity":
            activity = rnd.choice(["plant_tour", "career_day", "hiring_event", "partnership_meeting"])
            emit(act.ActivityCompleted(partnership_id=pid, activity_id=f"a-{year}{k}", kind=activity, completed_at=when,
                                       participant_ids=[org, f"org-{pids.index(pid)}-{rnd.randrange(30)}"]), when)
        elif kind == "attendance":
            activity = rnd.choice(["plant_tour", "career_day", "hiring_event", "partnership_meeting"])
            emit(act.AttendanceRecorded(partnership_id=pid, activity_id=f"a-{year}{k}", kind=activity,
                                        counts={"students": rnd.randrange(40), "employers": rnd.randrange(8),
                                                "public_partners": rnd.randrange(5)},
                                        organisation_ids=[org]), when)
        else:
            emit(dem.DemandSurveyResponded(partnership_id=pid, survey_round=f"{year_start.year + 1}-spring",
                                           employer_id=org,
                                           responded_on=day, openings=[dem.ExpectedOpenings(
                                               soc_code=rnd.choice(["51-4041", "51-2092", "17-2112"]),
                                               openings=rnd.randrange(1, 9))]), when)
    return events


async def produce_chunks(kafka: KafkaSettings, chunks: Iterable[Callable[[], list[CloudEvent]]]) -> int:
    """Generates and produces one chunk of events at a time (the bench's own memory stays bounded);
    returns how many were produced."""
    total = 0
    for chunk in chunks:
        events = chunk()
        await produce(kafka, events)
        total += len(events)
        del events
        gc.collect()
    return total


async def produce(kafka: KafkaSettings, events: list[CloudEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        pending = []
        for e in events:
            kind = event_type_of(e.data)
            pending.append(await producer.send(kafka.topic(kind.topic.name), e.to_json(),
                                               key=kind.partition_key(e.data)))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _consumer(kafka: KafkaSettings, group: str) -> AIOKafkaConsumer:
    """A group consumer of the topics the metrics service reads, configured as the service's."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=kafka.namespace + group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                session_timeout_ms=kafka.session_timeout_ms,
                                heartbeat_interval_ms=kafka.heartbeat_interval_ms)
    consumer.subscribe([kafka.topic(t.name) for t in SOURCES])
    return consumer


async def measure_raw(kafka: KafkaSettings, total: int, batch: int, group: str,
                      work: Callable[[bytes], object] | None = None) -> float:
    """Plain consumption; with `work`, plus that on each record's value and nothing else."""
    consumer = _consumer(kafka, group)
    await consumer.start()
    try:
        seen, started = 0, None
        while seen < total:
            records = await consumer.getmany(timeout_ms=200, max_records=batch)
            if records and started is None:
                started = time.perf_counter()
            for partition in records.values():
                if work is not None:
                    for record in partition:
                        work(record.value)
                seen += len(partition)
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def measure_ceiling(kafka: KafkaSettings, total: int, batch: int, group: str) -> float:
    """raw + validating + recording: each record validated and its facts recorded in memory,
    nothing deduplicated or stored."""
    cells = domain.Cells()
    return await measure_raw(kafka, total, batch, group, lambda value: domain.record(parse_plain(value), cells))


async def measure_rollup(kafka: KafkaSettings, store: MetricsStore, total: int, batch: int,
                         group: str, module: ModuleType = rollup_module) -> tuple[float, int]:
    """Events/s of `module`'s Rollup (this tree's, or an earlier one: bench/rollup_ab.py) until every
    record's facts and offset are stored, and how many batches it took. A rollup without `take`
    (before 1607146) is run batch by batch with `process`, as it was then."""
    await store.setup()
    consumer = _consumer(kafka, group)
    rollup = module.Rollup(consumer, store, kafka, role="current", version=await store.version())
    consumer.subscribe(list(consumer.subscription()), listener=module.Rebalance(rollup))  # as the service does
    pipelined = hasattr(rollup, "take")
    await consumer.start()
    try:
        started, batches = None, 0
        while True:  # as the service's consumer: each batch stored while the next is parsed
            if sum([await consumer.position(tp) for tp in consumer.assignment()]) >= total:
                if pipelined:
                    async with rollup.lock:  # every record fetched: wait for the last batch, not for more
                        await rollup.settle()
                if sum(p or 0 for p in rollup.positions.values()) >= total:
                    break
            records = await consumer.getmany(timeout_ms=200, max_records=batch)
            if records and started is None:
                started = time.perf_counter()
            await (rollup.take(records) if pipelined else rollup.process(records))
            batches += bool(records)
        return total / (time.perf_counter() - started), batches
    finally:
        await consumer.stop()


async def measure_naive(kafka: KafkaSettings, mongo, limit: int) -> float:
    """What a per-message subscriber does: one upsert of the event's month counters per event."""
    facts = mongo["naive"]
    consumer = _consumer(kafka, "bench-naive")
    await consumer.start()
    try:
        done, started = 0, None
        while done < limit:
            records = await consumer.getmany(timeout_ms=200, max_records=500)
            if records and started is None:
                started = time.perf_counter()
            for record in (r for rs in records.values() for r in rs):
                cells = domain.Cells()
                domain.record(parse_plain(record.value), cells)
                for key, f in cells.items():
                    await facts.update_one({"_id": domain.doc_id(key)}, {"$inc": dict(f.counts) or {"events": 1}},
                                           upsert=True)
                done += 1
                if done >= limit:
                    break
        return done / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def check(store: MetricsStore, events: list[CloudEvent]) -> bool:
    """Stored KPIs of every partnership and the state, per quarter and program year, equal a fresh
    computation over the distinct events."""
    fresh = domain.Cells()
    for e in {e.id: e for e in events}.values():
        domain.record(e.model_dump(), fresh)  # from the models, not through parse_plain
    version = await store.version()
    rosters, directory = await store.rosters(version), await store.directory(version)
    stored = await store.dated(version, None, "0000-00")
    periods = [parse_period(p) for p in ("PY2025", "2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2")]
    fresh_dated = [(k[1], k[2], f) for k, f in fresh.items() if k[0] in domain.DATED_SOURCES]
    fresh_rosters = {k[1]: f for k, f in fresh.items() if k[2] == domain.ROSTER}
    fresh_directory = [f for k, f in fresh.items() if k[0] == "membership" and not k[1]]
    for pids in [[pid] for pid in sorted(fresh_rosters)] + [sorted(fresh_rosters)]:
        for period in periods:
            def view(dated, rs, directory_, period=period, pids=pids):
                return kpis.evaluate(kpis.build_view(period, [(m, f) for p, m, f in dated if p in pids],
                                                     [rs[p] for p in pids], directory_))
            if view(stored, rosters, directory) != view(fresh_dated, fresh_rosters, fresh_directory):
                return False
    return True


async def connect(endpoints: Endpoints) -> tuple[str, KafkaSettings, AsyncMongoClient]:
    """A namespace of its own on the local stack, its Kafka settings (short group timeouts: each
    pass joins a group of its own) with its topics made, and a database client."""
    namespace = f"bench{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(bootstrap_servers=endpoints.bootstrap_servers, enable_idempotence=False,
                          namespace=namespace, session_timeout_ms=2000, heartbeat_interval_ms=300)
    await ensure_topics(kafka)
    return namespace, kafka, make_client(MongoSettings(uri=endpoints.mongo_uri, retry_writes=False))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partnerships", type=int, default=12)
    parser.add_argument("--naive-events", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=20_000, help="max records per batch (METRICS_MAX_BATCH_EVENTS)")
    parser.add_argument("--passes", type=int, default=5, help="pairs of ceiling and rollup passes, one after the other")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp))
        endpoints = stack.up().endpoints
        try:
            namespace, kafka, client = await connect(endpoints)
            started = time.perf_counter()
            events = scenario(args.events, args.partnerships)
            gc.freeze()  # the events are kept for the final check: the collector need not scan them again and again
            print(f"generated {len(events):,} events ({len({e.id for e in events}):,} distinct) "
                  f"in {time.perf_counter() - started:.1f}s")
            started = time.perf_counter()
            await produce(kafka, events)
            print(f"produced with acks=all in {time.perf_counter() - started:.1f}s")

            # Raw consumption takes under a second, which this host's noise swings by 30%: the
            # median of three passes is the baseline.
            raw = statistics.median([await measure_raw(kafka, len(events), args.batch, f"bench-raw-{i}")
                                     for i in range(3)])
            # The steps no validating rollup can skip, alone: validating each record (the
            # rollup's own parse_plain), then also recording its facts in memory.
            validated = await measure_raw(kafka, len(events), args.batch, "bench-validated", parse_plain)
            # The ceiling and the rollup take turns, pass after pass (this host's speed drifts by
            # tens of percent within a minute): each rollup pass is compared with the ceiling pass
            # just before it, into a KPI store of its own.
            pairs = []
            for i in range(args.passes):
                recorded = await measure_ceiling(kafka, len(events), args.batch, f"bench-recorded-{i}")
                database = namespace.replace(".", "_") + f"metrics{i}"
                if i:
                    await client.drop_database(namespace.replace(".", "_") + f"metrics{i - 1}")
                store = MetricsStore(client[database])
                rollup, batches = await measure_rollup(kafka, store, len(events), args.batch, f"backbone-metrics-{i}")
                pairs.append((recorded, rollup))
                print(f"pass {i + 1}: ceiling {recorded:,.0f} events/s, rollup {rollup:,.0f} events/s "
                      f"({rollup / recorded:.2f}x)")
            recorded = statistics.median(c for c, _ in pairs)
            rollup = statistics.median(r for _, r in pairs)
            ratio = statistics.median(r / c for c, r in pairs)
            naive = await measure_naive(kafka, client[namespace.replace(".", "_") + "naive"], args.naive_events)
            correct = await check(store, events)
            await client.close()
        finally:
            stack.down()

    print(f"\n{'raw aiokafka consumption':<34}{raw:>12,.0f} events/s   (median of 3 passes)")
    print(f"{'raw + validating each record':<34}{validated:>12,.0f} events/s   ({validated / raw:.2f}x raw)")
    print(f"{'raw + validating + recording':<34}{recorded:>12,.0f} events/s   ({recorded / raw:.2f}x raw: "
          f"in memory, no dedupe, nothing stored; median of {args.passes} passes)")
    print(f"{'metrics rollup (until stored)':<34}{rollup:>12,.0f} events/s   ({batches} batches of <= {args.batch}; "
          f"median of {args.passes} passes)")
    print(f"{'rollup / ceiling':<34}{ratio:>12.2f}x          (median of the passes' ratios)")
    print(f"{'naive one write per event':<34}{naive:>12,.0f} events/s   (first {args.naive_events:,} events)")
    print(f"\nrollup / naive = {rollup / naive:.1f}x    rollup / raw = {rollup / raw:.2f}x")
    print(f"stored KPIs equal a fresh computation over the distinct events: {'yes' if correct else 'NO'}")
    if not correct:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
