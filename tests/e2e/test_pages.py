"""The KPI pages end to end: a real metrics service on the real stack, fed catalogue events for
two partnerships, driven by Playwright in Debian's headless Chromium. The numbers shown equal
the JSON API's; sorting, filters, exports, the one-page print view and access all work."""

import asyncio
import re
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from html import escape
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright

from services.metrics import views
from shared.auth import hash_key
from shared.contracts import activities as act
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.contracts.base import OrganisationKind
from shared.envelope import new_event
from shared.kafka import ensure_topics, make_producer, publish_many
from shared.periods import program_year
from tests.examples import EXAMPLES

pytestmark = pytest.mark.integration

OPERATOR = "pages-tests-operator-key"
ADMIN = "pages-tests-admin-key-of-sw-mp"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PY = program_year(date.today())


def state(today: date) -> list:
    """Two partnerships: sw-mp with members, a team, a target, a held tour, an upcoming one and
    five hires this program year; nw-mp with two hires."""
    year_start = date(int(PY[2:]), 7, 1)
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    ex = EXAMPLES
    events = [
        ex[mem.PartnershipCreated],
        ex[mem.PartnershipCreated].model_copy(update={"partnership_id": "nw-mp", "name": "Northwest Manufacturing"}),
        ex[mem.OrganisationRegistered],
        ex[mem.MemberJoined],
        ex[mem.MemberJoined].model_copy(
            update={"membership_id": "m-2", "organisation_id": "qvcc", "organisation_kind": OrganisationKind.EDUCATION}
        ),
        ex[mem.ActionTeamFormed],
        mem.TargetSet(partnership_id="sw-mp", kpi="hires", period=PY, value=20),
        ex[act.ActivityScheduled].model_copy(
            update={
                "activity_id": "tour-9",
                "title": "Career day at ACME",
                "starts_at": soon,
                "ends_at": soon + timedelta(hours=2),
            }
        ),
        ex[act.ActivityCompleted].model_copy(
            update={"completed_at": datetime.combine(year_start, datetime.min.time(), UTC) + timedelta(days=20)}
        ),
        mem.AccessKeyIssued(
            key_id="admin-sw",
            key_hash=hash_key(ADMIN),
            role="partnership_admin",
            partnership_ids=["sw-mp"],
            label="SW-MP admin",
        ),
    ]
    for i in range(7):
        events.append(ex[out.HireRecorded].model_copy(update={
            "hire_id": f"h-{i}", "person_id": f"p-{i}", "partnership_id": "sw-mp" if i < 5 else "nw-mp",
            "resident": i % 2 == 0, "start_date": min(year_start + timedelta(days=31 * i), today)}))
    return events


@pytest.fixture
async def served(start_service, kafka_settings):
    service = start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR})
    await ensure_topics(kafka_settings)
    async with make_producer(kafka_settings, "pages-test") as producer:
        await publish_many(producer, kafka_settings, [new_event(e, source="/test") for e in state(date.today())])
    async with httpx.AsyncClient(base_url=service.url, headers={"authorization": f"Bearer {OPERATOR}"}) as api:
        for _ in range(100):  # until the rollup has stored it all
            r = await api.get("/kpis/values", params={"period": PY, "scope": "state"})
            if r.status_code == 200 and r.json()["values"]["hires"] == 7:
                break
            await asyncio.sleep(0.2)
        yield service, api


@pytest.fixture
async def browser():
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM)
        yield chromium
        await chromium.close()


async def login(browser, url: str, key: str, **context):
    page = await (await browser.new_context(viewport={"width": 1200, "height": 900}, **context)).new_page()
    await page.goto(url + "/ui/login")
    await page.keyboard.press("Tab")  # keyboard only: the skip to the first field works
    while await page.evaluate("document.activeElement.id") != "api_key":
        await page.keyboard.press("Tab")
    await page.keyboard.type(key)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    return page


async def cells(page, table: str, key: str) -> dict[str, str]:
    rows = page.locator(f"#table-{table} tbody tr")
    found = {}
    for i in range(await rows.count()):
        row = rows.nth(i)
        found[await row.get_attribute("data-partnership")] = await row.locator(f'td[data-key="{key}"]').get_attribute(
            "data-value"
        )
    return found


