"""Restart under load: seconds from starting a SIGKILLed events replica again to its /readyz 200.

    .venv/bin/python bench/ready.py [--rounds 2] [--before main]

Two events replicas share a namespace on a local stack, with the default Kafka session (10 s) and
heartbeat. Three clients send batches of 200 hires to replica B; replica A is SIGKILLed and
started again at once, timed until /readyz answers 200. The same run measures the tree at
`--before` (a git revision, exported with `git archive`: the code before consumer groups joined
in the background) and this tree, and prints the ratio. Starts its own local stack.
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failover import HEADERS, hires  # noqa: E402  (bench/failover.py)
from harness import ROOT, Service, seed_roster  # noqa: E402  (bench/harness.py)

from cli.stack import Endpoints, LocalStack  # noqa: E402
from shared.settings import KafkaSettings  # noqa: E402

PRODUCTION_KAFKA = {"BACKBONE_KAFKA_SESSION_TIMEOUT_MS": "10000", "BACKBONE_KAFKA_HEARTBEAT_INTERVAL_MS": "3000"}


async def load(url: str, name: str, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30) as http:
        n = 0
        while not stop.is_set():
            await http.post("/events", content=hires(f"{name}-{n}", 200))
            n += 1


async def one_restart(endpoints: Endpoints, workdir: Path, root: Path, label: str, round_: int) -> float:
    namespace = f"rd{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(bootstrap_servers=endpoints.bootstrap_servers, enable_idempotence=False, namespace=namespace)
    logs = workdir / f"{label}-{round_}"
    logs.mkdir()
    replicas = [Service("events", endpoints, namespace, logs / f"{name}.log", root, **PRODUCTION_KAFKA)
                for name in ("a", "b")]
    stop = asyncio.Event()
    try:
        doomed, survivor = replicas
        await seed_roster(kafka, survivor.url)
        loaders = [asyncio.create_task(load(survivor.url, f"l{i}", stop)) for i in range(3)]
        await asyncio.sleep(3)  # load running
        doomed.process.kill()
        doomed.process.wait()
        started = time.perf_counter()
        restarted = await asyncio.to_thread(Service, "events", endpoints, namespace, logs / "a2.log", root,
                                            **PRODUCTION_KAFKA)
        ready = time.perf_counter() - started
        replicas.append(restarted)
        stop.set()
        await asyncio.gather(*loaders, return_exceptions=True)
        return ready
    finally:
        stop.set()
        for replica in replicas:
            replica.stop()


def export(revision: str, into: Path) -> Path:
    """The tree at `revision`, exported (not checked out: nothing changes in this repository)."""
    into.mkdir()
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


async def bench(args: argparse.Namespace, workdir: Path) -> None:
    trees = {f"before ({args.before})": export(args.before, workdir / "before"), "after (this tree)": ROOT}
    stack = LocalStack(workdir / "stack")
    endpoints = stack.up().endpoints
    figures: dict[str, list[float]] = {}
    try:
        for label, root in trees.items():
            figures[label] = [await one_restart(endpoints, workdir, root, label.split()[0], r)
                              for r in range(args.rounds)]
    finally:
        stack.down()
    print(f"SIGKILLed events replica started again under load -> /readyz 200 ({args.rounds} rounds, "
          "Kafka session 10 s)")
    for label, seconds in figures.items():
        print(f"  {label:24} median {statistics.median(seconds):6.2f} s   max {max(seconds):6.2f} s   "
              f"({', '.join(f'{s:.2f}' for s in seconds)})")
    before, after = (statistics.median(s) for s in figures.values())
    print(f"  ratio before/after {before / after:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", default="main", help="git revision to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ready-") as tmp:
        asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    main()
