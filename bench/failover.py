"""Failover of the events service: how long a SIGKILLed replica's partnership stays unserved.

    .venv/bin/python bench/failover.py [--rounds 3] [--old-lease 60]

Two events replicas share one partnership on a local stack. Three clients send batches of 200
hires to replica A; A is frozen (SIGSTOP) at a moment it holds the partnership's decision turn
and SIGKILLed; a client then sends a batch to replica B and times kill -> B's 2xx. Measured with
the default lease (renewed by a heartbeat) and, in the same run, with the old 60 s lease, as a
ratio. Starts its own local stack.
"""

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import AUTH, Service, seed_roster  # noqa: E402  (bench/harness.py)

from cli.stack import Endpoints, LocalStack  # noqa: E402
from services.events.app import EventsSettings  # noqa: E402
from shared.mongo import make_client  # noqa: E402
from shared.settings import KafkaSettings, MongoSettings  # noqa: E402
from tests.examples import P, hire_batch  # noqa: E402

HEADERS = AUTH | {"content-type": "application/cloudevents-batch+json"}


async def load(url: str, name: str) -> None:
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30) as http:
        for n in range(10**6):
            try:
                await http.post("/events", content=hire_batch(f"{name}-{n}", 200, "/bench"))
            except httpx.HTTPError:
                return  # the replica died


async def kill_holding_turn(pid: int, turns) -> None:
    while True:
        os.kill(pid, signal.SIGSTOP)
        if await turns.find_one({"_id": P, "until": {"$gt": datetime.now(UTC)}}):
            os.kill(pid, signal.SIGKILL)
            return
        os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(0.05)


async def one_failover(endpoints: Endpoints, workdir: Path, lease: float, round_: int) -> float:
    """Seconds from SIGKILL of the turn's holder until the other replica answers a batch."""
    namespace = f"fo{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(bootstrap_servers=endpoints.bootstrap_servers, enable_idempotence=False, namespace=namespace)
    mongo = MongoSettings(uri=endpoints.mongo_uri, retry_writes=False, database_prefix=namespace.replace(".", "_"))
    env = {"EVENTS_DECISION_LEASE_SECONDS": str(lease)}
    replicas: list[Service] = []
    client = make_client(mongo)
    try:
        for name in ("a", "b"):
            replicas.append(
                Service("events", endpoints, namespace, workdir / f"events-{lease}-{round_}-{name}.log", **env)
            )
        doomed, survivor = replicas
        await seed_roster(kafka, survivor.url)
        loaders = [asyncio.create_task(load(doomed.url, f"l{i}")) for i in range(3)]
        await kill_holding_turn(doomed.process.pid, client[mongo.database_prefix + "events"]["decision_turns"])
        killed = time.perf_counter()
        async with httpx.AsyncClient(base_url=survivor.url, headers=HEADERS, timeout=120) as http:
            response = await http.post("/events", content=hire_batch("after", 5, "/bench"))
        served = time.perf_counter() - killed
        response.raise_for_status()
        await asyncio.gather(*loaders, return_exceptions=True)
        return served
    finally:
        await client.close()
        for replica in replicas:
            replica.stop()


async def bench(args: argparse.Namespace, workdir: Path) -> None:
    stack = LocalStack(workdir / "stack")
    endpoints = stack.up().endpoints
    new_lease = EventsSettings.model_fields["decision_lease_seconds"].default
    figures: dict[float, list[float]] = {}
    try:
        for lease in (new_lease, args.old_lease):
            figures[lease] = [await one_failover(endpoints, workdir, lease, r) for r in range(args.rounds)]
    finally:
        stack.down()
    new, old = (statistics.median(figures[lease]) for lease in (new_lease, args.old_lease))
    print(f"SIGKILL of the replica holding a partnership's turn -> the other replica serves it ({args.rounds} rounds)")
    for lease, seconds in figures.items():
        print(f"  lease {lease:4.0f} s   median {statistics.median(seconds):6.2f} s   "
              f"max {max(seconds):6.2f} s   ({', '.join(f'{s:.2f}' for s in seconds)})")
    print(f"  ratio old/new   {old / new:.1f}x   target < 5 s: {'met' if max(figures[new_lease]) < 5 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old-lease", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    main()
