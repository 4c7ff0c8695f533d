"""The metrics service as its own process on the real local stack (Tansu + SecantusDB): KPIs equal
an independent computation over the distinct events of a scripted scenario, whether every event
is sent once or twice, whether the service is killed with SIGKILL mid-stream, and across a
rebuild into a new store version. Also: bad messages are dead-lettered, milestones are announced
once, partnership keys see only their partnerships, Prometheus shows the rollup."""

import asyncio
import os
import random
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from shared.auth import hash_key, new_key
from shared.catalog import DEAD_LETTER, OUTCOMES, SIGNALS
from shared.contracts.base import AccessRole
from shared.contracts.membership import AccessKeyIssued
from shared.envelope import CloudEvent, new_event, parse_event
from shared.kafka import ensure_topics, make_broker, make_producer, publish, publish_many
from tests.integration.metrics import scenario
from tests.integration.topics import header, read_topic

pytestmark = pytest.mark.integration

OPERATOR = "operator-key-for-metrics-tests"
AUTH = {"Authorization": f"Bearer {OPERATOR}"}
PERIODS = {  # label: (first day, last day)
    "PY2024": (date(2024, 7, 1), date(2025, 6, 30)),
    "PY2025": (date(2025, 7, 1), date(2026, 6, 30)),
    "2025-Q3": (date(2025, 7, 1), date(2025, 9, 30)),
    "2025-Q4": (date(2025, 10, 1), date(2025, 12, 31)),
    "2026-Q2": (date(2026, 4, 1), date(2026, 6, 30)),
    "2026-01": (date(2026, 1, 1), date(2026, 1, 31)),
}
# The CLI from this checkout (the `backbone` script imports the installed package, which may be another one).
BACKBONE = [sys.executable, "-c", "from cli.main import main; raise SystemExit(main())"]
ROOT = Path(__file__).resolve().parents[3]
SCOPES = [("partnership", pid, {pid}) for pid in scenario.PARTNERSHIPS] + [
    ("region", "ct-southwest", {"sw-mp", "sw-health"}),
    ("sector", "manufacturing", {"sw-mp", "sc-mip"}),
    ("state", None, set(scenario.PARTNERSHIPS)),
]


async def send(kafka_settings, events: list[CloudEvent], chunk: int = 500, pause: float = 0.0) -> None:
    async with make_producer(kafka_settings, "scenario") as producer:
        for i in range(0, len(events), chunk):
            await publish_many(producer, kafka_settings, events[i:i + chunk])
            await asyncio.sleep(pause)


async def mismatches(http: httpx.AsyncClient, s: scenario.Scenario) -> list[str]:
    found = []
    for scope, scope_id, pids in SCOPES:
        for label, (first, last) in PERIODS.items():
            params = {"scope": scope, "period": label} | ({"scope_id": scope_id} if scope_id else {})
            response = await http.get("/kpis/values", params=params, headers=AUTH)
            if response.status_code != 200:
                found.append(f"{scope} {scope_id} {label}: HTTP {response.status_code}")
                continue
            got, want = scenario.measured(response.json()["values"]), scenario.expected(s, pids, first, last)
            found += [f"{scope} {scope_id} {label} {k}: {got[k]!r} != {want[k]!r}" for k in want if got[k] != want[k]]
    return found


async def until_kpis_equal(http: httpx.AsyncClient, s: scenario.Scenario, timeout: float = 90.0) -> None:
    """Poll (bounded) until every scope and period equals the independent computation."""
    want = scenario.expected(s, set(scenario.PARTNERSHIPS), *PERIODS["PY2025"])["hires"]
    async with asyncio.timeout(timeout):
        while True:
            state = await http.get("/kpis/values", params={"scope": "state", "period": "PY2025"}, headers=AUTH)
            if state.status_code == 200 and state.json()["values"]["hires"] == want:
                if not await mismatches(http, s):
                    return
            await asyncio.sleep(0.3)


