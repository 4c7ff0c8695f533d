"""Every API path on the real stack: happy paths, 401/403/404/409/422, and exactly one event on
Kafka per change."""

from collections import Counter

import httpx
import pytest

from tests.integration.membership.conftest import client, until

pytestmark = pytest.mark.integration

REGION = {"id": "ct-southwest", "name": "Southwest Connecticut", "state": "CT"}
SECTOR = {"id": "manufacturing", "name": "Manufacturing", "naics": ["31", "32", "33"]}
SW = {"id": "sw-mp", "name": "Southwest Region Manufacturing Partnership", "region_id": "ct-southwest",
      "sector_id": "manufacturing", "stage": "launched", "launch_date": "2021-06-01",
      "priorities": ["Career marketing", "Education alignment"]}
SC = {**SW, "id": "scmip", "name": "South Central Manufacturing Industry Partnership"}
MICROBOARD = {"id": "microboard", "name": "Microboard", "kind": "employer", "size_band": "50-249",
              "naics": "334418", "county": "New Haven", "state": "CT", "champion": True}
COLLEGE = {"id": "qvcc", "name": "Quinebaug Valley Community College", "kind": "education", "county": "Windham"}


def field_of(response) -> list[str]:
    return [".".join(str(p) for p in e["loc"][1:]) for e in response.json()["detail"]]


