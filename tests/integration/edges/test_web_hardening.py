"""The KPI pages (/ui) against attacks on a web application, on a real metrics service process:
a cookie replayed after sign-out, forms posted from another site, guessing keys at the sign-in
form, framing and script injection (headers), spreadsheet formulas in CSV exports, and a viewer
key reaching beyond its partnership."""

import asyncio
from datetime import date

import httpx
import pytest

from services.metrics.pages import COOKIE
from shared.auth import hash_key
from shared.contracts import membership as mem
from shared.envelope import new_event
from shared.kafka import ensure_topics, make_broker, publish
from shared.periods import program_year
from tests.examples import EXAMPLES

pytestmark = pytest.mark.integration

OPERATOR = "hardening-operator-key"
VIEWER = "hardening-viewer-key-of-sw-mp"
FORMULA = '=HYPERLINK("http://x")'
PY = program_year(date.today())


@pytest.fixture
async def served(start_service, kafka_settings):
    """A metrics service that knows two partnerships (one named like a formula) and a viewer of one."""
    service = start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR})
    await ensure_topics(kafka_settings)
    broker = make_broker(kafka_settings, "hardening-test")
    await broker.start()
    try:
        for event in (
            EXAMPLES[mem.PartnershipCreated].model_copy(update={"name": FORMULA}),
            EXAMPLES[mem.PartnershipCreated].model_copy(update={"partnership_id": "nw-mp", "name": "Northwest"}),
            mem.AccessKeyIssued(key_id="viewer-sw", key_hash=hash_key(VIEWER), role="viewer",
                                partnership_ids=["sw-mp"], label="SW board member"),
        ):
            await publish(broker, kafka_settings, new_event(event, source="/test"))
    finally:
        await broker.stop()
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        async def ready() -> bool:
            viewer = await http.get("/whoami", headers={"authorization": f"Bearer {VIEWER}"})
            rows = await http.get("/kpis/compare", params={"kpi": "hires", "period": PY},
                                  headers={"authorization": f"Bearer {OPERATOR}"})
            return viewer.status_code == 200 and len(rows.json().get("partnerships", [])) == 2

        async with asyncio.timeout(30):
            while not await ready():
                await asyncio.sleep(0.2)
        yield service


def site(service) -> dict:
    return {"origin": service.url}


async def sign_in(http: httpx.AsyncClient, key: str, service) -> httpx.Response:
    return await http.post("/ui/login", data={"api_key": key, "next": "/ui/"}, headers=site(service))


async def test_a_cookie_replayed_after_sign_out_is_not_signed_in(served):
    async with httpx.AsyncClient(base_url=served.url) as http:
        signed = await sign_in(http, OPERATOR, served)
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/"
        cookie = signed.cookies[COOKIE]
        assert (await http.get("/ui/partnerships/sw-mp")).status_code == 200
        assert (await http.post("/ui/logout", headers=site(served))).status_code == 303
    async with httpx.AsyncClient(base_url=served.url, cookies={COOKIE: cookie}) as replay:
        answer = await replay.get("/ui/partnerships/sw-mp")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")


async def test_forms_posted_from_another_site_are_refused(served):
    async with httpx.AsyncClient(base_url=served.url) as http:
        for headers in ({"origin": "http://evil.example"}, {"referer": "http://evil.example/page"},
                        {"origin": "null"}, {}):
            login = await http.post("/ui/login", data={"api_key": OPERATOR}, headers=headers)
            assert login.status_code == 403 and COOKIE not in login.cookies, headers
        assert (await sign_in(http, OPERATOR, served)).status_code == 303
        assert (await http.post("/ui/logout", headers={"origin": "http://evil.example"})).status_code == 403
        assert (await http.get("/ui/partnerships/sw-mp")).status_code == 200  # the forged sign-out did nothing
        same_site_referer = await http.post("/ui/logout", headers={"referer": served.url + "/ui/"})
        assert same_site_referer.status_code == 303


async def test_the_sixth_failed_sign_in_within_a_minute_is_throttled(served):
    async with httpx.AsyncClient(base_url=served.url) as http:
        for _ in range(5):
            assert (await sign_in(http, "guessed-key", served)).status_code == 401
        throttled = await sign_in(http, "guessed-key", served)
        assert throttled.status_code == 429 and 0 < int(throttled.headers["retry-after"]) <= 60
        assert (await sign_in(http, OPERATOR, served)).status_code == 429  # even the right key waits


async def test_every_page_carries_the_security_headers(served):
    async with httpx.AsyncClient(base_url=served.url) as http:
        answers = [await http.get("/ui/login"), await sign_in(http, "wrong", served)]
        await sign_in(http, OPERATOR, served)
        paths = ("/ui/", "/ui/partnerships/sw-mp", "/ui/kpis", "/ui/kpis/hires", "/ui/nowhere")
        answers += [await http.get(path) for path in paths]
    for answer in answers:
        csp = {
            part.strip().split(" ", 1)[0]: part.strip() for part in answer.headers["content-security-policy"].split(";")
        }
        assert csp["default-src"] == "default-src 'self'" and csp["frame-ancestors"] == "frame-ancestors 'none'"
        assert csp["form-action"] == "form-action 'self'" and "unsafe-inline" not in csp.get("script-src", "")
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["x-content-type-options"] == "nosniff"


async def test_csv_exports_neutralise_a_name_that_is_a_formula(served):
    async with httpx.AsyncClient(base_url=served.url) as http:
        await sign_in(http, OPERATOR, served)
        exported = await http.get("/ui/kpis/hires", params={"period": PY, "table": "hires-by-partnership",
                                                              "format": "csv"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    row = next(line for line in exported.text.splitlines() if line.startswith("sw-mp,"))
    assert row.split(",", 1)[1].startswith('"\'=HYPERLINK(')  # shown as text, never run


async def test_a_viewer_reads_its_partnership_and_nothing_else(served):
    async with httpx.AsyncClient(base_url=served.url) as http:
        signed = await sign_in(http, VIEWER, served)
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/partnerships/sw-mp"
        assert (await http.get("/ui/partnerships/sw-mp")).status_code == 200
        assert (await http.get("/ui/partnerships/sw-mp", params={"table": "kpis", "format": "csv"})).status_code == 200
        for path in ("/ui/partnerships/nw-mp", "/ui/partnerships/nw-mp/print", "/ui/"):
            assert (await http.get(path)).status_code == 403, path
        assert (await http.get("/ui/kpis/hires", params={"partnership": "nw-mp"})).status_code == 403
        api = {"authorization": f"Bearer {VIEWER}"}
        assert (
            await http.get("/kpis/values", params={"period": PY, "scope_id": "sw-mp"}, headers=api)
        ).status_code == 200
        assert (
            await http.get("/kpis/values", params={"period": PY, "scope_id": "nw-mp"}, headers=api)
        ).status_code == 403
        assert (await http.get("/kpis/values", params={"period": PY, "scope": "state"}, headers=api)).status_code == 403