async def assert_kpis_equal(http: httpx.AsyncClient, s: scenario.Scenario) -> None:
    try:
        await until_kpis_equal(http, s)
    except TimeoutError:
        problems = await mismatches(http, s)
        raise AssertionError("KPIs differ from the independent computation:\n" + "\n".join(problems[:30])) from None


@pytest.mark.parametrize("copies", [1, 2], ids=["once", "twice"])
async def test_kpis_equal_an_independent_computation(copies, start_service, kafka_settings):
    s = scenario.build(400)
    await ensure_topics(kafka_settings)
    service = start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR, "METRICS_MAX_BATCH_EVENTS": "100",
                                        "METRICS_MILESTONE_INTERVAL_SECONDS": "0.5"})
    await send(kafka_settings, s.events)
    if copies == 2:  # partners resend: the same ids again, later and in another order
        await send(kafka_settings, list(reversed(s.events)))
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        await assert_kpis_equal(http, s)
        if copies == 1:
            await _check_read_side(http, s, kafka_settings)


async def _check_read_side(http: httpx.AsyncClient, s: scenario.Scenario, kafka_settings) -> None:
    py = {"period": "PY2025"}
    expected_hires = {pid: scenario.expected(s, {pid}, *PERIODS["PY2025"])["hires"] for pid in scenario.PARTNERSHIPS}

    series = (await http.get("/kpis/series", params={"scope": "state", "kpi": "hires", "first": "2025-07",
                                                     "last": "2026-06"}, headers=AUTH)).json()
    assert [p["period"] for p in series["points"]][:2] == ["2025-07", "2025-08"] and len(series["points"]) == 12
    assert sum(p["value"] for p in series["points"]) == sum(expected_hires.values())

    compare = (await http.get("/kpis/compare", params=py | {"kpi": "hires"}, headers=AUTH)).json()
    assert {row["partnership_id"]: row["value"] for row in compare["partnerships"]} == expected_hires
    assert [row["value"] for row in compare["partnerships"]] == sorted(expected_hires.values(), reverse=True)

    lineage = (await http.get("/kpis/lineage", params=py | {"kpi": "hires", "scope_id": "sw-mp"}, headers=AUTH)).json()
    hire_ids = {e.id for e in s.events if e.type.endswith("hire.recorded.v1") and e.data.partnership_id == "sw-mp"
                and PERIODS["PY2025"][0] <= e.data.start_date <= PERIODS["PY2025"][1]}
    assert lineage["events"] == lineage["value"] == expected_hires["sw-mp"] == len(hire_ids)
    assert lineage["complete"] and set(lineage["event_ids"]) == hire_ids

    values = (await http.get("/kpis/values", params=py | {"scope_id": "sw-mp", "as_of": "2026-06-30"},
                             headers=AUTH)).json()
    assert values["targets"] == [{"kpi": "hires", "target": 3.0, "value": expected_hires["sw-mp"],
                                  "percent": round(100 * expected_hires["sw-mp"] / 3, 1),
                                  "on_track": expected_hires["sw-mp"] >= 3}]
    bad = await http.get("/kpis/values", params={"period": "2026-13", "scope_id": "sw-mp"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "period"]
    assert (await http.get("/kpis/values", params=py | {"scope_id": "nowhere"}, headers=AUTH)).status_code == 404

    # Milestones: the hires target of sw-mp, and round numbers, each announced once.
    signals = await read_topic(kafka_settings, SIGNALS, until=bool, timeout=20, settle=1)
    milestones = [parse_event(r.value) for r in signals]
    reached = {(m.data.partnership_id, m.data.kpi, m.data.period, m.data.reason, m.data.threshold) for m in milestones}
    assert ("sw-mp", "hires", "PY2025", "target", 3.0) in reached
    assert len({m.id for m in milestones}) == len(milestones) == len(reached)

    # A careless partner's messages: dead-lettered with the reason; the consumer goes on.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers)
    await producer.start()
    try:
        hire = next(e for e in s.events if e.type.endswith("hire.recorded.v1"))
        wrong = orjson.loads(hire.to_json()) | {"id": "bad-wage"}
        wrong["data"]["hourly_wage"] = -3
        topic = kafka_settings.topic(OUTCOMES.name)
        await producer.send_and_wait(topic, b"{not json", key=b"sw-mp")
        await producer.send_and_wait(topic, orjson.dumps(wrong), key=b"sw-mp")
    finally:
        await producer.stop()
    late = new_event(hire.data.model_copy(update={"hire_id": "late-hire"}), source="/scenario")
    await send(kafka_settings, [late])
    s.hires.append((hire.data.partnership_id, "late-hire", hire.data.start_date, hire.data.resident,
                    hire.data.hourly_wage, hire.data.career_changer))
    await assert_kpis_equal(http, s)
    def of_metrics(records: list) -> list:
        return [r for r in records if header(r, "dl_service") == "metrics"]

    letters = of_metrics(await read_topic(kafka_settings, DEAD_LETTER, until=lambda rs: len(of_metrics(rs)) >= 2,
                                          settle=1))
    assert sorted(dict(r.headers)["dl_reason"].decode() for r in letters) == ["invalid_event", "invalid_json"]
    assert any(b"data.hourly_wage" in dict(r.headers)["dl_detail"] for r in letters)

    metrics = {f.name: f for f in text_string_to_metric_families((await http.get("/metrics")).text)}
    assert metrics["backbone_metrics_batch_events"].samples and metrics["backbone_metrics_batch_seconds"].samples
    lags = {
        (x.labels["topic"], x.labels["partition"]): x.value for x in metrics["backbone_metrics_consumer_lag"].samples
    }
    assert len(lags) == 15 and set(lags.values()) == {0}
    today = date.today()
    current = date(today.year if today.month >= 7 else today.year - 1, 7, 1)
    gauges = {x.labels["partnership"]: x.value for x in metrics["backbone_metrics_kpi_value"].samples
              if x.labels["kpi"] == "hires"}
    assert gauges == {pid: scenario.expected(s, {pid}, current, current.replace(year=current.year + 1, day=30,
                                                                                 month=6))["hires"]
                      for pid in scenario.PARTNERSHIPS}
    consumed = {(x.labels["topic"], x.labels["outcome"]): x.value for x in metrics["backbone_events_consumed"].samples
                if x.name.endswith("_total")}
    assert consumed[("backbone.outcomes", "dead_lettered")] == 2


async def test_partnership_keys_see_only_their_partnerships(start_service, kafka_settings):
    s = scenario.build(60)
    await ensure_topics(kafka_settings)
    service = start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR})
    key_id, secret = new_key()
    broker = make_broker(kafka_settings, "membership")
    await broker.start()
    try:
        await publish(broker, kafka_settings, new_event(
            AccessKeyIssued(key_id=key_id, key_hash=hash_key(secret), role=AccessRole.PARTNERSHIP_ADMIN,
                            partnership_ids=["sw-mp"], label="SW admin"), source="/test"))
    finally:
        await broker.stop()
    await send(kafka_settings, s.events)
    mine = {"Authorization": f"Bearer {secret}"}
    py = {"period": "PY2025"}
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        await assert_kpis_equal(http, s)
        async with asyncio.timeout(20):
            while (await http.get("/kpis/values", params=py | {"scope_id": "sw-mp"}, headers=mine)).status_code != 200:
                await asyncio.sleep(0.1)
        assert (await http.get("/kpis/values", params=py | {"scope_id": "sw-mp"})).status_code == 401
        assert (await http.get("/kpis/values", params=py | {"scope_id": "sc-mip"}, headers=mine)).status_code == 403
        for scope in ("state", "region", "sector"):
            params = py | {"scope": scope, "scope_id": "manufacturing"}
            assert (await http.get("/kpis/values", params=params, headers=mine)).status_code == 403
            assert (await http.get("/kpis/lineage", params=params | {"kpi": "hires"}, headers=mine)).status_code == 403
        compare = (await http.get("/kpis/compare", params=py | {"kpi": "hires"}, headers=mine)).json()
        assert [row["partnership_id"] for row in compare["partnerships"]] == ["sw-mp"]
        assert (await http.get("/kpis/definitions", headers=mine)).json()["store_version"] == 1


