"""One producer process of the chaos test: sends events [start, start + count) of the stream,
either as CloudEvents batches to the events service's HTTP API (retrying whatever was not
acknowledged, with the same ids, across restarts) or straight to Kafka with acks=all. About 2%
are sent twice. Appends the ids the system acknowledged to ACCEPTED_FILE, one per line, a batch
at a time.

Over HTTP, SIGTERM stops it once the batch in progress is acknowledged: what it sent is then
events [start, start + n) for some n, their resends included, so a test may run the load for
as long as its kills take rather than guess a count that outlasts them.

    python tests/e2e/chaos/stream.py http|kafka START COUNT TARGET ACCEPTED_FILE
"""

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from itertools import islice
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from shared.catalog import event_type_of  # noqa: E402
from shared.contracts import outcomes as out  # noqa: E402
from shared.envelope import CloudEvent, new_event  # noqa: E402

PARTNERSHIPS = ("sw-mp", "nw-mp", "ec-mp")
EMPLOYERS = ("microboard", "sikorsky", "pta-plastics")
DAY0 = date(2025, 7, 1)  # program year 2025


def event(i: int) -> CloudEvent:
    """Event i of the stream: the test computes the expected KPIs from the same rule."""
    pid, employer, day = PARTNERSHIPS[i % 3], EMPLOYERS[(i // 3) % 3], DAY0 + timedelta(days=i % 360)
    kind = (i // 9) % 3
    if kind == 0:
        data = out.HireRecorded(partnership_id=pid, hire_id=f"h-{i}", person_id=f"p-{i}", employer_id=employer,
                                soc_code="51-4041", start_date=day, hourly_wage=20 + i % 10, resident=i % 2 == 0)
    elif kind == 1:
        data = out.PlacementRecorded(partnership_id=pid, placement_id=f"pl-{i}", person_id=f"p-{i}",
                                     programme_id="cnc-1", provider_id="qvcc", employer_id=employer,
                                     soc_code="51-4041", start_date=day)
    else:
        data = out.CredentialEarned(partnership_id=pid, person_id=f"p-{i}", credential="NIMS Level I",
                                    provider_id="qvcc", earned_on=day)
    return new_event(data, source="/chaos", id=f"ev-{i}")


def stream(start: int, count: int) -> Iterator[int]:
    """The order of sending: every 50th event sent again 100 events later (same id, another batch),
    so any prefix of the stream holds the resends of all but its last events."""
    for i in range(start, start + count):
        yield i
        if (i - start) % 50 == 0 and i - start >= 100:
            yield i - 100


def batches(indices: Iterator[int], size: int) -> Iterator[list[int]]:
    while batch := list(islice(indices, size)):
        yield batch


class Acknowledged:
    """The ids the system acknowledged, appended to the file a batch at a time (a test may watch
    the load go on)."""

    def __init__(self, path: str):
        self.file = Path(path).open("a")
        self.count = 0

    def add(self, ids: list[str]) -> None:
        self.file.write("".join(f"{i}\n" for i in ids))
        self.file.flush()
        self.count += len(ids)


async def over_http(url: str, indices: Iterator[int], accepted: Acknowledged) -> None:
    headers = {"content-type": "application/cloudevents-batch+json", "authorization": "Bearer chaos-operator-key"}
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        for batch in batches(indices, 200):
            if stopping.is_set():
                return
            body = b"[" + b",".join(event(i).to_json() for i in batch) + b"]"
            while True:
                try:
                    answer = await http.post("/events", content=body)
                except httpx.HTTPError:
                    answer = None  # the service is down: try again, same ids
                if answer is not None and answer.status_code == 200:
                    break
                await asyncio.sleep(0.3)
            results = answer.json()["results"]
            refused = [r for r in results if r["status"] == "rejected"]
            assert not refused, refused[:3]
            accepted.add([r["id"] for r in results])


async def over_kafka(bootstrap: str, namespace: str, indices: Iterator[int], accepted: Acknowledged) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for batch in batches(indices, 500):
            events = [event(i) for i in batch]
            futures = []
            for e in events:
                kind = event_type_of(e.data)
                futures.append(await producer.send(namespace + kind.topic.name, e.to_json(),
                                                   key=kind.partition_key(e.data)))
            await asyncio.gather(*futures)
            accepted.add([e.id for e in events])
    finally:
        await producer.stop()


def main() -> None:
    mode, start, count, target, out_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    accepted = Acknowledged(out_file)
    started = time.perf_counter()
    if mode == "http":
        asyncio.run(over_http(target, stream(start, count), accepted))
    else:
        bootstrap, namespace = target.split("|")
        asyncio.run(over_kafka(bootstrap, namespace, stream(start, count), accepted))
    print(f"{mode} producer: {accepted.count} acknowledged in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
