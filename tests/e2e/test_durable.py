"""`backbone run` on a data directory, as a user runs it: state survives a stop and start, a SIGKILL
of the broker, of the database server or of `run` itself in the middle of a load loses no
acknowledged event and counts none twice, and a backup restored into an empty installation gives
the same KPIs."""

import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from cli.main import ports
from cli.sample_history import wait_until_caught_up
from cli.stack import LocalStack, _alive
from shared.catalog import OUTCOMES
from shared.contracts import outcomes as out
from shared.settings import KafkaSettings
from tests.e2e.chaos.stream import PARTNERSHIPS, event
from tests.e2e.chaos.test_chaos import AUTH, KEY, seed, wait

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def free_port_base() -> int:
    """A base whose ports are all free: leftovers of another run on this machine must not answer."""
    while True:
        base = random.randrange(20000, 30000, 10)
        try:
            for port in ports(base).values():
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue


class Installation:
    """`backbone run --data-dir DIR --port-base N` as a child process."""

    def __init__(self, data_dir: Path, port_base: int):
        self.data_dir, self.port = data_dir, ports(port_base)
        self.argv = ["--data-dir", str(data_dir), "--port-base", str(port_base)]
        self.url = {name: f"http://127.0.0.1:{self.port[name]}" for name in ("membership", "events", "metrics")}
        self.kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{self.port['kafka']}", enable_idempotence=False)
        self.process: subprocess.Popen | None = None
        self.log_file = data_dir.parent / f"{data_dir.name}-run.log"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.main", *args, *self.argv], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    async def start(self) -> "Installation":
        env = os.environ | {"BACKBONE_AUTH_OPERATOR_KEY": KEY, "BACKBONE_KAFKA_SESSION_TIMEOUT_MS": "2000"}
        self.process = subprocess.Popen([sys.executable, "-m", "cli.main", "run", *self.argv], cwd=ROOT, env=env,
                                        stdout=self.log_file.open("ab"),
                                        stderr=subprocess.STDOUT)
        await wait(self.running, 300, "backbone run ready, sample in")
        return self

    async def running(self) -> bool:
        """Up, with the sample and its history in when this start loads them (a test's own load
        must not race the sample's)."""
        assert self.process.poll() is None, self.log()
        log = self.log_file.read_bytes()
        sample_done = b"loading the sample" not in log or re.search(rb"\n  \d+ events\n", log) is not None
        return b"Backbone is running" in log and sample_done and await asyncio.to_thread(self._sample_settled)

    def _sample_settled(self) -> bool:
        """Ready once the sample is in (run loads it after the services are up)."""
        try:
            return self.partnerships() > 0
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) == 0, self.log()
        self.log_file.write_text("")  # the next start's own log

    def kill(self) -> None:
        """SIGKILL of `run` itself: no cleanup of its own; its services and servers are left."""
        self.process.kill()
        self.process.wait()
        self.log_file.write_text("")

    def log(self) -> str:
        return self.log_file.read_text()[-3000:]

    def server_pid(self, name: str) -> int:
        return json.loads((self.data_dir / "stack" / "stack.json").read_text())[f"{name}_pid"]

    def partnerships(self) -> int:
        answer = httpx.get(self.url["membership"] + "/partnerships", params={"limit": 1}, headers=AUTH, timeout=10)
        return answer.raise_for_status().json()["total"]

    async def kpis(self) -> dict[str, dict]:
        async with httpx.AsyncClient(base_url=self.url["metrics"], headers=AUTH, timeout=30) as http:
            values = {}
            for pid in PARTNERSHIPS:
                answer = await http.get("/kpis/values", params={"scope_id": pid, "period": "PY2025"})
                values[pid] = answer.json()["values"] if answer.status_code == 200 else {}
            return values

    async def settled_kpis(self) -> dict[str, dict]:
        """The KPIs once the metrics service has read everything so far (the sample's history
        included): what a test's own load adds to."""
        assert await asyncio.to_thread(wait_until_caught_up, self.url["metrics"], 180), "metrics did not catch up"
        return await self.kpis()

    async def kpis_reach(self, want: dict[str, Counter], timeout: float = 120) -> dict[str, dict]:
        async def caught_up() -> dict | None:
            values = await self.kpis()
            done = all(sum(values[p].get(k, 0) for k in want[p]) >= sum(want[p].values()) for p in PARTNERSHIPS)
            return values if done else None

        await wait(caught_up, timeout, "KPIs caught up")
        await asyncio.sleep(3)  # anything still arriving now would be a double count
        return await self.kpis()


