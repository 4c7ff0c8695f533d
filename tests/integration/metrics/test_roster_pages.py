"""The roster from the pages on the real stack: a partnership admin adds and removes members,
forms and changes action teams, sets and removes targets, issues and revokes keys, subscribes and
removes a webhook, all through the membership and notify services' APIs as that admin (so their
use cases decide, and the membership events move the KPIs); refusals come back next to the field;
viewers and partner systems are offered none of it."""

import re

import pytest

from tests.integration.membership.conftest import OPERATOR_KEY, client, until
from tests.integration.membership.test_api import MICROBOARD, REGION, SECTOR, SW
from tests.integration.metrics.test_recording import signed_in

pytestmark = pytest.mark.integration

P = SW["id"]
ROSTER = f"/ui/partnerships/{P}/roster"


async def eventually(probe, holds, timeout: float = 30.0):
    """Until `holds(await probe())`: the roll-up and key rings follow within seconds."""
    async def check():
        answer = await probe()
        return answer if holds(answer) else None
    return await until(check, timeout)


@pytest.fixture
def services(start_service):
    """Membership, notify (webhooks to this machine allowed) and the pages pointed at both."""
    membership = start_service("membership", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY,
                                              "MEMBERSHIP_OUTBOX_POLL_SECONDS": "0.2"})
    notify = start_service("notify", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY,
                                      "NOTIFY_WEBHOOK_REQUIRE_HTTPS": "false", "NOTIFY_WEBHOOK_ALLOW_LOOPBACK": "true"})
    metrics = start_service("metrics", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY,
                                        "METRICS_MEMBERSHIP_URL": membership.url, "METRICS_NOTIFY_URL": notify.url})
    return membership, metrics


async def issued(membership, metrics, role: str, label: str) -> str:
    """A key of the partnership, issued by the operator; once the metrics service knows it."""
    async with client(membership) as operator:
        answer = await operator.post("/keys", json={"label": label, "role": role, "partnership_ids": [P]})
    secret = answer.json()["secret"]
    async with client(metrics, secret) as probe:
        await eventually(lambda: probe.get("/whoami"), lambda r: r.status_code == 200)
    return secret


async def kpis(metrics) -> dict:
    async with client(metrics) as operator:
        answer = await operator.get("/kpis/values", params={"scope_id": P, "period": "PY2025"})
    return answer.json() if answer.status_code == 200 else {}


def active(answer: dict) -> int | None:
    return answer.get("values", {}).get("active_members", {}).get("total")


