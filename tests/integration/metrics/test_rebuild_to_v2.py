"""`backbone kpis rebuild` brings a KPI store written by the version-1 rules to version 2, on the
real local stack: the history is on the topics, the store holds what the version-1 rollup made of
it (attendance in the month it was sent, a correction added to the first count, a cancelled
day's students counted), and after the rebuild the KPI API shows the version-2 figures."""

import os
import subprocess
from datetime import UTC, date, datetime

import httpx
import pytest
from aiokafka import TopicPartition

from services.metrics.app import NAME
from services.metrics.domain import Cells
from services.metrics.rollup import SOURCES
from services.metrics.store import Batch, MetricsStore
from shared.contracts import activities as act
from shared.contracts import membership as mem
from shared.envelope import new_event
from shared.kafka import ensure_topics, log_ends
from shared.mongo import make_client
from tests.integration.metrics.test_service import BACKBONE, ROOT, send

pytestmark = pytest.mark.integration

OPERATOR = "operator-key-for-the-v2-rebuild"
AUTH = {"Authorization": f"Bearer {OPERATOR}"}
P = "sw-mp"


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def ev(data, when: datetime):
    return new_event(data, source="/tests/rebuild", time=when)


def history() -> list:
    tour, career_day = date(2025, 9, 20), date(2025, 10, 3)
    return [
        ev(act.ActivityScheduled(partnership_id=P, activity_id="t1", kind="plant_tour", title="Tour",
                                 starts_at=at(tour, 14), ends_at=at(tour, 16), host_ids=["acme"]),
           at(date(2025, 8, 1))),
        ev(act.ActivityCompleted(partnership_id=P, activity_id="t1", kind="plant_tour", completed_at=at(tour, 16)),
           at(tour, 16)),
        ev(act.AttendanceRecorded(partnership_id=P, activity_id="t1", kind="plant_tour", counts={"students": 7}),
           at(date(2025, 12, 1))),
        ev(act.AttendanceRecorded(partnership_id=P, activity_id="t1", kind="plant_tour", counts={"students": 9}),
           at(date(2025, 12, 2))),
        ev(act.ActivityScheduled(partnership_id=P, activity_id="c1", kind="career_day", title="Career day",
                                 starts_at=at(career_day, 9), ends_at=at(career_day, 15), host_ids=["acme"]),
           at(date(2025, 9, 1))),
        ev(act.AttendanceRecorded(partnership_id=P, activity_id="c1", kind="career_day", counts={"students": 30}),
           at(date(2025, 9, 2))),
        ev(act.ActivityCancelled(partnership_id=P, activity_id="c1"), at(date(2025, 9, 3))),
    ]


def version_1_cells(events: list) -> Cells:
    """What the version-1 rollup stored for these events (services/metrics/domain.py before issue
    18): attendance summed into the month of its event time, completions into the month of
    `completed_at`, scheduling only on the roster."""
    cells = Cells()
    roster = cells.at("membership", P, "roster")
    roster.set_latest("partnership:" + P, "", "created", {"name": "SW", "region_id": "r", "sector_id": "s"})
    for e in events:
        month = e.time.astimezone(UTC).date().isoformat()[:7]
        d = e.data
        if isinstance(d, act.AttendanceRecorded):
            facts = cells.at("activities", P, month)
            facts.count("reached:students", d.counts["students"])
            facts.trace("attendance", e.id)
        elif isinstance(d, act.ActivityCompleted):
            facts = cells.at("activities", P, d.completed_at.date().isoformat()[:7])
            facts.count("held:" + d.kind.value)
            facts.trace("held:" + d.kind.value, e.id)
        elif isinstance(d, act.ActivityScheduled):
            roster.set_latest(f"activity:{d.activity_id}", e.time.isoformat(), e.id,
                              {"title": d.title, "kind": d.kind.value})
    return cells


async def ends(kafka_settings) -> dict[TopicPartition, int]:
    return await log_ends(kafka_settings, [TopicPartition(kafka_settings.topic(t.name), p)
                                           for t in SOURCES for p in range(t.partitions)])


async def students(http: httpx.AsyncClient, period: str) -> int:
    response = await http.get("/kpis/values", params={"scope_id": P, "period": period}, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["values"]["students_reached"]


async def test_rebuild_brings_a_version_1_store_to_the_version_2_rules(start_service, kafka_settings, mongo_settings,
                                                                          service_env):
    events = history()
    await ensure_topics(kafka_settings)
    # A partnership record for the API's scope (version 1 kept it on the roster too).
    created = ev(mem.PartnershipCreated(partnership_id=P, name="SW", region_id="r", sector_id="s", stage="launched"),
                 at(date(2025, 7, 1)))
    await send(kafka_settings, [created, *events])

    # The store as version 1 left it: its facts, every offset at the end of the topics.
    client = make_client(mongo_settings)
    try:
        store = MetricsStore(client[mongo_settings.database_prefix + NAME])
        await store.setup()
        moves = {tp: (None, end) for tp, end in (await ends(kafka_settings)).items()}
        await store.apply(1, "current", Batch(cells=version_1_cells(events), moves=moves, seen={}))
        stored = {month: facts.counts["reached:students"] for _, month, facts in await store.dated(1, [P], "2025-07")}
        assert stored == {"2025-09": 30, "2025-12": 16}  # the version-1 figures: wrong month, added, cancelled
    finally:
        await client.close()

    service = start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR})
    rebuild = subprocess.run([*BACKBONE, "kpis", "rebuild"], cwd=ROOT, env=os.environ | service_env,
                             capture_output=True, timeout=90)
    assert rebuild.returncode == 0, rebuild.stdout.decode() + rebuild.stderr.decode()
    assert "version 2 is now current" in rebuild.stdout.decode()
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        assert (await http.get("/kpis/definitions", headers=AUTH)).json()["store_version"] == 2
        assert await students(http, "2025-09") == 9  # the tour's day, the corrected count
        assert await students(http, "2025-12") == 0
        assert await students(http, "2025-Q4") == 0  # the cancelled career day
        values = (await http.get("/kpis/values", params={"scope_id": P, "period": "2025-09"}, headers=AUTH)).json()
        assert values["values"]["tours_held"] == 1
