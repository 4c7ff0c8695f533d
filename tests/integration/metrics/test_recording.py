"""Recording from the KPI pages on the real stack: the metrics service's forms send what a person
types to the events service's API with that person's key, so the events use cases decide who may
record; the KPIs move, a form sent twice counts once, refusals come back next to the field."""

import asyncio
import re

import httpx
import pytest

from shared.auth import hash_key, new_key
from shared.contracts import membership as mem
from shared.contracts.base import AccessRole
from shared.envelope import new_event
from shared.kafka import publish
from tests.examples import P
from tests.integration.events.conftest import (  # noqa: F401 - fixtures
    OPERATOR_KEY,
    OTHER,
    events_service,
    membership_broker,
    roster,
)

pytestmark = pytest.mark.integration

FORM = f"/ui/partnerships/{P}/record/hire-recorded"
HIRE = {"hire_id": "h-ui-1", "person_id": "p-ui-1", "employer_id": "microboard", "soc_code": "51-4041",
        "start_date": "2026-01-10", "hourly_wage": "24.50", "resident": "yes"}


async def issue(broker, kafka_settings, role: AccessRole, partnership_id: str, *services) -> str:
    """A key as membership issues it; returns the secret once every service's key ring knows it."""
    key_id, secret = new_key()
    await publish(broker, kafka_settings, new_event(
        mem.AccessKeyIssued(key_id=key_id, key_hash=hash_key(secret), role=role, partnership_ids=[partnership_id],
                            label=role.value), source="/backbone/membership"))
    async with httpx.AsyncClient(timeout=5) as http, asyncio.timeout(20):
        for service in services:
            while (await http.get(service.url + "/whoami", headers={"authorization": f"Bearer {secret}"})
                   ).status_code != 200:
                await asyncio.sleep(0.1)
    return secret


async def signed_in(metrics, key: str) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=metrics.url, timeout=10, headers={"origin": metrics.url})
    answer = await http.post("/ui/login", data={"api_key": key, "next": "/ui/"})
    assert answer.status_code == 303, answer.text
    return http


async def form_id(http: httpx.AsyncClient, path: str = FORM) -> str:
    page = await http.get(path)
    assert page.status_code == 200, page.text
    return re.search(r'name="event_id" value="([^"]+)"', page.text).group(1)


async def hires(metrics) -> int | None:
    answer = await httpx.AsyncClient(base_url=metrics.url).get(
        "/kpis/values", params={"scope_id": P, "period": "PY2025"}, headers={"authorization": f"Bearer {OPERATOR_KEY}"})
    return answer.json()["values"]["hires"] if answer.status_code == 200 else None


@pytest.fixture
def metrics(start_service, events_service):  # noqa: F811
    """The metrics service with its recording forms pointed at the events service."""
    return start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY,
                                     "METRICS_EVENTS_URL": events_service.url})


async def test_a_coordinator_records_a_hire_in_the_browser_and_the_kpi_moves_once(
        metrics, events_service, roster, membership_broker, kafka_settings):  # noqa: F811
    admin = await issue(membership_broker, kafka_settings, AccessRole.PARTNERSHIP_ADMIN, P, metrics, events_service)
    http = await signed_in(metrics, admin)
    try:
        async with asyncio.timeout(30):  # until the metrics service has rolled up the roster
            while (page := await http.get(f"/ui/partnerships/{P}")).status_code != 200:
                await asyncio.sleep(0.2)
        assert f"/ui/partnerships/{P}/record" in page.text
        index = await http.get(f"/ui/partnerships/{P}/record")
        assert index.status_code == 200 and FORM in index.text and "Record attendance" in index.text

        event_id = await form_id(http)
        sent = await http.post(FORM, data=HIRE | {"event_id": event_id})
        assert (sent.status_code, sent.headers["location"]) == (303, f"{FORM}?done=accepted")
        assert "Recorded." in (await http.get(sent.headers["location"])).text
        async with asyncio.timeout(30):
            while await hires(metrics) != 1:
                await asyncio.sleep(0.2)

        again = await http.post(FORM, data=HIRE | {"event_id": event_id})  # the same form sent twice
        assert again.headers["location"] == f"{FORM}?done=duplicate"
        another = await http.post(FORM, data=HIRE | {"hire_id": "h-ui-2", "event_id": await form_id(http)})
        assert another.headers["location"] == f"{FORM}?done=accepted"
        async with asyncio.timeout(30):
            while await hires(metrics) != 2:
                await asyncio.sleep(0.2)
    finally:
        await http.aclose()