def expected(count: int, baseline: dict[str, dict]) -> dict[str, Counter]:
    """The counts in `baseline` (KPI values per partnership) plus those of events [0, count) of the
    chaos stream, from the stream's own rule."""
    counts = {pid: Counter({k: baseline[pid].get(k, 0) for k in ("hires", "placements", "credentials_earned")})
              for pid in PARTNERSHIPS}
    for i in range(count):
        data = event(i).data
        kind = {out.HireRecorded: "hires", out.PlacementRecorded: "placements"}.get(type(data), "credentials_earned")
        counts[data.partnership_id][kind] += 1
    return counts


def assert_counts(values: dict[str, dict], want: dict[str, Counter]) -> None:
    for pid in PARTNERSHIPS:
        assert {k: values[pid][k] for k in want[pid]} == dict(want[pid]), pid


LOAD_UNTIL_STOPPED = 1_000_000  # events: more than any run sends before the test stops it


def acknowledged(accepted: Path) -> int:
    return len(accepted.read_text().split()) if accepted.exists() else 0


def load(installation: Installation, start: int, count: int, accepted: Path) -> subprocess.Popen:
    """The chaos test's HTTP producer: retries what was not acknowledged, resends 2% by design."""
    return subprocess.Popen([sys.executable, ROOT / "tests/e2e/chaos/stream.py", "http", str(start), str(count),
                             installation.url["events"], accepted], cwd=ROOT,
                            stdout=(accepted.parent / f"{accepted.stem}.log").open("wb"), stderr=subprocess.STDOUT)


async def test_kills_a_stop_and_a_restore_lose_no_acknowledged_event(tmp_path):
    """One installation through what an operator meets, in one load (one sample load for all):
    `run` itself SIGKILLed is started again on its data directory (what it left must be gone);
    then the broker and the database SIGKILLed are restarted by `run`. The load goes on (retrying
    what got no answer) and every acknowledged event is counted once. Then a backup taken while
    running, a stop and start on the same directory, and the backup restored into an empty one
    all give the same KPIs."""
    base = free_port_base()
    installation = await Installation(tmp_path / "first", base).start()
    try:
        await seed(installation.kafka, installation.url["events"])
        baseline = await installation.settled_kpis()
        # The load runs until stopped, so it outlasts the kills however quick ingest gets.
        producer = load(installation, 0, LOAD_UNTIL_STOPPED, tmp_path / "accepted.txt")
        for victim in ("run", "kafka", "mongo"):
            await asyncio.sleep(2)  # in the middle of the load
            assert producer.poll() is None, f"the load ended before {victim} was killed: see accepted.log"
            if victim == "run":
                services = json.loads((tmp_path / "first" / "services.json").read_text())
                installation.kill()
                await installation.start()  # the same ports: what the killed run left must be gone first
                assert not any(_alive(pid) for pid in services.values())
            else:
                os.kill(installation.server_pid(victim), signal.SIGKILL)

                async def restarted(name: str = victim) -> bool:
                    return f"{name} server had stopped: restarted".encode() in installation.log_file.read_bytes()

                await wait(restarted, 60, f"{victim} restarted by run")
        after_kills = acknowledged(tmp_path / "accepted.txt")

        async def went_on() -> bool:  # acknowledged events after the last restart too
            return acknowledged(tmp_path / "accepted.txt") >= after_kills + 1000

        await wait(went_on, 120, "the load going on after the kills")
        producer.send_signal(signal.SIGTERM)  # stops once its batch in progress is acknowledged
        assert await asyncio.to_thread(producer.wait, 300) == 0
        accepted = set((tmp_path / "accepted.txt").read_text().split())
        events = len(accepted)
        assert accepted == {event(i).id for i in range(events)}  # a prefix of the stream, resends included
        outcomes = values_until_quiet(installation.kafka.bootstrap_servers, installation.kafka.topic(OUTCOMES.name))
        on_topic = {json.loads(value)["id"] for value in await asyncio.wait_for(outcomes, 120)}
        assert accepted <= on_topic
        want = expected(events, baseline)
        before = await installation.kpis_reach(want, timeout=180)
        assert_counts(before, want)
        partnerships = installation.partnerships()
        backup = installation.cli("backup", str(tmp_path / "backup.tar.gz"))  # taken while running
        assert backup.returncode == 0, backup.stderr
    finally:
        installation.stop()

    await installation.start()  # same data directory: continues, no second sample load
    try:
        assert installation.partnerships() == partnerships
        assert await installation.kpis_reach(want) == before
    finally:
        installation.stop()

    restored = Installation(tmp_path / "second", base)  # a new, empty directory
    answer = restored.cli("restore", str(tmp_path / "backup.tar.gz"))
    assert answer.returncode == 0, answer.stderr
    await restored.start()
    try:
        assert restored.partnerships() == partnerships
        assert await restored.kpis_reach(want) == before
        # The topics came back too, each with its partitions and records: every acknowledged event
        # is on them, and the restored installation takes new events and counts each once.
        outcomes = values_until_quiet(restored.kafka.bootstrap_servers, restored.kafka.topic(OUTCOMES.name))
        assert accepted <= {json.loads(value)["id"] for value in await asyncio.wait_for(outcomes, 120)}
        more = load(restored, events, 300, tmp_path / "after-restore.txt")
        assert await asyncio.to_thread(more.wait, 300) == 0
        assert set((tmp_path / "after-restore.txt").read_text().split()) == {event(i).id for i in
                                                                            range(events, events + 300)}
        want = expected(events + 300, baseline)
        assert_counts(await restored.kpis_reach(want), want)
    finally:
        restored.stop()


