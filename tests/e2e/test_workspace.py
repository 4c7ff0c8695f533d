"""A partnership coordinator's workspace, as a person uses it in Chromium on the real stack
(metrics pages, events service, broker, database): sign in, schedule a plant tour, complete it,
record its attendance and a hire, correct the hire, share the infographic with a funder and
revoke the link; a viewer sees the figures but no way to record. The KPIs are read back from the
JSON API, so what the browser did is what Backbone counts.

BACKBONE_WRITE_SCREENSHOTS=1 also writes the workspace screenshots the README shows."""

import asyncio
import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.metrics.roster import FORMS
from shared.contracts.base import AccessRole
from shared.periods import program_year
from tests.e2e.test_pages import SHOTS, browser, login, serious_violations  # noqa: F401 - fixtures
from tests.examples import P
from tests.integration.events.conftest import (  # noqa: F401 - fixtures
    OPERATOR_KEY,
    events_service,
    membership_broker,
    roster,
)
from tests.integration.membership.conftest import client
from tests.integration.membership.test_api import MICROBOARD, REGION, SECTOR, SW
from tests.integration.metrics.test_recording import issue
from tests.integration.metrics.test_roster_pages import issued, services  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

MINUTE = "%Y-%m-%dT%H:%M"
EASTERN = ZoneInfo("America/New_York")


@pytest.fixture
def metrics(start_service, events_service):  # noqa: F811
    """The pages of an installation in Connecticut: times typed and shown in Eastern time."""
    return start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY, "METRICS_TIME_ZONE": EASTERN.key,
                                     "METRICS_EVENTS_URL": events_service.url})


async def kpis(service, period: str) -> dict:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        answer = await http.get("/kpis/values", params={"scope_id": P, "period": period},
                                headers={"authorization": f"Bearer {OPERATOR_KEY}"})
    return answer.json()["values"] if answer.status_code == 200 else {}


async def until_kpis(service, period: str, **expected) -> None:
    async with asyncio.timeout(30):
        while {k: (await kpis(service, period)).get(k) for k in expected} != expected:
            await asyncio.sleep(0.2)


async def record(page, form: str, fields: dict[str, str], selects: dict[str, str] = {}) -> None:  # noqa: B006
    """Open a form from the record index, fill it as a person would, send it; it must say Recorded."""
    await page.get_by_role("link", name=form).first.click()  # in the index, or "something else to record"
    for name, value in fields.items():
        await page.locator(f'[id="{name}"]').fill(value)
    for name, value in selects.items():
        await page.locator(f'[id="{name}"]').select_option(value)
    await page.get_by_role("button", name=form).click()
    await page.get_by_role("status").filter(has_text="Recorded.").wait_for()


async def card(page, kpi: str) -> str:
    return await page.locator(f'.card[data-kpi="{kpi}"] .value').inner_text()


async def fits_a_phone(page) -> None:
    """The page as it is now, at a phone's width: nothing to scroll sideways; then back to a desk."""
    await page.set_viewport_size({"width": 375, "height": 800})
    width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], (page.url, width)
    await page.set_viewport_size({"width": 1200, "height": 900})