async def _stored_progress(mongo_settings) -> int:
    client = AsyncMongoClient(mongo_settings.uri.get_secret_value())
    try:
        db = client[mongo_settings.database_prefix + "metrics"]
        return sum(d["next"] for d in await db["offsets_v1"].find().to_list())
    finally:
        await client.close()


async def test_sigkill_mid_stream_neither_loses_nor_double_counts(start_service, kafka_settings, mongo_settings):
    """Events trickle in while the service consumes them in small batches; it is killed with
    SIGKILL at a random moment, the rest of that part arrives while it is down, it restarts."""
    s = scenario.build(1500, seed=11)
    await ensure_topics(kafka_settings)
    env = {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR, "METRICS_MAX_BATCH_EVENTS": "10"}
    rnd = random.Random(3)
    stream = s.events + rnd.sample(s.events, 200)  # with resends
    parts = [stream[i::4] for i in range(4)]

    service = start_service("metrics", env)
    progress = []
    for part in parts[:3]:
        sending = asyncio.create_task(send(kafka_settings, part, chunk=10, pause=0.02))
        await asyncio.sleep(rnd.uniform(0.3, 1.0))
        service.process.send_signal(signal.SIGKILL)
        service.process.wait(timeout=10)
        assert not sending.done(), "killed mid-stream: the part was still arriving"
        progress.append(await _stored_progress(mongo_settings))
        await sending
        service = start_service("metrics", env)
    await send(kafka_settings, parts[3])
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        await assert_kpis_equal(http, s)
    assert progress == sorted(progress) and progress[-1] < len(stream)


