"""Shared by the benchmarks that run real service processes: a local stack, a service process on
a free port with its own namespace, its peak memory, and a roster the events service accepts."""

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the benches reuse tests/examples.py, which the editable install does not ship

from cli.stack import Endpoints, LocalStack, free_port, stop_process  # noqa: E402
from shared.contracts import membership as mem  # noqa: E402
from shared.contracts import outcomes as out  # noqa: E402
from shared.envelope import new_event  # noqa: E402
from shared.kafka import ensure_topics, make_broker, publish  # noqa: E402
from shared.settings import KafkaSettings  # noqa: E402
from tests.examples import EXAMPLES, example  # noqa: E402
from tests.roster_probe import until_roster_known  # noqa: E402

OPERATOR_KEY = "bench-operator-key"
AUTH = {"authorization": f"Bearer {OPERATOR_KEY}"}


class Service:
    def __init__(self, name: str, endpoints: Endpoints, namespace: str, log: Path, root: Path = ROOT, **env: str):
        """`root`: the source tree to run (another checkout, to compare with); `env` wins over the defaults."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}.app"], cwd=root, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            env=os.environ | endpoints.env() | {
                "BACKBONE_KAFKA_NAMESPACE": namespace, "BACKBONE_MONGO_DATABASE_PREFIX": namespace.replace(".", "_"),
                "BACKBONE_KAFKA_SESSION_TIMEOUT_MS": "2000", "BACKBONE_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
                "BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY, f"{name.upper()}_PORT": str(self.port),
                f"{name.upper()}_LOG_LEVEL": "WARNING"} | env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{name} did not start: see {log}")

    def cpu_seconds(self) -> float:
        """The process's CPU time so far (user + system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def until_idle(self, seconds: float = 2.0, busy_share: float = 0.05) -> None:
        """Waits until the process uses under `busy_share` of a core over `seconds` (its background
        loops, e.g. the milestone checks after a load, have settled)."""
        while True:
            before = self.cpu_seconds()
            await asyncio.sleep(seconds)
            if self.cpu_seconds() - before < busy_share * seconds:
                return

    def peak_memory_mib(self) -> float:
        """The process's peak resident memory (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        stop_process(self.process.pid)


async def seed_roster(kafka: KafkaSettings, events_url: str | None = None) -> None:
    """The partnership and the employer the hires name; waits until the events service knows them."""
    await ensure_topics(kafka)
    broker = make_broker(kafka, "bench-membership")
    await broker.start()
    try:
        for data in (EXAMPLES[mem.PartnershipCreated], EXAMPLES[mem.OrganisationRegistered]):
            await publish(broker, kafka, new_event(data, source="/bench"))
    finally:
        await broker.stop()
    if events_url is None:
        return
    async with httpx.AsyncClient(base_url=events_url, headers=AUTH) as http:
        await until_roster_known(http, example(out.HireRecorded, hire_id="probe"), timeout=30)


STORED = re.compile(r"^backbone_metrics_batch_events_sum (\S+)$", re.M)


async def until_stored(service: Service, total: int, report: bool = True) -> str:
    """Waits until the metrics service has stored `total` records; its /metrics exposition then.
    Says (`report`) how long its slowest /metrics answer took meanwhile: a busy event loop answers late."""
    slowest = 0.0
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            asked = time.perf_counter()
            exposition = (await http.get(service.url + "/metrics")).text
            slowest = max(slowest, time.perf_counter() - asked)
            found = STORED.search(exposition)
            if float(found.group(1) if found else 0) >= total:
                if report:
                    print(f"  slowest /metrics answer while rolling up: {slowest:.2f} s", flush=True)
                return exposition
            await asyncio.sleep(0.1)


def run_on_mongo(bench: Callable[[str], Awaitable[None]]) -> None:
    """Runs `bench(mongo_uri)` on the server of BACKBONE_TEST_MONGO_URI if set, else on a local
    stack started for it and stopped afterwards."""
    if uri := os.environ.get("BACKBONE_TEST_MONGO_URI"):
        asyncio.run(bench(uri))
        return
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        stack = LocalStack(Path(tmp) / "stack")
        endpoints = stack.up().endpoints
        try:
            asyncio.run(bench(endpoints.mongo_uri))
        finally:
            stack.down()
