"""One bad target never stops the milestone checks of the others (issue 17): targets stored before
membership validated them (period `PY9999`, a KPI that does not exist) are published straight to
Kafka, as an old or buggy producer would, and the metrics service process (real Tansu + SecantusDB)
still announces another partnership's target reached, and counts what it skipped. (A `PY9999`
stored before the bounds existed is skipped as `bad_period` by the same check.)"""

from datetime import date

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.catalog import SIGNALS
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.envelope import new_event, parse_event
from shared.kafka import ensure_topics
from tests.integration.metrics.test_service import send
from tests.integration.topics import read_topic

pytestmark = pytest.mark.integration

BAD, GOOD = "aa-old-targets", "zz-good"  # the bad partnership sorts first: it is looked at first


def hire(pid: str, n: int) -> out.HireRecorded:
    return out.HireRecorded(partnership_id=pid, hire_id=f"h-{n}", person_id=f"p-{n}", employer_id="microboard",
                            soc_code="51-4041", start_date=date(2025, 9, n), hourly_wage=24.5, resident=True)


async def test_a_bad_target_leaves_other_partnerships_milestones_announced(start_service, kafka_settings):
    await ensure_topics(kafka_settings)
    service = start_service("metrics", {"METRICS_MILESTONE_INTERVAL_SECONDS": "0.5"})
    # PY9999 breaks today's contract: built unchecked, as an old producer sent it; metrics refuses it.
    events = [mem.TargetSet.model_construct(partnership_id=BAD, kpi="hires", period="PY9999", value=1),
              mem.TargetSet(partnership_id=BAD, kpi="retention_90d", period="PY2025", value=0.8),
              mem.TargetSet(partnership_id=GOOD, kpi="hires", period="PY2025", value=2),
              hire(BAD, 1), hire(GOOD, 2), hire(GOOD, 3)]
    await send(kafka_settings, [new_event(data, source="/old-producer") for data in events])

    def reached(records: list) -> set:
        return {(m.data.partnership_id, m.data.kpi, m.data.period, m.data.reason, m.data.threshold)
                for m in map(parse_event, (r.value for r in records))}

    announced = reached(await read_topic(kafka_settings, SIGNALS, timeout=30, settle=1,
                                         until=lambda rs: (GOOD, "hires", "PY2025", "target", 2.0) in reached(rs)))
    assert not {m for m in announced if m[0] == BAD}  # nothing of the bad targets is announced

    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        metrics = {f.name: f for f in text_string_to_metric_families((await http.get("/metrics")).text)}
    skipped = {s.labels["reason"]: s.value for s in metrics["backbone_metrics_milestone_checks_skipped"].samples
               if s.name.endswith("_total")}
    assert skipped["unknown_kpi"] >= 1 and skipped["error"] == 0
