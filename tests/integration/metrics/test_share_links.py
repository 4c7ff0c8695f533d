"""Share links on a real metrics service process: a partnership's admin creates a read-only link
to its infographic, anyone holding it sees that partnership's page only and nothing else, the
token is never stored or listed, and a revocation takes effect at once. Another partnership's
admin and a viewer can neither create, list nor revoke the partnership's links."""

import asyncio
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from shared.auth import hash_key
from shared.contracts import membership as mem
from shared.envelope import new_event
from shared.kafka import ensure_topics, make_broker, publish
from shared.periods import program_year
from tests.examples import EXAMPLES

pytestmark = pytest.mark.integration

OPERATOR = "shares-operator-key"
PY = program_year(date.today())
ADMIN_SW, ADMIN_NW, VIEWER_SW = "shares-admin-of-sw-mp", "shares-admin-of-nw-mp", "shares-viewer-of-sw-mp"


def bearer(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
async def served(start_service, kafka_settings):
    service = start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR})
    await ensure_topics(kafka_settings)
    broker = make_broker(kafka_settings, "shares-test")
    await broker.start()
    try:
        for event in (
            EXAMPLES[mem.PartnershipCreated].model_copy(update={"name": "Southwest Manufacturing"}),
            EXAMPLES[mem.PartnershipCreated].model_copy(update={"partnership_id": "nw-mp", "name": "Northwest Health"}),
            *(mem.AccessKeyIssued(key_id=key, key_hash=hash_key(key), role=role, partnership_ids=[pid], label=key)
              for key, role, pid in ((ADMIN_SW, "partnership_admin", "sw-mp"),
                                     (ADMIN_NW, "partnership_admin", "nw-mp"), (VIEWER_SW, "viewer", "sw-mp"))),
        ):
            await publish(broker, kafka_settings, new_event(event, source="/test"))
    finally:
        await broker.stop()
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        async with asyncio.timeout(30):
            while [(await http.get("/whoami", headers=bearer(k))).status_code
                   for k in (ADMIN_SW, ADMIN_NW, VIEWER_SW)] != [200, 200, 200] or len(
                    (await http.get("/kpis/compare", params={"kpi": "hires", "period": PY},
                                    headers=bearer(OPERATOR))).json().get("partnerships", [])) != 2:
                await asyncio.sleep(0.2)
        yield service


async def test_a_share_link_shows_only_its_partnership_and_stops_when_revoked(served):
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        created = await http.post("/partnerships/sw-mp/shares", json={"label": "State funder"},
                                  headers=bearer(ADMIN_SW))
        assert created.status_code == 201, created.text
        link = created.json()
        assert link["path"] == f"/ui/shared/{link['token']}" and "token_hash" not in link

        page = await http.get(link["path"])  # no key, no session
        assert page.status_code == 200 and "Southwest Manufacturing" in page.text
        assert "Northwest Health" not in page.text and "Sign out" not in page.text

        listed = (await http.get("/partnerships/sw-mp/shares", headers=bearer(ADMIN_SW))).json()["items"]
        assert [s["label"] for s in listed] == ["State funder"]
        assert all("token" not in s and "token_hash" not in s for s in listed)

        revoked = await http.delete(f"/partnerships/sw-mp/shares/{link['id']}", headers=bearer(OPERATOR))
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        gone = await http.get(link["path"])
        assert gone.status_code == 404 and "revoked" in gone.text and "Southwest" not in gone.text
        again = await http.delete(f"/partnerships/sw-mp/shares/{link['id']}", headers=bearer(ADMIN_SW))
        assert again.status_code == 409


async def test_another_partnership_or_a_viewer_cannot_manage_the_links(served):
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        link = (await http.post("/partnerships/sw-mp/shares", json={"label": "Board"},
                                headers=bearer(ADMIN_SW))).json()
        for key in (ADMIN_NW, VIEWER_SW):
            attempts = (http.post("/partnerships/sw-mp/shares", json={"label": "x"}, headers=bearer(key)),
                        http.get("/partnerships/sw-mp/shares", headers=bearer(key)),
                        http.delete(f"/partnerships/sw-mp/shares/{link['id']}", headers=bearer(key)))
            assert [(await a).status_code for a in attempts] == [403, 403, 403]
        # nw-mp's admin cannot reach sw-mp's link through its own partnership either
        assert (await http.delete(f"/partnerships/nw-mp/shares/{link['id']}",
                                  headers=bearer(ADMIN_NW))).status_code == 404
        assert (await http.get(link["path"])).status_code == 200


async def test_an_expired_link_shows_nothing_and_a_past_expiry_is_refused(served):
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        past = await http.post("/partnerships/sw-mp/shares", headers=bearer(ADMIN_SW),
                               json={"label": "x", "expires_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()})
        assert past.status_code == 422 and "expires_at" in past.text
        soon = (await http.post("/partnerships/sw-mp/shares", headers=bearer(ADMIN_SW), json={
            "label": "x", "expires_at": (datetime.now(UTC) + timedelta(seconds=2)).isoformat()})).json()
        assert (await http.get(soon["path"])).status_code == 200
        await asyncio.sleep(2.5)
        assert (await http.get(soon["path"])).status_code == 404
        assert (await http.get("/ui/shared/not-a-token")).status_code == 404
