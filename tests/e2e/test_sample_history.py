"""The sample state and its history through the real APIs (membership, events, metrics as
processes on the local stack), as a newcomer sees it after `./backbone run`: KPIs in both program
years, every kind of outcome, retention, and in Chromium a dashboard with trends, targets and
lineage rows.

BACKBONE_WRITE_SCREENSHOTS=1 writes the README's screenshots from it (docs/screenshots/)."""

import asyncio
import os
from datetime import date

import httpx
import pytest

from cli.membership_client import load_sample
from cli.sample_history import TARGETS, first_month, load_history
from shared.periods import program_year
from tests.e2e.test_pages import SHOTS, browser, login  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

OPERATOR = "sample-history-operator-key"
P = "sw-mp"


async def test_the_sample_history_gives_a_dashboard_with_trends_targets_and_lineage(
        start_service, browser):  # noqa: F811
    env = {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR, "MEMBERSHIP_OUTBOX_POLL_SECONDS": "0.2"}
    membership, events = (start_service(name, env) for name in ("membership", "events"))
    metrics = start_service("metrics", env | {"METRICS_EVENTS_URL": events.url,
                                              "METRICS_TIME_ZONE": "America/New_York"})
    today = date.today()
    with httpx.Client(base_url=membership.url, headers={"authorization": f"Bearer {OPERATOR}"}, timeout=60) as http:
        load_sample(http)
        sent = await asyncio.to_thread(load_history, http, events.url, today)
    assert sent > 0
    years = (program_year(first_month(today)), program_year(today))
    async with httpx.AsyncClient(base_url=metrics.url, headers={"authorization": f"Bearer {OPERATOR}"},
                                 timeout=30) as kpis:
        async with asyncio.timeout(120):
            while True:
                values = [(await kpis.get("/kpis/values", params={"period": py, "scope_id": P})).json()
                          for py in years]
                last_year = values[0].get("values") or {}
                targets = {t["kpi"]: t["target"] for t in values[1].get("targets", [])}
                if all((v.get("values") or {}).get("hires") for v in values) and last_year.get(
                        "retention_90_days") and targets.items() >= TARGETS.items():
                    break
                await asyncio.sleep(1)
    assert all(v["values"]["hires"] > 0 for v in values)
    # A whole program year behind it: every kind of outcome, and retention known.
    for kpi in ("tours_held", "students_reached", "placements", "training_enrolments", "training_completions",
                "credentials_earned", "apprenticeships_started"):
        assert last_year[kpi] > 0, kpi
    assert 0.5 < last_year["retention_90_days"] < 1

    # What a newcomer sees: the overview, the partnership's cards against targets and its trends,
    # a KPI's lineage as readable rows, and the same page on a phone.
    page = await login(browser, metrics.url, OPERATOR)
    await page.goto(metrics.url + "/ui/")
    assert await page.locator("#table-overview tbody tr").count() == 8
    shots = os.environ.get("BACKBONE_WRITE_SCREENSHOTS")
    if shots:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=SHOTS / "overview.png", full_page=True)
    await page.goto(metrics.url + f"/ui/partnerships/{P}")
    cards = await page.locator("#table-kpis").inner_text()
    assert "Hires" in cards and "90" in cards  # a figure against its target
    assert await page.locator("svg rect").count() > 12  # trend bars
    if shots:
        await page.screenshot(path=SHOTS / "partnership.png", full_page=True)
    await page.goto(metrics.url + f"/ui/kpis/hires?partnership={P}")
    lineage = page.locator("table.records tbody tr")
    assert await lineage.count() > 0 and "Hire recorded" in await lineage.first.inner_text()
    if shots:
        await page.screenshot(path=SHOTS / "kpi.png", full_page=True)
        await page.set_viewport_size({"width": 375, "height": 800})
        await page.goto(metrics.url + f"/ui/partnerships/{P}")
        await page.screenshot(path=SHOTS / "partnership-phone.png", full_page=True)
