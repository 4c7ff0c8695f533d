"""HTTP batch ingest throughput of the events service, against raw Kafka producing the same events;
and the rate of partner events through a partner system's inbound topic (backbone.inbound.<key_id>).

    .venv/bin/python bench/ingest.py [--events 5000] [--batch 500] [--concurrency 2] [--inbound-events 1000]

Both sides wait for acks=all. The baseline is a plain aiokafka producer sending the same
CloudEvents JSON in the same batches (send all, then wait for every acknowledgement), the median
of three runs. The events
service does, per batch: parse and validate every event, one duplicate lookup and one read-model
lookup, publish with acks=all, and one MongoDB transaction recording ids and hires. Uses the
servers of BACKBONE_TEST_KAFKA_BOOTSTRAP / BACKBONE_TEST_MONGO_URI if set, else starts a local
stack and stops it afterwards. The ratio matters, not the absolute figures (2 shared cores here).

Then the same batches again (every event a duplicate: what a sender retrying after a lost answer
costs) and a retention check of each hire (each names a recorded hire, as quarterly wage-record
matches do), timed the same way.

Inbound: other hires sent by a plain producer to the inbound topic of a partner system key issued
for the bench (its source /bench/ats), timed from the first send until
every one is on backbone.outcomes (decided and republished by the events service, one at a time).
"""

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from harness import AUTH, Service, seed_roster  # noqa: E402  (bench/harness.py)

from cli.stack import Endpoints, LocalStack  # noqa: E402
from shared.catalog import OUTCOMES, inbound_of  # noqa: E402
from shared.contracts import outcomes as out  # noqa: E402
from shared.envelope import new_event  # noqa: E402
from shared.kafka import make_broker  # noqa: E402
from shared.settings import KafkaSettings  # noqa: E402
from tests.examples import EXAMPLES, P  # noqa: E402
from tests.integration.events.conftest import issue_partner_key  # noqa: E402

BATCH_TYPE = {"content-type": "application/cloudevents-batch+json", **AUTH}


def hires(count: int, first: int = 0) -> list[bytes]:
    base = EXAMPLES[out.HireRecorded]
    return [new_event(base.model_copy(update={"hire_id": f"h-{i}", "person_id": f"p-{i}",
                                              "start_date": date(2026, 1 + i % 12, 1)}), source="/bench/ats").to_json()
            for i in range(first, first + count)]


def checks(count: int) -> list[bytes]:
    """A retention check of each of `hires(count)`: every one names a hire recorded before."""
    base = EXAMPLES[out.RetentionChecked]
    return [new_event(base.model_copy(update={"hire_id": f"h-{i}", "person_id": f"p-{i}",
                                              "checked_on": date(2027, 1, 2)}), source="/bench/ats").to_json()
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


async def http_ingest(url: str, chunks: list[list[bytes]], concurrency: int, expect: str = "accepted") -> float:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        async def send(chunk: list[bytes]) -> None:
            response = await http.post("/events", content=b"[" + b",".join(chunk) + b"]", headers=BATCH_TYPE)
            response.raise_for_status()
            answer = response.json()
            if answer[expect] != len(chunk):
                raise RuntimeError(f"not all {expect}: {answer['results'][:3]}")

        return await in_parallel(chunks, concurrency, send)


async def partner_topic(kafka: KafkaSettings) -> str:
    """The inbound topic of a partner system key issued for the bench, once the service made it."""
    broker = make_broker(kafka, "bench-membership")
    await broker.start()
    try:
        key_id, _ = await issue_partner_key(broker, kafka, [P], sources=["/bench/ats"], label="bench ATS")
    finally:
        await broker.stop()
    return kafka.topic(inbound_of(key_id).name)


async def through_inbound(kafka: KafkaSettings, events: list[bytes]) -> float:
    """Seconds from the first send to a partner's inbound topic until every event is on backbone.outcomes."""
    topic = await partner_topic(kafka)
    ids = {orjson.loads(e)["id"].encode() for e in events}
    consumer = AIOKafkaConsumer(kafka.topic(OUTCOMES.name), bootstrap_servers=kafka.bootstrap_servers,
                                group_id=None, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=False)
    await consumer.start()
    await producer.start()
    try:
        started = time.perf_counter()
        await asyncio.gather(*[await producer.send(topic, e, key=P.encode()) for e in events])
        async with asyncio.timeout(600):
            while ids:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    ids -= {dict(r.headers).get("ce_id") for r in records}
        return time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()


async def bench(endpoints: Endpoints, workdir: Path, args: argparse.Namespace) -> None:
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    kafka = KafkaSettings(bootstrap_servers=endpoints.bootstrap_servers, enable_idempotence=False, namespace=namespace)
    service = Service("events", endpoints, namespace, workdir / "events.log")
    url = service.url
    try:
        await seed_roster(kafka, url)
        events = hires(args.events)
        chunks = batches(events, args.batch)
        # Warm both paths (connections, first metadata) so neither pays start-up in its figure.
        await raw_kafka(endpoints.bootstrap_servers, kafka.topic("bench.raw"), [events[:10]], 1)
        # The median of three: one raw run takes a fraction of a second, and swings by half between runs.
        raws = sorted([await raw_kafka(endpoints.bootstrap_servers, kafka.topic("bench.raw"), chunks, args.concurrency)
                       for _ in range(3)])
        raw = raws[1]
        ingest = await http_ingest(url, chunks, args.concurrency)
        resent = await http_ingest(url, chunks, args.concurrency, expect="duplicate")
        checked = await http_ingest(url, batches(checks(args.events), args.batch), args.concurrency)
        inbound = await through_inbound(kafka, hires(args.inbound_events, first=args.events))
    finally:
        service.stop()
    n = len(events)
    print(f"{n} hire events, batches of {args.batch}, {args.concurrency} concurrent, acks=all on both sides")
    print(f"  raw aiokafka producer      {n / raw:10.0f} events/s   (median of 3: {n / raws[2]:.0f}-{n / raws[0]:.0f})")
    print(f"  events service HTTP batch  {n / ingest:10.0f} events/s   ({ingest / raw:.1f}x the time of raw Kafka)")
    print(f"  the same batches again     {n / resent:10.0f} events/s   ({resent / raw:.1f}x; every one a duplicate)")
    print(f"  retention checks of them   {n / checked:10.0f} events/s   ({checked / raw:.1f}x; each names a hire)")
    print(
        f"  partner topic -> topic     {args.inbound_events / inbound:10.0f} events/s   ({args.inbound_events} events, "
        f"{inbound / args.inbound_events / (raw / n):.0f}x raw Kafka's time per event)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--inbound-events", type=int, default=1000)
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