async def test_overview_numbers_sorting_and_exports_equal_the_api(served, browser):
    service, api = served
    page = await login(browser, service.url, OPERATOR)
    assert page.url.endswith("/ui/") and "Statewide overview" in await page.title()
    for pid in ("sw-mp", "nw-mp"):
        values = (await api.get("/kpis/values", params={"period": PY, "scope_id": pid})).json()["values"]
        shown = await cells(page, "overview", "hires")
        assert float(shown[pid]) == values["hires"]
        assert float((await cells(page, "overview", "active_members"))[pid] or 0) == values["active_members"].get(
            "total", 0
        )
    assert list(await cells(page, "overview", "hires")) == ["sw-mp", "nw-mp"]  # highest first
    async with page.expect_navigation():  # the column heading: now lowest first
        await page.locator("#table-overview").get_by_role("link", name="Hires", exact=True).click()
    assert list(await cells(page, "overview", "hires")) == ["nw-mp", "sw-mp"]
    exported = await (await page.request.get(service.url + f"/ui/?period={PY}&format=csv")).text()
    assert re.search(r"^sw-mp,.*,5(\.0)?,", exported, re.M) and exported.splitlines()[0].startswith("Partnership,")


async def test_partnership_page_kpi_page_and_one_page_print(served, browser):
    service, api = served
    page = await login(browser, service.url, OPERATOR)
    await page.goto(service.url + f"/ui/partnerships/sw-mp?period={PY}")
    answer = (await api.get("/kpis/values", params={"period": PY, "scope_id": "sw-mp"})).json()
    card = page.locator('.card[data-kpi="hires"] .value')
    assert float(await card.get_attribute("data-value")) == answer["values"]["hires"] == 5
    assert "25%" in await page.locator('.card[data-kpi="hires"]').inner_text()  # 5 of the target of 20
    assert "Career day at ACME" in await page.locator("#table-upcoming-activities").inner_text()
    assert "employer" in await page.locator("#table-members-by-kind").inner_text()
    assert "Career marketing" in await page.locator("#table-action-teams").inner_text() or \
        await page.locator("#table-action-teams tbody tr").count() == 1
    await page.select_option("#grain", "quarter")  # filter: trends by quarter
    async with page.expect_navigation():
        await page.get_by_role("button", name="Show").click()
    assert "grain=quarter" in page.url and await page.locator("svg.chart").count() == len(views.TRENDS)
    exported = await (
        await page.request.get(service.url + f"/ui/partnerships/sw-mp?period={PY}&table=kpis&format=json")
    ).json()
    assert {r["kpi"]: r["value"] for r in exported["rows"]}["hires"] == answer["values"]["hires"]

    await page.goto(service.url + f"/ui/partnerships/sw-mp/print?period={PY}")
    pdf = await page.pdf(format="Letter", print_background=True, prefer_css_page_size=True)
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == 1

    await page.goto(service.url + f"/ui/kpis/hires?period={PY}")
    compare = (await api.get("/kpis/compare", params={"kpi": "hires", "period": PY})).json()
    shown = page.locator("#table-hires-by-partnership tbody tr")
    assert await shown.count() == len(compare["partnerships"])
    for i, row in enumerate(compare["partnerships"]):
        assert float(await shown.nth(i).locator('td[data-key="value"]').get_attribute("data-value")) == row["value"]
    lineage = (await api.get("/kpis/lineage", params={"kpi": "hires", "period": PY, "scope": "state"})).json()
    assert int(await page.locator("[data-events]").get_attribute("data-events")) == lineage["events"] == 7
    assert "version 1" in await page.locator("h1").inner_text()


