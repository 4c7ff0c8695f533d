"""HTTP batch ingest throughput of the events service, against raw Kafka producing the same events.

    .venv/bin/python bench/ingest.py [--events 5000] [--batch 500] [--concurrency 2]

Both sides wait for acks=all. The baseline is a plain aiokafka producer sending the same
CloudEvents JSON in the same batches (send all, then wait for every acknowledgement). The events
service does, per batch: parse and validate every event, one duplicate lookup and one read-model
lookup, publish with acks=all, and one MongoDB transaction recording ids and hires. Uses the
servers of BACKBONE_TEST_KAFKA_BOOTSTRAP / BACKBONE_TEST_MONGO_URI if set, else starts a local
stack and stops it afterwards. The ratio matters, not the absolute figures (2 shared cores here).
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.contracts import membership as mem  # noqa: E402
from shared.contracts import outcomes as out  # noqa: E402
from shared.envelope import new_event  # noqa: E402
from shared.kafka import ensure_topics, make_broker, publish  # noqa: E402
from shared.settings import KafkaSettings  # noqa: E402
from shared.stack import Endpoints, LocalStack, free_port, stop_process  # noqa: E402
from tests.examples import EXAMPLES, P  # noqa: E402

OPERATOR_KEY = "bench-operator-key"
BATCH_TYPE = {"content-type": "application/cloudevents-batch+json", "authorization": f"Bearer {OPERATOR_KEY}"}


def hires(count: int) -> list[bytes]:
    base = EXAMPLES[out.HireRecorded]
    return [new_event(base.model_copy(update={"hire_id": f"h-{i}", "person_id": f"p-{i}",
                                              "start_date": date(2026, 1 + i % 12, 1)}), source="/bench/ats").to_json()
            for i in range(count)]


def batches(events: list[bytes], size: int) -> list[list[bytes]]:
    return [events[i:i + size] for i in range(0, len(events), size)]


async def in_parallel(work: list, concurrency: int, run) -> float:
    """Seconds to run `run(item)` over all items, `concurrency` at a time."""
    queue = list(reversed(work))

    async def worker():
        while queue:
            await run(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def raw_kafka(bootstrap: str, topic: str, chunks: list[list[bytes]], concurrency: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        async def send(chunk: list[bytes]) -> None:
            futures = [await producer.send(topic, body, key=P.encode()) for body in chunk]
            await asyncio.gather(*futures)

        return await in_parallel(chunks, concurrency, send)
    finally:
        await producer.stop()


async def http_ingest(url: str, chunks: list[list[bytes]], concurrency: int) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        async def send(chunk: list[bytes]) -> None:
            response = await http.post("/events", content=b"[" + b",".join(chunk) + b"]", headers=BATCH_TYPE)
            response.raise_for_status()
            answer = response.json()
            if answer["accepted"] != len(chunk):
                raise RuntimeError(f"not all accepted: {answer['results'][:3]}")

        return await in_parallel(chunks, concurrency, send)


async def seed_and_wait(kafka: KafkaSettings, url: str) -> None:
    """The read model the hires need: the partnership and the employer."""
    await ensure_topics(kafka)
    broker = make_broker(kafka, "membership")
    await broker.start()
    try:
        for data in (EXAMPLES[mem.PartnershipCreated], EXAMPLES[mem.OrganisationRegistered]):
            await publish(broker, kafka, new_event(data, source="/bench"))
    finally:
        await broker.stop()
    probe = EXAMPLES[out.HireRecorded].model_copy(update={"hire_id": "probe"}).model_dump(mode="json")
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {OPERATOR_KEY}"}) as http:
        async with asyncio.timeout(30):
            while (await http.post("/outcomes/hires", json=probe)).status_code != 202:
                await asyncio.sleep(0.2)


def start_service(endpoints: Endpoints, namespace: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = os.environ | endpoints.env() | {
        "BACKBONE_KAFKA_NAMESPACE": namespace, "BACKBONE_MONGO_DATABASE_PREFIX": namespace.replace(".", "_"),
        "BACKBONE_KAFKA_SESSION_TIMEOUT_MS": "2000", "BACKBONE_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        "BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY, "EVENTS_PORT": str(port), "EVENTS_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "services.events.app"], cwd=ROOT, env=env,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_process(process.pid)
    raise RuntimeError(f"events service did not start: see {log}")


async def bench(endpoints: Endpoints, workdir: Path, args: argparse.Namespace) -> None:
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    kafka = KafkaSettings(bootstrap_servers=endpoints.bootstrap_servers, enable_idempotence=False, namespace=namespace)
    process, url = start_service(endpoints, namespace, workdir / "events.log")
    try:
        await seed_and_wait(kafka, url)
        events = hires(args.events)
        chunks = batches(events, args.batch)
        # Warm both paths (connections, first metadata) so neither pays start-up in its figure.
        await raw_kafka(endpoints.bootstrap_servers, kafka.topic("bench.raw"), [events[:10]], 1)
        raw = await raw_kafka(endpoints.bootstrap_servers, kafka.topic("bench.raw"), chunks, args.concurrency)
        ingest = await http_ingest(url, chunks, args.concurrency)
    finally:
        stop_process(process.pid)
    n = len(events)
    print(f"{n} hire events, batches of {args.batch}, {args.concurrency} concurrent, acks=all on both sides")
    print(f"  raw aiokafka producer      {n / raw:10.0f} events/s")
    print(f"  events service HTTP batch  {n / ingest:10.0f} events/s   ({ingest / raw:.1f}x the time of raw Kafka)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        kafka, mongo = os.environ.get("BACKBONE_TEST_KAFKA_BOOTSTRAP"), os.environ.get("BACKBONE_TEST_MONGO_URI")
        if kafka and mongo:
            asyncio.run(bench(Endpoints(kafka, mongo), Path(tmp), args))
            return
        stack = LocalStack(Path(tmp) / "stack")
        endpoints = stack.up().endpoints
        try:
            asyncio.run(bench(endpoints, Path(tmp), args))
        finally:
            stack.down()


if __name__ == "__main__":
    main()
