"""How the rollup's cost grows: the metrics service as its own process rolls up 10k, 100k and 1M
events already on the topics; time until all are stored and the process's peak memory.

    .venv/bin/python bench/growth.py [--sizes 10000 100000 1000000]
    .venv/bin/python bench/growth.py --sizes 1000000 10000000 --rollup-only   # memory at 10M against 1M (~30 min)

The events are bench/rollup.py's program-year scenario (12 partnerships), produced with acks=all
before the service starts, each size in its own namespace, a million at a time (each million a
scenario of its own, every event a distinct identity the rollup must remember). The clock runs
from starting the process until its stored-records count (backbone_metrics_batch_events_sum)
reaches the size, less the start-up time of the same service on empty topics (measured first);
the table's rates are of that wall time. The baseline is the smallest size: per-event time and
memory are given relative to it. Starts its own local stack.

--rollup-only turns the service's milestone checks off (an interval of a day), so that the memory
is the rollup's own: a check reads the KPIs of a whole program year, and this scenario puts every
event in one program year of 12 partnerships (at 10M, a check blocks the service for over 10 s).
"""

import argparse
import asyncio
import re
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

from harness import Service, until_stored  # noqa: E402  (bench/harness.py)
from rollup import produce_chunks, scenario  # noqa: E402  (bench/rollup.py)

from cli.stack import LocalStack  # noqa: E402
from shared.kafka import ensure_topics  # noqa: E402
from shared.settings import KafkaSettings  # noqa: E402

BUSY = re.compile(r"^backbone_metrics_batch_seconds_sum (\S+)$", re.M)
CHUNK = 1_000_000  # events generated and produced at a time: the bench's own memory stays bounded
BATCHES = re.compile(r"^backbone_metrics_batch_events_count (\S+)$", re.M)


async def one_size(n: int, endpoints, workdir: Path, startup: float = 0.0,
                   **env: str) -> tuple[float, float, float]:
    """Seconds to roll up n events (less `startup`), seconds busy folding and storing batches (the
    service's own histogram), and the process's peak MiB."""
    namespace = f"grow{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(bootstrap_servers=endpoints.bootstrap_servers, enable_idempotence=False, namespace=namespace)
    await ensure_topics(kafka)
    total = await produce_chunks(kafka, (partial(scenario, min(CHUNK, n - start), 12, seed=7 + chunk)
                                         for chunk, start in enumerate(range(0, n, CHUNK))))
    started = time.perf_counter()
    service = Service("metrics", endpoints, namespace, workdir / f"metrics-{n}.log", **env)
    try:
        exposition = await until_stored(service, total)
        busy, batches = BUSY.search(exposition), BATCHES.search(exposition)
        if batches and total:
            print(f"  {total:>9,} events in {float(batches.group(1)):,.0f} batches", flush=True)
        return (time.perf_counter() - started - startup, float(busy.group(1)) if busy else 0.0,
                service.peak_memory_mib())
    finally:
        service.stop()


async def bench(sizes: list[int], workdir: Path, rollup_only: bool) -> None:
    env = {"METRICS_MILESTONE_INTERVAL_SECONDS": "86400"} if rollup_only else {}
    stack = LocalStack(workdir / "stack")
    endpoints = stack.up().endpoints
    results = []
    try:
        startup, _, idle = await one_size(0, endpoints, workdir, **env)
        print(f"  start-up on empty topics: {startup:.1f} s, {idle:.0f} MiB (wall times below are net of it)")
        for n in sizes:
            wall, busy, memory = await one_size(n, endpoints, workdir, startup, **env)
            results.append((n, wall, memory))
            print(f"  {n:>9,} events: wall {wall:6.1f} s, busy {busy:6.2f} s   peak {memory:5.0f} MiB", flush=True)
    finally:
        stack.down()
    n0, s0, m0 = results[0]
    # Wall time, not busy: a batch's time (backbone_metrics_batch_seconds) runs until it is
    # stored, while the next is folded, so their sum counts the overlap twice.
    print(f"\n{'events':>10} {'wall s':>9} {'events/s':>10} {'µs/event':>9} {'vs smallest':>12}"
          f" {'peak MiB':>9} {'vs smallest':>12}")
    for n, seconds, memory in results:
        per_event = seconds / n * 1e6
        print(f"{n:>10,} {seconds:>9.1f} {n / seconds:>10,.0f} {per_event:>9.1f} {per_event / (s0 / n0 * 1e6):>11.2f}x "
              f"{memory:>9.0f} {memory / m0:>11.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--rollup-only", action="store_true", help="the service's milestone checks off")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        asyncio.run(bench(args.sizes, Path(tmp), args.rollup_only))


if __name__ == "__main__":
    main()
