"""Latency from HTTP accept (events service) to KPI visible (metrics service) at a steady rate,
against raw Kafka produce-to-consume latency at the same rate in the same run.

    .venv/bin/python bench/latency.py [--rate 1000] [--seconds 20] [--batch 50]

Hires are posted in batches of --batch, one batch every batch/rate seconds, each batch waiting
for its 2xx (acks=all). A poller reads the partnership's hires from /kpis/values every 200 ms;
a batch is visible when the stored count first reaches the events accepted up to it (poll every 200 ms: resolution). The
baseline sends the same bodies at the same pace with a plain aiokafka producer (acks=all) and
times each from send to its arrival at a plain consumer. Starts its own local stack.
"""

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from harness import AUTH, Service, seed_roster  # noqa: E402  (bench/harness.py)

from cli.stack import LocalStack  # noqa: E402
from shared.contracts import outcomes as out  # noqa: E402
from shared.envelope import new_event  # noqa: E402
from shared.periods import program_year  # noqa: E402
from shared.settings import KafkaSettings  # noqa: E402
from tests.examples import EXAMPLES, P  # noqa: E402

BATCH_TYPE = {"content-type": "application/cloudevents-batch+json"}


def hire(i: int) -> bytes:
    return new_event(EXAMPLES[out.HireRecorded].model_copy(update={
        "hire_id": f"h-{i}", "person_id": f"p-{i}", "start_date": datetime.now(UTC).date()}), source="/bench").to_json()


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    return (statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))], ordered[-1])


async def paced(batches: int, interval: float, send) -> None:
    started = time.perf_counter()
    tasks = []
    for b in range(batches):
        await asyncio.sleep(max(0.0, started + b * interval - time.perf_counter()))
        tasks.append(asyncio.create_task(send(b)))
    await asyncio.gather(*tasks)


async def end_to_end(events_url: str, metrics_url: str, batches: int, size: int,
                     interval: float) -> tuple[list[float], list[float]]:
    """Per batch: HTTP accept -> KPI visible, and the request's own round trip."""
    posted: dict[int, float] = {}
    accepted: dict[int, float] = {}
    period = program_year(datetime.now(UTC).date())
    visible: dict[int, float] = {}
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        async def send(b: int) -> None:
            body = b"[" + b",".join(hire(b * size + i) for i in range(size)) + b"]"
            posted[b] = time.perf_counter()
            answer = await http.post(events_url + "/events", content=body, headers=BATCH_TYPE)
            assert answer.status_code == 200 and answer.json()["accepted"] == size, answer.text[:300]
            accepted[b] = time.perf_counter()

        async def poll() -> None:
            while len(visible) < batches:
                answer = await http.get(metrics_url + "/kpis/values", params={"scope_id": P, "period": period})
                now = time.perf_counter()
                stored = answer.json()["values"]["hires"] if answer.status_code == 200 else 0
                for b in range(int(stored) // size):
                    visible.setdefault(b, now)
                await asyncio.sleep(0.2)

        poller = asyncio.create_task(poll())
        await paced(batches, interval, send)
        await asyncio.wait_for(poller, 120)
    # A batch counts as visible no earlier than it was accepted (hires are counted, not ordered).
    return ([max(visible[b], accepted[b]) - accepted[b] for b in range(batches)],
            [accepted[b] - posted[b] for b in range(batches)])


async def raw(kafka: KafkaSettings, batches: int, size: int, interval: float) -> list[float]:
    topic = kafka.topic("bench.latency")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap_servers, group_id=None,
                                auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await consumer.start()
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")
    await asyncio.sleep(1)
    sent: dict[bytes, float] = {}
    latencies: list[float] = []

    async def send(b: int) -> None:
        futures = []
        for i in range(size):
            key = f"{b}/{i}".encode()
            sent[key] = time.perf_counter()
            futures.append(await producer.send(topic, hire(b * size + i), key=key))
        await asyncio.gather(*futures)

    async def receive() -> None:
        while len(latencies) < batches * size:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                latencies.extend(now - sent[r.key] for r in records if r.key in sent)

    receiver = asyncio.create_task(receive())
    await paced(batches, interval, send)
    await asyncio.wait_for(receiver, 60)
    await producer.stop()
    await consumer.stop()
    return latencies


async def bench(args: argparse.Namespace, workdir: Path) -> None:
    stack = LocalStack(workdir / "stack")
    endpoints = stack.up().endpoints
    namespace = f"lat{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(bootstrap_servers=endpoints.bootstrap_servers, enable_idempotence=False, namespace=namespace)
    events = metrics = None
    try:
        events = Service("events", endpoints, namespace, workdir / "events.log")
        metrics = Service("metrics", endpoints, namespace, workdir / "metrics.log", METRICS_POLL_TIMEOUT_MS="50")
        await seed_roster(kafka, events.url)
        interval = args.batch / args.rate
        batches = int(args.seconds / interval)
        baseline = await raw(kafka, batches, args.batch, interval)
        measured, requests = await end_to_end(events.url, metrics.url, batches, args.batch, interval)
    finally:
        for service in (events, metrics):
            if service:
                service.stop()
        stack.down()
    n = batches * args.batch
    p50, p99, worst = percentiles(measured)
    r50, r99, rworst = percentiles(baseline)
    q50, q99, qworst = percentiles(requests)
    print(f"{n:,} hires at {args.rate:,}/s in batches of {args.batch} for {args.seconds:.0f} s")
    print(f"  raw Kafka produce -> consume     p50 {r50 * 1000:7.1f} ms   p99 {r99 * 1000:7.1f} ms"
          f"   max {rworst * 1000:7.1f} ms")
    print(f"  HTTP accept -> KPI visible       p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms"
          f"   max {worst * 1000:7.1f} ms")
    print(f"  HTTP request round trip          p50 {q50 * 1000:7.1f} ms   p99 {q99 * 1000:7.1f} ms"
          f"   max {qworst * 1000:7.1f} ms")
    print(f"  ratio (p99)                      {p99 / r99:.1f}x raw"
          f"   target p99 < 2 s: {'met' if p99 < 2 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    main()
