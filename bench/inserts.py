"""What the database server costs per document the events service stores for an accepted hire,
against a document stored by its _id alone, in the same run.

    .venv/bin/python bench/inserts.py [--events 3000] [--group 500] [--rounds 2]

Inserts, in transactions of `--group` documents as the events service stores a group: the hires
(_id only: the baseline), the accepted events' records with no secondary index, with the records
page's index (partnership, time), and with both of the store's indexes (as stored). Uses the
server of BACKBONE_TEST_MONGO_URI if set, else starts a local stack and stops it afterwards.
"""

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import orjson
from ingest import hires  # bench/ingest.py (through bench/harness.py: the source tree on sys.path)
from pymongo import AsyncMongoClient

from cli.stack import LocalStack  # noqa: E402
from services.events.domain import record_of  # noqa: E402
from shared.envelope import parse_event  # noqa: E402

BY_TIME = [("partnership_id", 1), ("time", -1)]
BY_ID = [("partnership_id", 1), ("id", 1)]


async def per_document(client: AsyncMongoClient, name: str, docs: list[dict], indexes: list, group: int) -> float:
    """Microseconds per document inserted into a new collection with these indexes."""
    collection = client["bench_inserts"][name]
    await collection.drop()
    for index in indexes:
        await collection.create_index(index)
    started = time.perf_counter()
    for first in range(0, len(docs), group):
        async with client.start_session() as session:
            async with await session.start_transaction():
                await collection.insert_many(docs[first:first + group], session=session)
    return (time.perf_counter() - started) / len(docs) * 1e6


async def bench(uri: str, args: argparse.Namespace) -> None:
    events = [parse_event(orjson.loads(body)) for body in hires(args.events)]
    records = [record_of(e) for e in events]
    hire_docs = [{"_id": f"{e.data.partnership_id}:{e.data.hire_id}", "hire": e.data.model_dump(mode="json")}
                 for e in events]
    kinds = {"hires (_id only)": (hire_docs, []), "records, no index": (records, []),
             "records, (partnership, time)": (records, [BY_TIME]), "records, both indexes": (records, [BY_TIME, BY_ID])}
    client: AsyncMongoClient = AsyncMongoClient(uri)
    try:
        print(f"{args.events} hires, transactions of {args.group} documents, {args.rounds} rounds (the last shown)")
        for round_ in range(args.rounds):  # the first round warms the server
            costs = {name: await per_document(client, f"r{round_}_{i}", docs, indexes, args.group)
                     for i, (name, (docs, indexes)) in enumerate(kinds.items())}
        baseline = costs["hires (_id only)"]
        for name, cost in costs.items():
            print(f"  {name:30s} {cost:6.0f} µs/document   {cost / baseline:5.2f}x")
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--group", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if uri := os.environ.get("BACKBONE_TEST_MONGO_URI"):
        asyncio.run(bench(uri, args))
        return
    with tempfile.TemporaryDirectory(prefix="bench-inserts-") as tmp:
        stack = LocalStack(Path(tmp) / "stack")
        endpoints = stack.up().endpoints
        try:
            asyncio.run(bench(endpoints.mongo_uri, args))
        finally:
            stack.down()


if __name__ == "__main__":
    main()