async def test_a_coordinator_records_corrects_and_shares_and_a_viewer_only_reads(
        metrics, events_service, roster, membership_broker, kafka_settings, browser):  # noqa: F811
    admin = await issue(membership_broker, kafka_settings, AccessRole.PARTNERSHIP_ADMIN, P, metrics, events_service)
    viewer = await issue(membership_broker, kafka_settings, AccessRole.VIEWER, P, metrics, events_service)
    page = await login(browser, metrics.url, admin, bypass_csp=True)  # bypass_csp: axe runs as a script
    async with asyncio.timeout(30):  # until the metrics service has rolled up the roster
        while (await page.goto(metrics.url + f"/ui/partnerships/{P}")).status != 200:
            await asyncio.sleep(0.2)

    # Schedule a plant tour two days ago, complete it, record who came, and a hire that came of it;
    # its times typed as the coordinator reads a clock in Connecticut.
    starts = datetime.now(EASTERN).replace(second=0, microsecond=0, tzinfo=None) - timedelta(days=2)
    getting_started = page.get_by_role("region", name="Getting started")  # what an empty partnership offers
    await getting_started.get_by_role("link", name="Record an activity or outcome").click()
    await record(page, "Schedule an activity",
                 {"activity_id": "tour-web-1", "title": "Plant tour at Microboard",
                  "starts_at": starts.strftime(MINUTE), "ends_at": (starts + timedelta(hours=2)).strftime(MINUTE),
                  "host_ids": "microboard"},
                 {"kind": "plant_tour"})
    await record(page, "Complete an activity",
                 {"activity_id": "tour-web-1", "completed_at": (starts + timedelta(hours=2)).strftime(MINUTE),
                  "participant_ids": "microboard"}, {"kind": "plant_tour"})
    await record(page, "Record attendance", {"activity_id": "tour-web-1", "counts.students": "24"},
                 {"kind": "plant_tour"})
    await record(page, "Record a hire",
                 {"hire_id": "h-web-1", "person_id": "p-web-1", "employer_id": "microboard", "soc_code": "51-4041",
                  "start_date": starts.date().isoformat(), "hourly_wage": "21", "source_activity_id": "tour-web-1"})
    operator = {"authorization": f"Bearer {OPERATOR_KEY}"}
    async with httpx.AsyncClient(base_url=events_service.url, headers=operator) as api:
        tour = (await api.get(f"/partnerships/{P}/activities/tour-web-1")).json()
    assert datetime.fromisoformat(tour["starts_at"]) == starts.replace(tzinfo=EASTERN)  # the same moment, in UTC
    period = program_year(starts.date())
    await until_kpis(metrics, period, tours_held=1, students_reached=24, hires=1, median_starting_wage=21.0)
    await page.goto(metrics.url + f"/ui/partnerships/{P}?period={period}")  # the cards say so too
    assert await card(page, "hires") == "1" and await card(page, "tours_held") == "1"

    # The wage was typed wrong: correct the hire from the records page.
    await page.goto(metrics.url + f"/ui/partnerships/{P}/records")
    assert await serious_violations(page) == [], "records"
    hire_row = page.locator("tr[data-record]").filter(has_text="hire h-web-1")
    await hire_row.get_by_role("link", name="Correct").click()
    assert await page.locator('[id="hourly_wage"]').input_value() == "21.0"  # filled with what it said
    assert await serious_violations(page) == [], "correction form"
    await page.locator('[id="hourly_wage"]').fill("23.5")
    await page.get_by_role("button", name="Save the correction").click()
    await page.get_by_role("status").filter(has_text="Corrected").wait_for()
    await until_kpis(metrics, period, hires=1, median_starting_wage=23.5)
    assert await page.locator("tr[data-record]").filter(has_text="Outcome voided").count() == 1
    if os.environ.get("BACKBONE_WRITE_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=SHOTS / "records.png", full_page=True)
    await fits_a_phone(page)
    # The KPI's page shows the corrected figure, and its lineage the hire, its void and the corrected hire.
    await page.goto(metrics.url + f"/ui/kpis/median_starting_wage?partnership={P}&period={period}")
    lineage = page.locator("table.records tbody tr")
    assert [await lineage.nth(i).locator("td").nth(1).inner_text() for i in range(await lineage.count())] == [
        "Hire recorded", "Outcome voided", "Hire recorded"]
    assert "$23.50" in await page.locator("#table-median_starting_wage-by-month").inner_text()
    if os.environ.get("BACKBONE_WRITE_SCREENSHOTS"):
        await page.screenshot(path=SHOTS / "lineage.png", full_page=True)

    # Share the infographic with a funder, who opens it without an account; then revoke it.
    await page.goto(metrics.url + f"/ui/partnerships/{P}")
    await page.get_by_role("link", name="Share links").click()
    await page.locator('[id="label"]').fill("State funder")
    await page.get_by_role("button", name="Create a share link").click()
    link = await page.locator('[id="new-link"]').input_value()
    assert await serious_violations(page) == [], "share links"
    await fits_a_phone(page)
    funder = await (await browser.new_context()).new_page()
    assert (await funder.goto(link)).status == 200 and "Hires" in await funder.content()
    await page.get_by_role("button", name="Revoke the link for State funder").click()
    await page.locator("tr[data-share]").filter(has_text="revoked").wait_for()
    refused = await funder.goto(link)
    assert refused.status == 404 and "revoked" in await funder.content()

    # A viewer (a board member) reads the figures and is offered no way to change them.
    reader = await login(browser, metrics.url, viewer)
    await reader.goto(metrics.url + f"/ui/partnerships/{P}")
    assert await reader.get_by_role("link", name="Record an activity or outcome").count() == 0
    assert await reader.get_by_role("link", name="Share links").count() == 0
    for path in ("/record/hire-recorded", "/records", "/shares"):
        answer = await reader.goto(metrics.url + f"/ui/partnerships/{P}{path}")
        assert answer.status == 403, path
    await until_kpis(metrics, period, hires=1, median_starting_wage=23.5)


async def test_the_roster_pages_are_accessible_and_fit_a_phone(services, browser):  # noqa: F811
    membership, pages = services
    async with client(membership) as operator:
        for path, body in (("/regions", REGION), ("/sectors", SECTOR), ("/partnerships", SW),
                           ("/organisations", MICROBOARD)):
            assert (await operator.post(path, json=body)).status_code == 201, path
        joined = await operator.post(f"/partnerships/{SW['id']}/members",
                                     json={"organisation_id": "microboard", "joined_on": "2025-08-01"})
        assert joined.status_code == 201
    admin = await issued(membership, pages, "partnership_admin", "coordinator")
    page = await login(browser, pages.url, admin, bypass_csp=True)
    address = f"/ui/partnerships/{SW['id']}/roster"
    async with asyncio.timeout(30):  # until the metrics service has rolled up the partnership
        while (await page.goto(pages.url + address)).status != 200:
            await asyncio.sleep(0.2)
    for path in [address] + [f"{address}/{slug}" for slug in FORMS]:
        assert (await page.goto(pages.url + path)).status == 200, path
        assert await serious_violations(page) == [], path
        await fits_a_phone(page)
