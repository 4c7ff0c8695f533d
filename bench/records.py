"""The records page and record lookups of the events service against the history they sit on: the
same reads over a partnership with a small and with a large history of accepted records, in the
same run, each figure with its ratio large/small.

    .venv/bin/python bench/records.py [--small 20000] [--large 400000] [--reads 7]

Each history is one partnership's hires over five years, oldest first, stored as the events
service stores a decided group (EventsStore.record, groups of 1,000) into a database of its own.
Reads, as the records page and lineage rows make them: the newest page (50 rows), a page a year
back (the page's "older" link), a page of one type, and 50 records by id (lineage rows).
Uses the server of BACKBONE_TEST_MONGO_URI if set, else starts a local stack and stops it afterwards.
"""

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from harness import run_on_mongo  # bench/harness.py (and through it, the source tree on sys.path)

from services.events.domain import Facts  # noqa: E402
from services.events.store import EventsStore  # noqa: E402
from shared.contracts import outcomes as out  # noqa: E402
from shared.envelope import CloudEvent, new_event  # noqa: E402
from shared.mongo import make_client  # noqa: E402
from shared.settings import MongoSettings  # noqa: E402
from tests.examples import EXAMPLES, P  # noqa: E402

YEARS = timedelta(days=5 * 365)
GROUP = 1000


def history(count: int, now: datetime) -> list[CloudEvent]:
    """`count` hires of one partnership, evenly over the five years before `now`, oldest first."""
    step = YEARS / count
    base = EXAMPLES[out.HireRecorded]
    return [new_event(base.model_copy(update={"hire_id": f"h-{n}", "person_id": f"p-{n}"}), source="/bench/ats",
                      id=f"hire-{n}", time=now - YEARS + step * n) for n in range(count)]


async def load(store: EventsStore, events: list[CloudEvent]) -> None:
    await store.setup()
    for first in range(0, len(events), GROUP):
        await store.record(events[first:first + GROUP], Facts())


async def timed(read, rounds: int) -> list[float]:
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        await read()
        seconds.append(time.perf_counter() - started)
    return seconds


def reads(store: EventsStore, events: list[CloudEvent], now: datetime) -> dict:
    lineage = [e.id for e in events[-200::4]]  # 50 recent records, as a KPI's lineage names them
    return {
        "newest page": lambda: store.records(P, None, None, None, 50),
        "a page a year back": lambda: store.records(P, None, None, now - timedelta(days=365), 50),
        "a page of one type": lambda: store.records(P, None, "org.backbone.hire.recorded.v1", None, 50),
        "50 records by id": lambda: store.records(P, lineage, None, None, 50),
    }


async def bench(uri: str, args: argparse.Namespace) -> None:
    client = make_client(MongoSettings(uri=uri, retry_writes=False))
    now = datetime.now(UTC)
    try:
        stores, figures = {}, {}
        for size in ("small", "large"):
            events = history(getattr(args, size), now)
            stores[size] = (EventsStore(client[f"bench_records_{size}"]), events)
            started = time.perf_counter()
            await client.drop_database(f"bench_records_{size}")
            await load(stores[size][0], events)
            print(f"{size}: {len(events):,} records loaded in {time.perf_counter() - started:.1f} s")
        for size, (store, events) in stores.items():
            for name, read in reads(store, events, now).items():
                assert len(await read()) == 50, name  # every read fills its page
                figures[size, name] = await timed(read, args.reads)
        print(f"\n{'read':24s} {'small p50':>10s} {'p95':>8s} {'large p50':>10s} {'p95':>8s} {'p95 ratio':>10s}")
        for name in reads(*stores["small"], now):
            small, large = figures["small", name], figures["large", name]
            print(f"{name:24s} {statistics.median(small) * 1e3:8.1f}ms {p95(small) * 1e3:6.1f}ms "
                  f"{statistics.median(large) * 1e3:8.1f}ms {p95(large) * 1e3:6.1f}ms {p95(large) / p95(small):9.2f}x")
    finally:
        await client.close()


def p95(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=20, method="inclusive")[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=400_000)
    parser.add_argument("--reads", type=int, default=7)
    args = parser.parse_args()
    run_on_mongo(lambda uri: bench(uri, args))


if __name__ == "__main__":
    main()