async def test_an_admin_keeps_the_roster_from_the_pages(services):
    membership, metrics = services
    async with client(membership) as operator:
        for path, body in (("/regions", REGION), ("/sectors", SECTOR), ("/partnerships", SW),
                           ("/organisations", MICROBOARD)):
            assert (await operator.post(path, json=body)).status_code == 201, path
    admin = await issued(membership, metrics, "partnership_admin", "coordinator")
    http = await signed_in(metrics, admin)
    try:
        await eventually(lambda: http.get(ROSTER), lambda r: r.status_code == 200)  # once the roll-up knows P
        assert "No members yet" in (await http.get(ROSTER)).text

        joined = await http.post(f"{ROSTER}/member-joined", data={"organisation_id": "microboard",
                                                                  "joined_on": "2025-08-01"})
        assert (joined.status_code, joined.headers["location"]) == (303, f"{ROSTER}?done=member-joined")
        page = (await http.get(joined.headers["location"])).text
        assert "Member added." in page and re.search(r'<tr data-member="[^"]+"><th scope="row">microboard', page)
        twice = await http.post(f"{ROSTER}/member-joined", data={"organisation_id": "microboard",
                                                                 "joined_on": "2025-09-01"})
        assert twice.status_code == 422 and "is a member since 2025-08-01" in twice.text
        assert 'value="2025-09-01"' in twice.text  # what was typed is kept

        refused = await http.post(f"{ROSTER}/target-set", data={"kpi": "hires", "period": "PY2025", "value": "lots"})
        assert refused.status_code == 422 and 'id="value-error"' in refused.text
        target = await http.post(f"{ROSTER}/target-set", data={"kpi": "hires", "period": "PY2025", "value": "12"})
        assert target.headers["location"] == f"{ROSTER}?done=target-set"
        team = await http.post(f"{ROSTER}/team-formed", data={"id": "hiring", "name": "Hiring pipeline",
                                                              "member_ids": "microboard"})
        assert team.headers["location"] == f"{ROSTER}?done=team-formed"
        changed = await http.post(f"{ROSTER}/team-changed", data={"team_id": "hiring", "status": "paused"})
        assert changed.headers["location"] == f"{ROSTER}?done=team-changed"
        page = (await http.get(ROSTER)).text
        assert 'data-target="hires/PY2025"' in page and re.search(r"Hiring pipeline</th><td></td><td>paused", page)

        # The KPIs follow the membership service's events: one active member, the target.
        await eventually(lambda: kpis(metrics), lambda k: active(k) == 1
                         and [t["target"] for t in k.get("targets", [])] == [12.0])

        # A member leaving, from the link on its row.
        leave = re.search(r'href="([^"]+member-left\?membership_id=[^"]+)"', page).group(1).replace("&amp;", "&")
        form = await http.get(leave)
        assert form.status_code == 200
        membership_id = re.search(r'id="membership_id" name="membership_id" type="text" value="([^"]+)"',
                                  form.text).group(1)
        left = await http.post(f"{ROSTER}/member-left", data={"membership_id": membership_id, "left_on": "2026-01-15"})
        assert left.headers["location"] == f"{ROSTER}?done=member-left"
        removed = await http.post(f"{ROSTER}/target-removed", data={"kpi": "hires", "period": "PY2025"})
        assert removed.headers["location"] == f"{ROSTER}?done=target-removed"
        await eventually(lambda: kpis(metrics), lambda k: active(k) == 0 and k.get("targets") == [])

        # A key for the partnership's ATS: its secret shown once, working at once; then revoked.
        key = await http.post(f"{ROSTER}/key-issued", data={"label": "Acme ATS", "role": "partner_system"})
        assert key.status_code == 201 and "shown only this once" in key.text
        secret = re.search(r'id="secret" readonly size="60" value="([^"]+)"', key.text).group(1)
        async with client(membership, secret) as ats:
            whoami = await eventually(lambda: ats.get("/whoami"), lambda r: r.status_code == 200)  # its key ring
            assert whoami.json()["role"] == "partner_system"
            key_id = whoami.json()["key_id"]
            assert f'data-key-id="{key_id}"' in (await http.get(ROSTER)).text
            revoked = await http.post(f"{ROSTER}/key-revoked", data={"key_id": key_id})
            assert revoked.headers["location"] == f"{ROSTER}?done=key-revoked"
            await eventually(lambda: ats.get("/whoami"), lambda r: r.status_code == 401)
        operator_key = await http.post(f"{ROSTER}/key-issued", data={"label": "Me", "role": "operator"})
        assert operator_key.status_code == 422 and "operator" in operator_key.text  # the API refuses it

        # A webhook that hears of hires: its signing secret shown once; then removed.
        typo = await http.post(f"{ROSTER}/subscription-added", data={
            "label": "HR system", "channel": "webhook", "webhook_url": "http://127.0.0.1:9/hook",
            "event_types": "org.backbone.hier.*"})
        assert typo.status_code == 422 and 'id="event_types-error"' in typo.text and "no event type" in typo.text
        made = await http.post(f"{ROSTER}/subscription-added", data={
            "label": "HR system", "channel": "webhook", "webhook_url": "http://127.0.0.1:9/hook",
            "event_types": "org.backbone.hire.*"})
        assert made.status_code == 201 and "signing secret" in made.text
        page = (await http.get(ROSTER)).text
        subscription = re.search(r'<tr data-subscription="([^"]+)"><th scope="row">HR system', page).group(1)
        assert "immediate: org.backbone.hire.*" in page
        gone = await http.post(f"{ROSTER}/subscription-removed", data={"subscription_id": subscription})
        assert gone.headers["location"] == f"{ROSTER}?done=subscription-removed"
        assert "No subscriptions yet" in (await http.get(gone.headers["location"])).text
    finally:
        await http.aclose()


async def test_viewers_and_partner_systems_are_offered_no_roster_changes(services):
    membership, metrics = services
    async with client(membership) as operator:
        for path, body in (("/regions", REGION), ("/sectors", SECTOR), ("/partnerships", SW)):
            assert (await operator.post(path, json=body)).status_code == 201, path
    for role in ("viewer", "partner_system"):
        http = await signed_in(metrics, await issued(membership, metrics, role, role))
        try:
            await eventually(lambda: http.get(f"/ui/partnerships/{P}"), lambda r: r.status_code == 200)  # noqa: B023
            assert ROSTER not in (await http.get(f"/ui/partnerships/{P}")).text
            assert (await http.get(ROSTER)).status_code == 403
            sent = await http.post(f"{ROSTER}/member-joined", data={"organisation_id": "microboard",
                                                                    "joined_on": "2025-08-01"})
            assert sent.status_code == 403
        finally:
            await http.aclose()
    async with client(membership) as operator:
        assert (await operator.get(f"/partnerships/{P}/members")).json()["total"] == 0
