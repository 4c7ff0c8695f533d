"""100k mixed events from several producer processes (two over HTTP, two straight to Kafka, 2% of
them sent twice) while every service is SIGKILLed and restarted three times and a second
metrics instance joins and leaves the consumer group. Afterwards: every acknowledged HTTP event is
on the topic, nothing is lost, nothing is counted twice, and every KPI equals the count computed
here, independently, from the stream's own rule. BACKBONE_CHAOS_EVENTS sets the size."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from cli.stack import free_port, stop_process
from shared.catalog import OUTCOMES
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.envelope import new_event
from shared.kafka import ensure_topics, make_producer, publish_many
from tests.e2e.chaos.stream import EMPLOYERS, PARTNERSHIPS, event
from tests.integration.topics import read_topic
from tests.roster_probe import until_roster_known

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
KEY = "chaos-operator-key"
EVENTS = int(os.environ.get("BACKBONE_CHAOS_EVENTS", "100000"))
AUTH = {"authorization": f"Bearer {KEY}"}


class Process:
    """A service on a fixed port, so clients find it again after each restart."""

    def __init__(self, name: str, env: dict[str, str], logs: Path, instance: int = 1):
        self.name, self.port, self.logs, self.instance = name, free_port(), logs, instance
        self.env = os.environ | env | {f"{name.upper()}_PORT": str(self.port), "BACKBONE_AUTH_OPERATOR_KEY": KEY}
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> "Process":
        log = (self.logs / f"{self.name}-{self.instance}.log").open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", f"services.{self.name}.app"], cwd=ROOT,
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.kills += 1

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def expected() -> dict[str, Counter]:
    """KPIs of program year 2025 per partnership, from the producer's rule, not the service's code."""
    counts = {pid: Counter() for pid in PARTNERSHIPS}
    for i in range(EVENTS):
        data = event(i).data
        c = counts[data.partnership_id]
        if isinstance(data, out.HireRecorded):
            c["hires"] += 1
            c["residents"] += data.resident
        elif isinstance(data, out.PlacementRecorded):
            c["placements"] += 1
        else:
            c["credentials_earned"] += 1
    return counts


async def wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"{what}: not in {timeout:.0f}s"
        await asyncio.sleep(0.5)
    return result


async def test_a_hundred_thousand_events_through_kills_and_rebalances(service_env, kafka_settings, tmp_path):
    started = time.monotonic()
    env = service_env | {"METRICS_MILESTONE_INTERVAL_SECONDS": "5"}
    services = {n: Process(n, env, tmp_path).start() for n in ("membership", "events", "metrics", "notify")}
    second = Process("metrics", env, tmp_path, instance=2)
    producers: list[subprocess.Popen] = []
    try:
        for service in services.values():
            await wait(lambda s=service: asyncio.to_thread(s.ready), 60, f"{service.name} ready")
        await seed(kafka_settings, services["events"].url)

        share = EVENTS // 4
        for k, mode in enumerate(("http", "kafka", "http", "kafka")):
            target = (
                services["events"].url
                if mode == "http"
                else f"{kafka_settings.bootstrap_servers}|{kafka_settings.namespace}"
            )
            count = share if k < 3 else EVENTS - 3 * share
            producers.append(subprocess.Popen([sys.executable, ROOT / "tests/e2e/chaos/stream.py", mode, str(k * share),
                                               str(count), target, tmp_path / f"accepted-{k}-{mode}.txt"],
                                              stdout=(tmp_path / f"producer-{k}.log").open("wb"),
                                              stderr=subprocess.STDOUT))

        # Chaos while the producers run: each service killed in turn, three rounds, the next kill
        # once the last victim is back (so the stream moves on however slow the machine is); the
        # second metrics instance joins after the first round and leaves after the second.
        order = ["events", "metrics", "membership", "notify"]
        for round_ in range(1, 3 * len(order) + 1):
            victim = services[order[(round_ - 1) % len(order)]]
            victim.kill()
            victim.start()
            await wait(lambda v=victim: asyncio.to_thread(v.ready), 90, f"{victim.name} back")
            if round_ == len(order):
                second.start()
            if round_ == 2 * len(order):
                stop_process(second.process.pid, timeout=15)
            await asyncio.sleep(1.5)
        while any(p.poll() is None for p in producers):
            await asyncio.sleep(0.5)
        assert all(p.wait() == 0 for p in producers), [
            (tmp_path / f"producer-{k}.log").read_text()[-2000:] for k in range(4)
        ]
        assert all(s.kills == 3 for s in services.values())

        for service in services.values():
            await wait(lambda s=service: asyncio.to_thread(s.ready), 60, f"{service.name} ready again")
        want = expected()
        async with httpx.AsyncClient(base_url=services["metrics"].url, headers=AUTH, timeout=30) as http:
            async def stored() -> dict | None:
                values = {}
                for pid in PARTNERSHIPS:
                    answer = await http.get("/kpis/values", params={"scope_id": pid, "period": "PY2025"})
                    if answer.status_code != 200:
                        return None
                    values[pid] = answer.json()["values"]
                done = all(
                    values[p]["hires"] + values[p]["placements"] + values[p]["credentials_earned"]
                    >= want[p]["hires"] + want[p]["placements"] + want[p]["credentials_earned"]
                    for p in PARTNERSHIPS
                )
                return values if done else None

            values = await wait(stored, 300, "KPIs caught up")
            await asyncio.sleep(3)  # anything still arriving would now be a double count
            values = await stored()
        for pid in PARTNERSHIPS:
            got, exp = values[pid], want[pid]
            assert (got["hires"], got["placements"], got["credentials_earned"]) == (
                exp["hires"], exp["placements"], exp["credentials_earned"]), pid
            assert got["local_hire_rate"] == pytest.approx(exp["residents"] / exp["hires"])

        acknowledged_over_http = set()
        for k in (0, 2):
            acknowledged_over_http |= set((tmp_path / f"accepted-{k}-http.txt").read_text().split())
        on_topic = {orjson.loads(r.value)["id"] for r in await read_topic(kafka_settings, OUTCOMES, timeout=120)}
        assert acknowledged_over_http <= on_topic and len(acknowledged_over_http) == 2 * share
        print(f"\nchaos: {EVENTS:,} events, {sum(s.kills for s in services.values())} kills, "
              f"{time.monotonic() - started:.0f} s")
    finally:
        for p in producers:
            if p.poll() is None:
                p.kill()
        for service in (*services.values(), second):
            if service.process and service.process.poll() is None:
                stop_process(service.process.pid, timeout=15)


async def seed(kafka_settings, events_url: str) -> None:
    """The roster the hires refer to, and a probe (dated outside PY2025) that proves the events
    service has it."""
    await ensure_topics(kafka_settings)
    roster = []
    for pid in PARTNERSHIPS:
        roster.append(
            mem.PartnershipCreated(partnership_id=pid, name=pid, region_id="r", sector_id="s", stage="launched")
        )
        for org in (*EMPLOYERS, "qvcc"):
            roster.append(mem.MemberJoined(partnership_id=pid, membership_id=f"{pid}:{org}", organisation_id=org,
                                           organisation_kind="education" if org == "qvcc" else "employer",
                                           role="member", joined_on="2020-01-01"))
    for org in (*EMPLOYERS, "qvcc"):
        roster.append(mem.OrganisationRegistered(organisation_id=org, name=org,
                                                 kind="education" if org == "qvcc" else "employer"))
    async with make_producer(kafka_settings, "chaos-membership") as producer:
        await publish_many(producer, kafka_settings, [new_event(e, source="/chaos") for e in roster])
    async with httpx.AsyncClient(base_url=events_url, headers=AUTH) as http:
        for pid in PARTNERSHIPS:
            probe = out.HireRecorded(partnership_id=pid, hire_id="probe", person_id="probe", employer_id=EMPLOYERS[-1],
                                     soc_code="51-4041", start_date="2020-01-01", resident=True)
            await until_roster_known(http, probe)