async def _produce_until(bootstrap: str, acked: list[bytes], stop: asyncio.Event) -> None:
    """One record at a time, each kept once the broker acknowledged it; failures are retried."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all",
                                request_timeout_ms=5000, retry_backoff_ms=200)
    await producer.start()
    try:
        while not stop.is_set():
            value = f"record-{len(acked)}-{os.urandom(4).hex()}".encode()
            try:
                await producer.send_and_wait("durable", value, partition=0)
                acked.append(value)
            except KafkaError:
                await asyncio.sleep(0.2)
    finally:
        await producer.stop()


async def values_until_quiet(bootstrap: str, topic: str) -> list[bytes]:
    """A topic's record values, in each partition's order, read until it goes quiet: after a restart
    Tansu may report a stale end offset, so the ends are not asked for (a torn log would never go
    quiet: wait_for ends it)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        values: list[bytes] = []
        while batch := await consumer.getmany(timeout_ms=5000, max_records=5000):
            values += [record.value for records in batch.values() for record in records]
        return values
    finally:
        await consumer.stop()


def _only_retried_copies(values: list[bytes], kills: int) -> bool:
    """A second copy of a record may only follow its first directly: the one record in flight when
    a server died, resent by the producer after its acknowledgement was lost (at least once;
    consumers drop the copy by event id). Anything else means the storage replayed records."""
    seen: set[bytes] = set()
    copies = [index for index, value in enumerate(values) if value in seen or seen.add(value)]
    return len(copies) <= kills and all(values[index] == values[index - 1] for index in copies)


async def test_a_killed_broker_or_object_server_loses_no_ack(tmp_path):
    """The broker's storage on its own: Tansu over cli/objectstore, SIGKILL of the broker, then of
    the object server, in the middle of one load."""
    stack = LocalStack(tmp_path / "stack", data_dir=tmp_path / "data")
    state = stack.up()
    try:
        bootstrap = state.endpoints.bootstrap_servers
        acked: list[bytes] = []
        stop = asyncio.Event()
        producing = asyncio.create_task(_produce_until(bootstrap, acked, stop))
        killed_servers = ("kafka", "s3")
        for server in killed_servers:
            # in the middle of the load; short: Tansu reads the records back (each its own batch)
            # at ~20 a second
            await asyncio.sleep(1)
            before = len(acked)
            killed = getattr(stack.state(), f"{server}_pid")
            os.kill(killed, signal.SIGKILL)

            async def gone(pid: int = killed) -> bool:
                return not _alive(pid)

            async def acking_again(count: int = before) -> bool:
                return len(acked) > count + 20

            await wait(gone, 10, f"the killed {server} server gone")
            assert server in await asyncio.to_thread(stack.revive)
            await wait(acking_again, 60, f"acks after the {server} server's restart")
        stop.set()
        await producing
        values = await values_until_quiet(bootstrap, "durable")
        assert set(acked) <= set(values), f"{len(set(acked) - set(values))} acknowledged records lost"
        assert _only_retried_copies(values, len(killed_servers)), "the log replayed or reordered records"
    finally:
        stack.down()
