"""Which of a group's events are held already (`EventsStore.pending`, asked by every decision while
holding is on) as events pile up held, against the lookup it replaced in the same run: each
identity by _id with the status in the query, 50 at a time (`shared.mongo.find_among`, which puts
the status first: the local server then reads every pending event by the index of status).

    .venv/bin/python bench/held.py [--group 500] [--held 10000] [--reads 3]

A group of new events (none held) is asked with nothing held, with `--held` events held from
another source, then with as many more held from the group's own source; last, a group of events
sent again while held (every one of them held). Both lookups must find the same events.
Uses the server of BACKBONE_TEST_MONGO_URI if set, else starts a local stack and stops it afterwards.
"""

import argparse
import statistics
import time
from datetime import UTC, datetime

from harness import run_on_mongo  # bench/harness.py (and through it, the source tree on sys.path)

from services.events.domain import identity  # noqa: E402
from services.events.store import EventsStore, HeldStatus  # noqa: E402
from shared.mongo import find_among, make_client  # noqa: E402
from shared.settings import MongoSettings  # noqa: E402

SOURCE = "/bench/ats"


def held(source: str, count: int) -> list[dict]:
    now = datetime.now(UTC)
    return [{"_id": identity(source, f"held-{n}"), "source": source, "id": f"held-{n}", "status": HeldStatus.PENDING,
             "partnership_id": "bench", "organisations": ["acme"], "event": "{}", "held_at": now, "deadline": now,
             "next_attempt_at": now, "attempts": 0} for n in range(count)]


async def hold(store: EventsStore, docs: list[dict]) -> None:
    for first in range(0, len(docs), 1000):
        await store.held.insert_many(docs[first:first + 1000])


async def timed(read, rounds: int) -> tuple[float, set[str]]:
    seconds, found = [], set()
    for _ in range(rounds):
        started = time.perf_counter()
        found = set(await read())
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), found


async def bench(uri: str, args: argparse.Namespace) -> None:
    client = make_client(MongoSettings(uri=uri, retry_writes=False))
    try:
        await client.drop_database("bench_held")
        store = EventsStore(client["bench_held"])
        await store.setup()
        new = {identity(SOURCE, f"new-{n}"): SOURCE for n in range(args.group)}
        resent = {identity(SOURCE, f"held-{n}"): SOURCE for n in range(args.group)}

        async def replaced(sources: dict[str, str]) -> list[str]:
            docs = await find_among(store.held, "_id", sources, {"status": HeldStatus.PENDING})
            return [doc["_id"] for doc in docs]

        print(f"a group of {args.group:,} events, the median of {args.reads} lookups each")
        print(f"{'':58s} {'by id':>10s} {'pending':>10s} {'ratio':>7s}")
        for label, group, more in (
                ("new events, nothing held", new, []),
                (f"new events, {args.held:,} held from another source", new, held("/bench/other", args.held)),
                (f"new events, {args.held:,} more held from their source", new, held(SOURCE, args.held)),
                ("the same events again while held", resent, [])):
            await hold(store, more)
            before, found_before = await timed(lambda group=group: replaced(group), args.reads)
            after, found_after = await timed(lambda group=group: store.pending(group), args.reads)
            assert found_before == found_after, label
            print(f"{label:58s} {before * 1e3:8.1f}ms {after * 1e3:8.1f}ms {before / after:6.1f}x")
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", type=int, default=500)
    parser.add_argument("--held", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=3)
    args = parser.parse_args()
    run_on_mongo(lambda uri: bench(uri, args))


if __name__ == "__main__":
    main()
