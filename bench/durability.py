"""The cost of durability: HTTP batch ingest and the metrics rollup on a memory-backed local stack
and on a disk-backed one (what `backbone run` uses: Tansu over cli/objectstore, SecantusDB on files), in
the same run, printing the disk/memory ratios.

    .venv/bin/python bench/durability.py [--events 3000] [--rollup-events 20000]
"""

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path

from harness import Service, seed_roster  # bench/harness.py (puts the repository on sys.path)
from ingest import batches, hires, http_ingest
from rollup import measure_rollup, produce, scenario

from cli.stack import LocalStack
from services.metrics.store import MetricsStore
from shared.kafka import ensure_topics
from shared.mongo import make_client
from shared.settings import KafkaSettings, MongoSettings


async def measure(stack: LocalStack, workdir: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(ingest events/s, rollup events/s) on this stack."""
    endpoints = stack.up().endpoints
    try:
        namespace = f"bench{uuid.uuid4().hex[:6]}."
        kafka = KafkaSettings(bootstrap_servers=endpoints.bootstrap_servers, enable_idempotence=False,
                              namespace=namespace, session_timeout_ms=2000, heartbeat_interval_ms=300)
        service = Service("events", endpoints, namespace, workdir / "events.log")
        try:
            await seed_roster(kafka, service.url)
            events = hires(args.events)
            await http_ingest(service.url, [hires(10, first=args.events)], 1)  # warm-up, other ids
            ingest = len(events) / await http_ingest(service.url, batches(events, 500), 2)
        finally:
            service.stop()
        await ensure_topics(kafka)
        await produce(kafka, scenario(args.rollup_events, 12))
        client = make_client(MongoSettings(uri=endpoints.mongo_uri, retry_writes=False))
        try:
            store = MetricsStore(client[namespace.replace(".", "_") + "metrics"])
            rollup, _ = await measure_rollup(kafka, store, args.rollup_events, 20_000, "backbone-metrics")
        finally:
            await client.close()
        return ingest, rollup
    finally:
        stack.down()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rollup-events", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-durability-") as tmp:
        memory_dir, disk_dir = Path(tmp) / "memory", Path(tmp) / "disk"
        memory_dir.mkdir()
        disk_dir.mkdir()
        memory = await measure(LocalStack(memory_dir), memory_dir, args)
        disk = await measure(LocalStack(disk_dir / "stack", data_dir=disk_dir), disk_dir, args)
    print(f"{'':<28}{'memory':>12}{'disk':>12}{'disk/memory':>14}")
    for label, m, d in (("HTTP ingest (events/s)", memory[0], disk[0]), ("rollup (events/s)", memory[1], disk[1])):
        print(f"{label:<28}{m:>12,.0f}{d:>12,.0f}{d / m:>14.2f}")


if __name__ == "__main__":
    asyncio.run(main())
