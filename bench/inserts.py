"""What the database server costs per document the events service stores for an accepted hire,
against a document stored by its _id alone, in the same run.

    .venv/bin/python bench/inserts.py [--events 3000] [--group 500] [--rounds 2]

Inserts, in transactions of `--group` documents as the events service stores a group: the hires
(_id only: the baseline), the accepted events' records with no secondary index, with the records
page's index (partnership, time), and with both of the store's indexes (as stored until the
events service kept them in sheets). Then the same records kept a group to a document (its
records in an array, their identities in an indexed array: one document per group, an index entry
per event), the cost still given per event: the shape of the sheets the store now keeps
(services/events/store.py `sheets_of`, which also index ids and days). Uses the server of
BACKBONE_TEST_MONGO_URI if set, else starts a local stack and stops it afterwards.
"""

import argparse
import time

import orjson
from harness import run_on_mongo  # bench/harness.py
from ingest import hires  # bench/ingest.py (through bench/harness.py: the source tree on sys.path)
from pymongo import AsyncMongoClient

from services.events.domain import record_of  # noqa: E402
from shared.envelope import parse_event  # noqa: E402

BY_TIME = [("partnership_id", 1), ("time", -1)]
BY_ID = [("partnership_id", 1), ("id", 1)]


async def per_event(client: AsyncMongoClient, name: str, docs: list[dict], indexes: list, group: int,
                    events: int) -> float:
    """Microseconds per event to insert these documents, `group` to a transaction, into a new
    collection with these indexes."""
    collection = client["bench_inserts"][name]
    await collection.drop()
    for index in indexes:
        await collection.create_index(index)
    started = time.perf_counter()
    for first in range(0, len(docs), group):
        async with client.start_session() as session:
            async with await session.start_transaction():
                await collection.insert_many(docs[first:first + group], session=session)
    return (time.perf_counter() - started) / events * 1e6


def grouped(records: list[dict], group: int) -> list[dict]:
    """The records a group to a document: its identities apart, to be indexed."""
    return [{"_id": f"group-{first}", "partnership_id": records[first]["partnership_id"],
             "ids": [r["_id"] for r in records[first:first + group]], "records": records[first:first + group]}
            for first in range(0, len(records), group)]


async def bench(uri: str, args: argparse.Namespace) -> None:
    events = [parse_event(orjson.loads(body)) for body in hires(args.events)]
    records = [record_of(e) for e in events]
    hire_docs = [{"_id": f"{e.data.partnership_id}:{e.data.hire_id}", "hire": e.data.model_dump(mode="json")}
                 for e in events]
    kinds = {"hires (_id only)": (hire_docs, [], args.group), "records, no index": (records, [], args.group),
             "records, (partnership, time)": (records, [BY_TIME], args.group),
             "records, both indexes": (records, [BY_TIME, BY_ID], args.group),
             "a group's records, no index": (grouped(records, args.group), [], 1),
             "a group's records, ids indexed": (grouped(records, args.group), [[("ids", 1)]], 1)}
    client: AsyncMongoClient = AsyncMongoClient(uri)
    try:
        print(f"{args.events} hires, transactions of {args.group} documents, {args.rounds} rounds (the last shown)")
        for round_ in range(args.rounds):  # the first round warms the server
            costs = {name: await per_event(client, f"r{round_}_{i}", docs, indexes, group, len(events))
                     for i, (name, (docs, indexes, group)) in enumerate(kinds.items())}
        baseline = costs["hires (_id only)"]
        for name, cost in costs.items():
            print(f"  {name:32s} {cost:6.0f} µs/event   {cost / baseline:5.2f}x")
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--group", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    run_on_mongo(lambda uri: bench(uri, args))


if __name__ == "__main__":
    main()