async def test_a_partnership_admin_sees_its_own_partnership_only(served, browser):
    service, _ = served
    page = await login(browser, service.url, ADMIN)
    assert page.url.endswith("/ui/partnerships/sw-mp")  # sent to its partnership
    response = await page.goto(service.url + "/ui/partnerships/nw-mp")
    assert response.status == 403 and "no access" in await page.locator("[role=alert]").inner_text()
    assert (await page.goto(service.url + "/ui/")).status == 403
    assert (await page.request.get(service.url + "/ui/partnerships/nw-mp?table=kpis&format=csv")).status == 403
    cookie = [c for c in await page.context.cookies() if c["name"] == "backbone_session"][0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and ADMIN not in cookie["value"]

    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign out").click()
    assert "/ui/login" in page.url
    anonymous = await (await browser.new_context()).new_page()
    await anonymous.goto(service.url + "/ui/partnerships/sw-mp")
    assert "/ui/login" in anonymous.url
    wrong = await login(browser, service.url, "not-a-key")
    assert "not valid" in await wrong.locator("[role=alert]").inner_text()


def page_paths(period: str) -> list[str]:
    return [f"/ui/?period={period}", f"/ui/partnerships/sw-mp?period={period}",
            f"/ui/partnerships/sw-mp/print?period={period}", f"/ui/kpis/hires?period={period}", "/ui/kpis"]


RECORDING = ["/ui/partnerships/sw-mp/record", "/ui/partnerships/sw-mp/record/activity-scheduled",
             "/ui/partnerships/sw-mp/record/activity-completed", "/ui/partnerships/sw-mp/record/attendance-recorded",
             "/ui/partnerships/sw-mp/record/hire-recorded", "/ui/partnerships/sw-mp/record/demand-survey-responded"]


def every_kind_of_period() -> list[str]:
    today = date.today()
    return [PY, f"{today.year}-Q{(today.month - 1) // 3 + 1}", f"{today.year}-{today.month:02d}"]


@asynccontextmanager
async def signed_in(service, key: str):
    """A session as a browser without JavaScript has one: the sign-in form, then its cookie."""
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        await http.post("/ui/login", data={"api_key": key, "next": "/ui/"}, headers={"origin": service.url})
        yield http


async def test_every_period_kind_works_on_every_page_and_a_typo_is_an_html_page(served):
    service, _ = served
    async with signed_in(service, OPERATOR) as http:
        for period in every_kind_of_period():
            for path in page_paths(period):
                assert (await http.get(path)).status_code == 200, path
        for path in page_paths("2026-13x")[:4]:
            answer = await http.get(path)
            assert answer.status_code == 422 and answer.headers["content-type"].startswith("text/html"), path
            assert "is not a period" in answer.text and 'value="2026-13x"' in answer.text  # what was typed is kept
        missing = await http.get("/ui/kpis/no_such_kpi")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
        assert (await http.get("/ui/nowhere")).status_code == 404


async def test_the_kpi_index_lists_and_links_every_kpi(served):
    service, _ = served
    async with signed_in(service, OPERATOR) as http:
        index = (await http.get("/ui/kpis")).text
        for definition in views.DEFINITIONS.values():
            assert re.search(rf'<a href="/ui/kpis/{definition.name}\?[^"]*">{re.escape(escape(definition.title))}</a>',
                             index), definition.name
        partnership = (await http.get("/ui/partnerships/sw-mp", params={"period": PY})).text
    shown = set(re.findall(r'data-kpi="(\w+)"', partnership))
    linked = set(re.findall(r'href="/ui/kpis/(\w+)', partnership))
    assert shown and shown <= linked


async def test_the_partnership_page_shows_no_raw_identifiers_or_python_values(served):
    service, _ = served
    async with signed_in(service, OPERATOR) as http:
        html = (await http.get("/ui/partnerships/sw-mp", params={"period": PY})).text
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|svg)\b.*?</\1>", " ", html, flags=re.S))  # what people read
    for raw in ("active_members", "local_hire_rate", "False", "True", "None"):
        assert raw not in text, raw
    assert re.search(r"(?<![\d.])\d+\.0(?![\d%])", text) is None


async def test_a_scoped_user_sees_no_link_it_cannot_follow(served):
    service, _ = served
    async with signed_in(service, ADMIN) as http:
        header = (await http.get("/ui/partnerships/sw-mp")).text.split("</header>")[0]
        links = re.findall(r'href="([^"]+)"', header)
        assert links and "/ui/" not in links  # the statewide overview is for operators
        for href in links:
            assert (await http.get(href)).status_code == 200, href
        refused = await http.get("/ui/")
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")


async def test_every_page_fits_a_phone_without_scrolling_sideways(served, browser):
    service, _ = served
    page = await login(browser, service.url, OPERATOR)
    await page.set_viewport_size({"width": 375, "height": 800})
    for path in page_paths(PY) + ["/ui/nowhere", "/ui/?period=typo"] + RECORDING:
        await page.goto(service.url + path)
        width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (path, width)


AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"  # ./backbone test installs it


async def serious_violations(page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now: 'rule: target' each."""
    await page.add_script_tag(path=str(AXE))
    found = await page.evaluate("async () => (await axe.run(document)).violations")
    return [f"{v['id']}: {node['target']}" for v in found if v["impact"] in ("serious", "critical")
            for node in v["nodes"]]


async def test_every_page_has_no_serious_accessibility_violation(served, browser):
    service, _ = served
    axe_may_run = {"bypass_csp": True}  # the pages allow no script; axe is one
    anonymous = await (await browser.new_context(**axe_may_run)).new_page()
    await anonymous.goto(service.url + "/ui/login")
    assert await serious_violations(anonymous) == [], "/ui/login"
    page = await login(browser, service.url, OPERATOR, **axe_may_run)
    for path in page_paths(PY) + ["/ui/nowhere", "/ui/?period=typo"]:
        await page.goto(service.url + path)
        assert await serious_violations(page) == [], path
    admin = await login(browser, service.url, ADMIN, **axe_may_run)
    await admin.goto(service.url + "/ui/partnerships/nw-mp")  # the page saying no
    assert await serious_violations(admin) == [], "denied"
    for path in RECORDING:
        await admin.goto(service.url + path)
        assert await serious_violations(admin) == [], path