async def test_roster_and_agenda_paths_with_their_errors_and_one_event_per_change(membership, operator, published):
    ok = [await operator.post("/regions", json=REGION), await operator.post("/sectors", json=SECTOR),
          await operator.post("/partnerships", json=SW), await operator.post("/partnerships", json=SC),
          await operator.post("/organisations", json=MICROBOARD), await operator.post("/organisations", json=COLLEGE)]
    assert [r.status_code for r in ok] == [201] * 6

    # 422 names the field; 409 on a duplicate id; 404 on an unknown one
    bad = await operator.post("/partnerships", json={**SW, "id": "x", "stage": "dormant"})
    assert bad.status_code == 422 and field_of(bad) == ["stage"]
    unknown_region = await operator.post("/partnerships", json={**SW, "id": "y", "region_id": "nowhere"})
    assert unknown_region.status_code == 422 and field_of(unknown_region) == ["region_id"]
    assert field_of(await operator.post("/organisations", json={**COLLEGE, "id": "bad id"})) == ["id"]
    assert field_of(await operator.post("/organisations", json={**COLLEGE, "id": "z", "colour": "red"})) == ["colour"]
    assert (await operator.post("/partnerships", json=SW)).status_code == 409
    assert (await operator.post("/regions", json=REGION)).status_code == 409
    assert (await operator.get("/partnerships/nope")).status_code == 404
    assert (await operator.get("/organisations/nope")).status_code == 404

    # reads, filters, pagination
    listed = (await operator.get("/partnerships", params={"region_id": "ct-southwest", "limit": 1})).json()
    assert (listed["total"], len(listed["items"]), listed["items"][0]["id"]) == (2, 1, "scmip")
    assert (await operator.get("/partnerships", params={"offset": 1, "limit": 1})).json()["items"][0]["id"] == "sw-mp"
    assert (await operator.get("/organisations", params={"kind": "education"})).json()["items"][0]["id"] == "qvcc"
    assert (await operator.get("/organisations", params={"name": "micro"})).json()["total"] == 1
    assert (await operator.get("/organisations", params={"limit": 0})).status_code == 422
    assert (await operator.get("/regions/ct-southwest")).json()["name"] == REGION["name"]
    assert (await operator.put("/regions/ct-southwest", json={**REGION, "name": "SW CT"})).json()["name"] == "SW CT"
    assert (await operator.put("/regions/ct-southwest", json={**REGION, "id": "other"})).status_code == 422

    # updates, with optimistic versions
    changed = await operator.patch("/partnerships/sw-mp", json={"stage": "sustaining", "convener_id": "qvcc"})
    assert (changed.status_code, changed.json()["stage"], changed.json()["version"]) == (200, "sustaining", 2)
    assert (await operator.patch("/organisations/qvcc", json={"size_band": "250-999"})).json()["size_band"] == "250-999"
    assert (await operator.patch("/organisations/qvcc", json={"kind": "school"})).status_code == 422

    # targets: set, unchanged, changed
    target = {"kpi": "hires", "period": "PY2025", "value": 40}
    assert (await operator.put("/partnerships/sw-mp/targets", json=target)).status_code == 201
    assert (await operator.put("/partnerships/sw-mp/targets", json=target)).json()[
        "version"
    ] == 1  # no change, no event
    assert (await operator.put("/partnerships/sw-mp/targets", json={**target, "value": 45})).json()["value"] == 45
    assert field_of(await operator.put("/partnerships/sw-mp/targets", json={**target, "period": "2025"})) == ["period"]
    assert (await operator.get("/partnerships/sw-mp/targets")).json()["total"] == 1
    not_a_kpi = await operator.put("/partnerships/sw-mp/targets", json={**target, "kpi": "retention_90d"})
    assert field_of(not_a_kpi) == ["kpi"] and "did you mean retention_90_days?" in not_a_kpi.json()["detail"][0]["msg"]
    assert field_of(await operator.put("/partnerships/sw-mp/targets", json={**target, "period": "PY2999"})) == [
        "period"
    ]
    assert field_of(await operator.put("/partnerships/sw-mp/targets", json={**target, "value": 1e10})) == ["value"]
    # targets: removed once, then there is none to remove
    tours = {"kpi": "tours_held", "period": "2025-Q3", "value": 4}
    assert (await operator.put("/partnerships/sw-mp/targets", json=tours)).status_code == 201
    assert (await operator.delete("/partnerships/sw-mp/targets/tours_held/2025-Q3")).status_code == 204
    assert (await operator.delete("/partnerships/sw-mp/targets/tours_held/2025-Q3")).status_code == 404
    assert (await operator.get("/partnerships/sw-mp/targets")).json()["total"] == 1

    # memberships: join, double join, leave, leave again, re-join keeps history
    joined = await operator.post("/partnerships/sw-mp/members",
                                 json={"organisation_id": "microboard", "role": "champion", "joined_on": "2021-06-01"})
    assert joined.status_code == 201
    mid = joined.json()["id"]
    assert (await operator.post("/partnerships/sw-mp/members",
                                json={"organisation_id": "microboard", "joined_on": "2022-01-01"})).status_code == 409
    unknown = await operator.post(
        "/partnerships/sw-mp/members", json={"organisation_id": "ghost", "joined_on": "2022-01-01"}
    )
    assert unknown.status_code == 422 and field_of(unknown) == ["organisation_id"]
    early = await operator.post(f"/partnerships/sw-mp/members/{mid}/leave", json={"left_on": "2020-01-01"})
    assert early.status_code == 422 and field_of(early) == ["left_on"]
    assert (
        await operator.post(f"/partnerships/sw-mp/members/{mid}/leave", json={"left_on": "2024-03-31"})
    ).status_code == 200
    assert (
        await operator.post(f"/partnerships/sw-mp/members/{mid}/leave", json={"left_on": "2024-04-01"})
    ).status_code == 409
    assert (await operator.post("/partnerships/sw-mp/members",
                                json={"organisation_id": "microboard", "joined_on": "2025-01-15"})).status_code == 201
    history = (await operator.get("/partnerships/sw-mp/members", params={"organisation_id": "microboard"})).json()
    assert [(m["joined_on"], m["left_on"]) for m in history["items"]] == [
        ("2021-06-01", "2024-03-31"),
        ("2025-01-15", None),
    ]
    assert (await operator.get("/partnerships/sw-mp/members", params={"active": True})).json()["total"] == 1
    assert (await operator.get(f"/partnerships/scmip/members/{mid}")).status_code == 404

    # action teams with quick wins and long-term items
    team = {
        "id": "careers",
        "name": "Career Marketing",
        "priority": "Career marketing",
        "member_ids": ["microboard"],
        "items": [{"kind": "quick_win", "title": "Plant tour for teachers", "due": "2025-10-15", "owner_id": "qvcc"}],
    }
    assert (await operator.post("/partnerships/sw-mp/action-teams", json=team)).status_code == 201
    assert (await operator.post("/partnerships/sw-mp/action-teams", json=team)).status_code == 409
    ghost = await operator.post("/partnerships/sw-mp/action-teams", json={**team, "id": "t2", "member_ids": ["ghost"]})
    assert ghost.status_code == 422 and field_of(ghost) == ["member_ids"]
    closed = await operator.patch("/partnerships/sw-mp/action-teams/careers", json={"status": "closed"})
    assert closed.json()["status"] == "closed" and closed.json()["items"][0]["title"] == "Plant tour for teachers"
    assert (await operator.get("/partnerships/sw-mp/action-teams", params={"status": "active"})).json()["total"] == 0

    # contacts stay here: no event
    contact = {"id": "c-1", "name": "Dana Example", "email": "dana@example.org", "role": "HR lead", "consent": True}
    assert (await operator.post("/organisations/microboard/contacts", json=contact)).status_code == 201
    assert field_of(
        await operator.post("/organisations/microboard/contacts", json={**contact, "id": "c-2", "email": "nope"})
    ) == ["email"]
    assert (await operator.patch("/contacts/c-1", json={"consent": False})).json()["consent"] is False
    assert (await operator.get("/organisations/microboard/contacts", params={"consent": True})).json()["total"] == 0

    expected = Counter({"region.defined": 2, "sector.defined": 1, "partnership.created": 2, "partnership.updated": 1,
                        "organisation.registered": 2, "organisation.updated": 1, "target.set": 3, "target.removed": 1,
                        "member.joined": 2, "member.left": 1, "action_team.formed": 1, "action_team.changed": 1})
    events = await published(sum(expected.values()))
    assert Counter(e.type.removeprefix("org.backbone.").removesuffix(".v1") for e in events) == expected
    assert len({e.id for e in events}) == len(events)
    assert all("Dana" not in e.to_json().decode() for e in events)
    left = next(e.data for e in events if e.type.endswith("member.left.v1"))
    assert (left.membership_id, left.organisation_kind.value, str(left.left_on)) == (mid, "employer", "2024-03-31")