async def test_two_instances_share_the_work_through_rebalances(start_service, kafka_settings):
    """A second instance joins the group, one is killed and comes back, one leaves: partitions move
    between them mid-stream, each resuming from the offsets stored with the facts."""
    s = scenario.build(1200, seed=17)
    await ensure_topics(kafka_settings)
    env = {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR, "METRICS_MAX_BATCH_EVENTS": "10"}
    parts = [s.events[i::3] for i in range(3)]
    first = start_service("metrics", env)
    sending = asyncio.create_task(send(kafka_settings, parts[0]))
    second = start_service("metrics", env)  # joins while the first is busy
    await sending
    sending = asyncio.create_task(send(kafka_settings, parts[1]))
    await asyncio.sleep(random.uniform(0.2, 0.8))
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    await sending
    first = start_service("metrics", env)
    await send(kafka_settings, parts[2])
    assert second.stop() == 0  # leaves the group gracefully
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
        await assert_kpis_equal(http, s)


async def test_rebuild_recomputes_into_a_new_version_and_switches_over(start_service, kafka_settings, service_env):
    s = scenario.build(400, seed=21)
    await ensure_topics(kafka_settings)
    service = start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR, "METRICS_MAX_BATCH_EVENTS": "50"})
    first, rest = s.events[:300], s.events[300:]
    await send(kafka_settings, first)
    rebuild = subprocess.Popen([*BACKBONE, "kpis", "rebuild"], cwd=ROOT,
                               env=os.environ | service_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    await send(kafka_settings, rest)  # the service keeps going while the rebuild runs
    output, _ = rebuild.communicate(timeout=90)
    assert rebuild.returncode == 0, output.decode()
    text = output.decode()
    assert "rebuilding the KPI store into version 2" in text and "records/s" in text
    assert "version 2 is now current" in text
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        assert (await http.get("/kpis/definitions", headers=AUTH)).json()["store_version"] == 2
        await assert_kpis_equal(http, s)
