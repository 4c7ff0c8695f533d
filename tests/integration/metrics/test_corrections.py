"""Correcting from the pages on the real stack: a coordinator voids or corrects a recorded outcome
from the records page (a correcting event: history and lineage stay true), the KPIs follow, the
lineage reads as rows (what, when, who); viewers see figures, never records or their controls."""

import asyncio
import re

import httpx
import pytest

from shared.contracts.base import AccessRole
from tests.examples import P
from tests.integration.events.conftest import (  # noqa: F401 - fixtures
    OPERATOR_KEY,
    events_service,
    membership_broker,
    roster,
)
from tests.integration.metrics.test_recording import FORM, HIRE, form_id, issue, metrics, signed_in  # noqa: F401

pytestmark = pytest.mark.integration

RECORDS = f"/ui/partnerships/{P}/records"


async def values(service) -> dict:
    answer = await httpx.AsyncClient(base_url=service.url).get(
        "/kpis/values", params={"scope_id": P, "period": "PY2025"}, headers={"authorization": f"Bearer {OPERATOR_KEY}"})
    return answer.json()["values"] if answer.status_code == 200 else {}


async def until_kpis(service, **expected) -> None:
    async with asyncio.timeout(30):
        while {k: (await values(service)).get(k) for k in expected} != expected:
            await asyncio.sleep(0.2)


def row(page: str, hire_id: str) -> str:
    """The records table's row of a hire."""
    found = [r for r in re.findall(r"<tr data-record=.*?</tr>", page, re.S) if f">hire {hire_id} · " in r]
    assert len(found) == 1, page
    return found[0]


def void_form(row_html: str) -> dict:
    return dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', row_html))


async def test_a_coordinator_voids_and_corrects_a_hire_and_the_kpis_follow(
        metrics, events_service, roster, membership_broker, kafka_settings):  # noqa: F811
    admin = await issue(membership_broker, kafka_settings, AccessRole.PARTNERSHIP_ADMIN, P, metrics, events_service)
    http = await signed_in(metrics, admin)
    try:
        for hire_id, wage in (("h-c-1", "20"), ("h-c-2", "30")):
            sent = await http.post(FORM, data=HIRE | {"hire_id": hire_id, "hourly_wage": wage,
                                                      "event_id": await form_id(http)})
            assert sent.status_code == 303, sent.text
        await until_kpis(metrics, hires=2, median_starting_wage=25.0)

        page = (await http.get(RECORDS)).text
        assert "Hire recorded" in row(page, "h-c-1") and "in effect" in row(page, "h-c-1")
        assert re.search(r"<td>key [0-9a-f]+</td>", row(page, "h-c-1"))  # who recorded it

        # Void the first: it stays in the records, marked, and leaves the KPIs.
        void = void_form(row(page, "h-c-1")) | {"reason": "entered for the wrong partnership"}
        voided = await http.post(f"{RECORDS}/void", data=void)
        assert (voided.status_code, voided.headers["location"]) == (303, f"{RECORDS}?done=voided")
        await until_kpis(metrics, hires=1, median_starting_wage=30.0)
        page = (await http.get(voided.headers["location"])).text
        assert "Voided:" in page and 'name="reason"' not in row(page, "h-c-1")
        assert f"voided (<code>{void['event_id']}</code>)" in row(page, "h-c-1")  # by the void's id
        assert "Outcome voided" in page  # the void is a record of its own
        # The same form again is the same void; a second void of the record is refused in words.
        assert (await http.post(f"{RECORDS}/void", data=void)).status_code == 303
        again = await http.post(f"{RECORDS}/void", data=void | {"event_id": "another-void"})
        assert again.status_code == 422 and "voided already" in again.text

        # Correct the second: its form comes filled with what it said; saving voids it and records the new one.
        correct = re.search(r'href="([^"]+\?correct=[^"]+)"', row(page, "h-c-2")).group(1).replace("&amp;", "&")
        form = await http.get(correct)
        assert form.status_code == 200 and 'value="h-c-2"' in form.text and 'value="30.0"' in form.text
        typed = dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', form.text))
        corrected = await http.post(FORM, data=HIRE | typed | {"hire_id": "h-c-2", "hourly_wage": "28",
                                                                "start_date": "2026-02-02"})
        assert (corrected.status_code, corrected.headers["location"]) == (303, f"{RECORDS}?done=corrected")
        await until_kpis(metrics, hires=1, median_starting_wage=28.0)

        # The KPI page's lineage reads as rows: the records and their voids, with who sent them.
        kpi = await http.get("/ui/kpis/hires", params={"partnership": P, "period": "PY2025"})
        assert kpi.status_code == 200
        lineage = kpi.text[kpi.text.index("<h2>Lineage</h2>"):]
        assert lineage.count("Hire recorded") == 3 and lineage.count("Outcome voided") == 2
        assert "start date 2026-02-02" in lineage
    finally:
        await http.aclose()


async def test_viewers_see_no_records_and_cannot_void(
        metrics, events_service, roster, membership_broker, kafka_settings):  # noqa: F811
    admin = await issue(membership_broker, kafka_settings, AccessRole.PARTNERSHIP_ADMIN, P, metrics, events_service)
    viewer = await issue(membership_broker, kafka_settings, AccessRole.VIEWER, P, metrics, events_service)
    recorder, reader = await signed_in(metrics, admin), await signed_in(metrics, viewer)
    try:
        sent = await recorder.post(FORM, data=HIRE | {"hire_id": "h-v-1", "event_id": await form_id(recorder)})
        assert sent.status_code == 303
        await until_kpis(metrics, hires=1)
        void = void_form(row((await recorder.get(RECORDS)).text, "h-v-1")) | {"reason": "a viewer's try"}

        assert (await reader.get(RECORDS)).status_code == 403
        refused = await reader.post(f"{RECORDS}/void", data=void)
        assert refused.status_code == 403
        kpi = await reader.get("/ui/kpis/hires", params={"partnership": P, "period": "PY2025"})
        assert kpi.status_code == 200 and "Hire recorded" not in kpi.text and 'name="reason"' not in kpi.text
        await until_kpis(metrics, hires=1)  # nothing was voided
    finally:
        await recorder.aclose()
        await reader.aclose()