async def test_keys_roles_and_partnership_boundaries(membership, operator, published):
    for path, body in (("/regions", REGION), ("/sectors", SECTOR), ("/partnerships", SW), ("/partnerships", SC),
                       ("/organisations", MICROBOARD)):
        assert (await operator.post(path, json=body)).status_code == 201
    async with httpx.AsyncClient(base_url=membership.url) as anonymous:
        assert (await anonymous.get("/partnerships")).status_code == 401
    assert (await client(membership, key="wrong").get("/partnerships")).status_code == 401

    issued = await operator.post(
        "/keys", json={"label": "SW-MP admin", "role": "partnership_admin", "partnership_ids": ["sw-mp"]}
    )
    assert issued.status_code == 201
    admin_key = issued.json()["secret"]
    assert "key_hash" not in issued.json() and admin_key not in str((await operator.get("/keys")).json())
    assert field_of(await operator.post("/keys", json={"label": "x", "role": "boss"})) == ["role"]
    assert (await operator.post("/keys", json={"label": "x", "role": "partner_system"})).status_code == 422
    admin = client(membership, admin_key)
    # the service's own key ring learns the key from backbone.access
    await until(lambda: _status(admin.get("/partnerships/sw-mp"), 200))
    assert (await admin.get("/partnerships")).json()["total"] == 1
    assert (await admin.get("/partnerships/scmip")).status_code == 403
    assert (await admin.patch("/partnerships/scmip", json={"stage": "launched"})).status_code == 403
    assert (await admin.post("/partnerships/scmip/members", json={"organisation_id": "microboard",
                                                                  "joined_on": "2024-01-01"})).status_code == 403
    assert (await admin.post("/partnerships", json={**SW, "id": "new"})).status_code == 403  # operators only
    assert (await admin.patch("/partnerships/sw-mp", json={"stage": "sustaining"})).status_code == 200

    # an admin issues partner-system keys for its own partnerships only
    assert (
        await admin.post("/keys", json={"label": "ATS", "role": "partner_system", "partnership_ids": ["scmip"]})
    ).status_code == 403
    assert (await admin.post("/keys", json={"label": "boss", "role": "operator"})).status_code == 403
    ats = await admin.post("/keys", json={"label": "ATS", "role": "partner_system", "partnership_ids": ["sw-mp"]})
    assert ats.status_code == 201
    partner = client(membership, ats.json()["secret"])
    await until(lambda: _status(partner.get("/partnerships/sw-mp"), 200))
    assert (await partner.patch("/partnerships/sw-mp", json={"stage": "launched"})).status_code == 403  # reads only
    assert (await partner.get("/organisations/microboard")).status_code == 403  # not a member of sw-mp
    assert (await partner.get("/organisations/microboard/contacts")).status_code == 403  # no personal data
    assert sorted(k["label"] for k in (await admin.get("/keys")).json()["items"]) == ["ATS", "SW-MP admin"]

    # revoked: refused from then on, by the key ring fed from the access topic
    assert (await admin.delete(f"/keys/{ats.json()['id']}")).status_code == 200
    assert (await admin.delete(f"/keys/{ats.json()['id']}")).status_code == 409
    assert (await operator.delete("/keys/nope")).status_code == 404
    await until(lambda: _status(partner.get("/partnerships/sw-mp"), 401))

    events = await published(5 + 2 + 1 + 1)
    access = [e for e in events if "access_key" in e.type]
    assert [e.type.split(".")[3] for e in access] == ["issued", "issued", "revoked"]
    assert all(admin_key not in e.to_json().decode() for e in events)


async def _status(request, code: int) -> bool:
    return (await request).status_code == code