async def test_a_refusal_is_shown_next_to_the_field_with_what_was_typed_kept(
        metrics, events_service, roster, membership_broker, kafka_settings):  # noqa: F811
    admin = await issue(membership_broker, kafka_settings, AccessRole.PARTNERSHIP_ADMIN, P, metrics, events_service)
    http = await signed_in(metrics, admin)
    try:
        typed = HIRE | {"hourly_wage": "lots", "employer_id": "nobody-we-know", "event_id": await form_id(http)}
        refused = await http.post(FORM, data=typed)
        assert refused.status_code == 422
        assert re.search(r'id="hourly_wage-error" class="error">[^<]*number', refused.text), refused.text
        assert 'value="lots"' in refused.text and 'value="nobody-we-know"' in refused.text
        assert 'aria-invalid="true" aria-describedby="hourly_wage-error"' in refused.text

        unknown = await http.post(FORM, data=HIRE | {"employer_id": "nobody-we-know", "event_id": "e-unknown"})
        assert unknown.status_code == 422 and 'id="employer_id-error"' in unknown.text
    finally:
        await http.aclose()


async def test_viewers_other_partnerships_and_other_sites_cannot_record(
        metrics, events_service, roster, membership_broker, kafka_settings):  # noqa: F811
    viewer = await issue(membership_broker, kafka_settings, AccessRole.VIEWER, P, metrics, events_service)
    stranger = await issue(membership_broker, kafka_settings, AccessRole.PARTNERSHIP_ADMIN, OTHER, metrics,
                           events_service)
    admin = await issue(membership_broker, kafka_settings, AccessRole.PARTNERSHIP_ADMIN, P, metrics, events_service)
    for key in (viewer, stranger):
        http = await signed_in(metrics, key)
        try:
            for path in (f"/ui/partnerships/{P}/record", FORM):
                assert (await http.get(path)).status_code == 403, path
            refused = await http.post(FORM, data=HIRE | {"event_id": f"e-{key[:6]}"})
            assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
        finally:
            await http.aclose()
    as_viewer = await signed_in(metrics, viewer)
    async with asyncio.timeout(30):
        while (viewer_page := await as_viewer.get(f"/ui/partnerships/{P}")).status_code != 200:
            await asyncio.sleep(0.2)
    await as_viewer.aclose()
    assert "/record" not in viewer_page.text  # no write control shown

    async with httpx.AsyncClient(base_url=metrics.url, timeout=10, headers={"origin": metrics.url}) as anonymous:
        for path in (f"/ui/partnerships/{P}/record", FORM):  # no session: sign in first
            assert (await anonymous.get(path)).headers["location"].startswith("/ui/login?next=")
        assert (await anonymous.post(FORM, data=HIRE)).headers["location"].startswith("/ui/login?next=")
    async with httpx.AsyncClient(base_url=metrics.url, timeout=10) as http:  # a form posted from elsewhere
        await http.post("/ui/login", data={"api_key": admin, "next": "/ui/"}, headers={"origin": metrics.url})
        forged = await http.post(FORM, data=HIRE | {"event_id": "e-forged"}, headers={"origin": "https://evil.test"})
        assert forged.status_code == 403
    assert await hires(metrics) in (0, None)  # nothing of these was recorded


async def test_a_survey_response_with_its_openings_typed_as_rows_counts(
        metrics, events_service, roster, membership_broker, kafka_settings):  # noqa: F811
    admin = await issue(membership_broker, kafka_settings, AccessRole.PARTNERSHIP_ADMIN, P, metrics, events_service)
    http = await signed_in(metrics, admin)
    survey = f"/ui/partnerships/{P}/record/demand-survey-responded"
    try:
        typed = {"survey_round": "2026-spring", "employer_id": "microboard", "responded_on": "2026-03-02",
                 "openings": "51-4041 | 6 | CNC setup, blueprint reading\n17-3026 | 2"}
        sent = await http.post(survey, data=typed | {"event_id": await form_id(http, survey)})
        assert sent.headers["location"] == f"{survey}?done=accepted", sent.text
        async with httpx.AsyncClient(base_url=metrics.url, headers={"authorization": f"Bearer {OPERATOR_KEY}"}) as api:
            async with asyncio.timeout(30):
                while (await api.get("/kpis/values", params={"scope_id": P, "period": "PY2025"})).json().get(
                        "values", {}).get("openings_by_occupation") != {"2026-spring": [
                            {"soc_code": "51-4041", "openings": 6}, {"soc_code": "17-3026", "openings": 2}]}:
                    await asyncio.sleep(0.2)
        refused = await http.post(survey, data=typed | {"openings": "5-40 | 6", "event_id": "e-bad-soc"})
        assert refused.status_code == 422 and 'id="openings-error"' in refused.text  # next to the rows
        assert "5-40 | 6" in refused.text  # what was typed is kept
    finally:
        await http.aclose()
