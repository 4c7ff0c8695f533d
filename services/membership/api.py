"""HTTP API of the roster and common agenda. Every change is stored together with its events
(store.commit); the outbox relay puts them on Kafka. Reads are paginated (offset, limit)."""

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ValidationError

from services.membership import domain as d
from services.membership.roster import import_roster
from services.membership.store import Change, Conflict, MembershipStore
from shared.auth import Principal, authenticated, hash_key, new_key
from shared.contracts import membership as mem
from shared.contracts.base import AccessRole, EventData
from shared.envelope import CloudEvent, new_event

Caller = Annotated[Principal, Depends(authenticated)]
WRITERS = (AccessRole.PARTNERSHIP_ADMIN,)  # besides operators


class Page(BaseModel):
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


class Paging:
    def __init__(self, offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50):
        self.offset, self.limit = offset, limit


def unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", field], "msg": message, "type": "value_error"}])


def out(doc: dict) -> dict:
    return {"id": doc["_id"], **{k: v for k, v in doc.items() if k not in ("_id", "key_hash")}}


def stored(model: BaseModel, **extra) -> dict:
    """A validated input as a document: dates as ISO strings, `id` as `_id`."""
    doc = model.model_dump(mode="json", exclude={"id"}) | extra
    return {"_id": getattr(model, "id", None), **doc} if "_id" not in extra else doc


def patched(doc: dict, patch: BaseModel) -> dict:
    return {**doc, **patch.model_dump(mode="json", exclude_unset=True)}


def routes(store: MembershipStore, source: str) -> APIRouter:
    router = APIRouter()

    def event(model: type[EventData], payload: dict) -> CloudEvent:
        try:
            return new_event(model.model_validate(payload), source=source)
        except ValidationError as exc:  # the change would publish an invalid event: refuse it
            raise HTTPException(422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                                      for e in exc.errors()]) from None

    async def commit(change: Change) -> None:
        try:
            await store.commit(change)
        except Conflict as exc:
            raise HTTPException(409, str(exc)) from None

    async def created(collection: str, doc: dict, *events: CloudEvent) -> dict:
        await commit(Change().insert(collection, doc).emit(*events))
        return out({**doc, "version": 1})

    async def replaced(collection: str, doc: dict, *events: CloudEvent) -> dict:
        await commit(Change().replace(collection, doc).emit(*events))
        return out({**doc, "version": doc["version"] + 1})

    async def existing(collection: str, id: str, what: str) -> dict:
        doc = await store.get(collection, id)
        if doc is None:
            raise HTTPException(404, f"no {what} {id!r}")
        return doc

    async def page(collection: str, query: dict, paging: Paging) -> Page:
        items, total = await store.page(collection, query, paging.offset, paging.limit)
        return Page(items=[out(i) for i in items], total=total, offset=paging.offset, limit=paging.limit)

    def may_write(principal: Principal, partnership_id: str) -> None:
        principal.require_partnership(partnership_id)
        principal.require_role(*WRITERS)

    async def partnership(partnership_id: str, principal: Principal, write: bool = False) -> dict:
        (may_write if write else Principal.require_partnership)(principal, partnership_id)
        return await existing("partnerships", partnership_id, "partnership")

    # --- regions and sectors (statewide reference data: operators write) ----------------------

    for collection, model, contract, what in (("regions", d.RegionIn, mem.RegionDefined, "region"),
                                              ("sectors", d.SectorIn, mem.SectorDefined, "sector")):
        _reference_routes(router, collection, model, contract, what, event, created, replaced, existing, page)

    # --- partnerships -----------------------------------------------------------------------

    @router.post("/partnerships", status_code=201, tags=["partnerships"], summary="Create a partnership (operators)")
    async def create_partnership(body: d.PartnershipIn, principal: Caller) -> dict:
        principal.require_role()
        for field, collection in (("region_id", "regions"), ("sector_id", "sectors"), ("convener_id", "organisations")):
            if getattr(body, field) and await store.get(collection, getattr(body, field)) is None:
                raise unprocessable(field, f"unknown {collection[:-1]} {getattr(body, field)!r}")
        doc = stored(body)
        return await created("partnerships", doc, event(mem.PartnershipCreated, d.partnership_state(doc)))

    @router.get("/partnerships", tags=["partnerships"], summary="The partnerships this key may see")
    async def list_partnerships(principal: Caller, paging: Annotated[Paging, Depends()],
                                region_id: str | None = None, sector_id: str | None = None,
                                stage: mem.PartnershipStage | None = None) -> Page:
        query = {k: v for k, v in (("region_id", region_id), ("sector_id", sector_id), ("stage", stage)) if v}
        if not principal.is_operator:
            query["_id"] = {"$in": sorted(principal.partnership_ids)}
        return await page("partnerships", query, paging)

    @router.get("/partnerships/{partnership_id}", tags=["partnerships"], summary="One partnership")
    async def get_partnership(partnership_id: str, principal: Caller) -> dict:
        return out(await partnership(partnership_id, principal))

    @router.patch("/partnerships/{partnership_id}", tags=["partnerships"], summary="Change a partnership")
    async def update_partnership(partnership_id: str, body: d.PartnershipPatch, principal: Caller) -> dict:
        doc = patched(await partnership(partnership_id, principal, write=True), body)
        return await replaced("partnerships", doc, event(mem.PartnershipUpdated, d.partnership_state(doc)))

    @router.put("/partnerships/{partnership_id}/targets", tags=["partnerships"],
                summary="Set a roadmap target, e.g. 40 hires in PY2025")
    async def set_target(partnership_id: str, body: d.TargetIn, principal: Caller, response: Response) -> dict:
        await partnership(partnership_id, principal, write=True)
        doc = {"_id": f"{partnership_id}/{body.kpi}/{body.period}", "partnership_id": partnership_id,
               **body.model_dump(mode="json")}
        before = await store.get("targets", doc["_id"])
        if before and before["value"] == body.value:
            return out(before)
        change = Change().replace("targets", {**doc, "version": before["version"]}) if before else Change().insert("targets", doc)
        await commit(change.emit(event(mem.TargetSet, {"partnership_id": partnership_id, **body.model_dump()})))
        response.status_code = 200 if before else 201
        return out(await store.get("targets", doc["_id"]))

    @router.get("/partnerships/{partnership_id}/targets", tags=["partnerships"], summary="The roadmap's targets")
    async def list_targets(partnership_id: str, principal: Caller, paging: Annotated[Paging, Depends()],
                           period: str | None = None) -> Page:
        await partnership(partnership_id, principal)
        return await page("targets", {"partnership_id": partnership_id} | ({"period": period} if period else {}), paging)

    # --- organisations and contacts ---------------------------------------------------------

    async def visible_organisations(principal: Principal) -> list[str] | None:
        """None: all. Partner systems see the organisations of their partnerships only."""
        if principal.role is not AccessRole.PARTNER_SYSTEM:
            return None
        members = await store.find("memberships", {"partnership_id": {"$in": sorted(principal.partnership_ids)}})
        return sorted({m["organisation_id"] for m in members})

    async def organisation(organisation_id: str, principal: Principal) -> dict:
        visible = await visible_organisations(principal)
        doc = await existing("organisations", organisation_id, "organisation")
        if visible is not None and organisation_id not in visible:
            raise HTTPException(403, f"organisation {organisation_id!r} is in none of this key's partnerships")
        return doc

    @router.post("/organisations", status_code=201, tags=["organisations"], summary="Register an organisation")
    async def create_organisation(body: d.OrganisationIn, principal: Caller) -> dict:
        principal.require_role(*WRITERS)
        doc = stored(body)
        return await created("organisations", doc, event(mem.OrganisationRegistered, d.organisation_state(doc)))

    @router.get("/organisations", tags=["organisations"], summary="Organisations, by kind, county or name prefix")
    async def list_organisations(principal: Caller, paging: Annotated[Paging, Depends()],
                                 kind: mem.OrganisationKind | None = None, county: str | None = None,
                                 champion: bool | None = None,
                                 name: Annotated[str | None, Query(max_length=100)] = None) -> Page:
        query: dict[str, Any] = {k: v for k, v in (("kind", kind), ("county", county)) if v}
        if champion is not None:
            query["champion"] = champion
        if name:
            query["name"] = {"$regex": "^" + re.escape(name), "$options": "i"}
        visible = await visible_organisations(principal)
        if visible is not None:
            query["_id"] = {"$in": visible}
        return await page("organisations", query, paging)

    @router.get("/organisations/{organisation_id}", tags=["organisations"], summary="One organisation")
    async def get_organisation(organisation_id: str, principal: Caller) -> dict:
        return out(await organisation(organisation_id, principal))

    @router.patch("/organisations/{organisation_id}", tags=["organisations"], summary="Change an organisation")
    async def update_organisation(organisation_id: str, body: d.OrganisationPatch, principal: Caller) -> dict:
        principal.require_role(*WRITERS)
        doc = patched(await organisation(organisation_id, principal), body)
        return await replaced("organisations", doc, event(mem.OrganisationUpdated, d.organisation_state(doc)))

    async def contact_scope(organisation_id: str, principal: Principal) -> None:
        """Personal data: operators, and admins of a partnership the organisation belongs to."""
        principal.require_role(*WRITERS)
        if not principal.is_operator:
            members = await store.find("memberships", {"organisation_id": organisation_id})
            if not {m["partnership_id"] for m in members} & principal.partnership_ids:
                raise HTTPException(403, f"organisation {organisation_id!r} is in none of this key's partnerships")

    @router.post("/organisations/{organisation_id}/contacts", status_code=201, tags=["contacts"],
                 summary="Add a contact person (kept here only, never on the bus)")
    async def create_contact(organisation_id: str, body: d.ContactIn, principal: Caller) -> dict:
        await existing("organisations", organisation_id, "organisation")
        await contact_scope(organisation_id, principal)
        doc = stored(body, organisation_id=organisation_id)
        return await created("contacts", doc)

    @router.get("/organisations/{organisation_id}/contacts", tags=["contacts"], summary="An organisation's contacts")
    async def list_contacts(organisation_id: str, principal: Caller, paging: Annotated[Paging, Depends()],
                            consent: bool | None = None) -> Page:
        await existing("organisations", organisation_id, "organisation")
        await contact_scope(organisation_id, principal)
        return await page("contacts", {"organisation_id": organisation_id} |
                          ({"consent": consent} if consent is not None else {}), paging)

    async def contact(contact_id: str, principal: Principal) -> dict:
        doc = await existing("contacts", contact_id, "contact")
        await contact_scope(doc["organisation_id"], principal)
        return doc

    @router.get("/contacts/{contact_id}", tags=["contacts"], summary="One contact")
    async def get_contact(contact_id: str, principal: Caller) -> dict:
        return out(await contact(contact_id, principal))

    @router.patch("/contacts/{contact_id}", tags=["contacts"], summary="Change a contact, e.g. withdraw consent")
    async def update_contact(contact_id: str, body: d.ContactPatch, principal: Caller) -> dict:
        doc = patched(await contact(contact_id, principal), body)
        return await replaced("contacts", doc)

    # --- memberships ------------------------------------------------------------------------

    @router.post("/partnerships/{partnership_id}/members", status_code=201, tags=["members"],
                 summary="An organisation joins the partnership")
    async def join(partnership_id: str, body: d.MembershipIn, principal: Caller) -> dict:
        await partnership(partnership_id, principal, write=True)
        org = await store.get("organisations", body.organisation_id)
        if org is None:
            raise unprocessable("organisation_id", f"unknown organisation {body.organisation_id!r}")
        active = await store.find("memberships", {"partnership_id": partnership_id,
                                                  "organisation_id": body.organisation_id, "left_on": None})
        if active:
            raise HTTPException(409, f"{body.organisation_id!r} is a member since {active[0]['joined_on']}")
        doc = d.new_membership(partnership_id, org, body)
        return await created("memberships", doc, event(mem.MemberJoined, d.joined_payload(doc)))

    @router.get("/partnerships/{partnership_id}/members", tags=["members"],
                summary="Memberships, current and past, by role, kind or status")
    async def list_members(partnership_id: str, principal: Caller, paging: Annotated[Paging, Depends()],
                           role: mem.MembershipRole | None = None, kind: mem.OrganisationKind | None = None,
                           active: bool | None = None, organisation_id: str | None = None) -> Page:
        await partnership(partnership_id, principal)
        query: dict[str, Any] = {"partnership_id": partnership_id}
        query |= {k: v for k, v in (("role", role), ("organisation_kind", kind), ("organisation_id", organisation_id)) if v}
        if active is not None:
            query["left_on"] = None if active else {"$ne": None}
        return await page("memberships", query, paging)

    async def membership(partnership_id: str, membership_id: str, principal: Principal, write: bool = False) -> dict:
        await partnership(partnership_id, principal, write)
        doc = await store.get("memberships", membership_id)
        if doc is None or doc["partnership_id"] != partnership_id:
            raise HTTPException(404, f"no membership {membership_id!r} in {partnership_id!r}")
        return doc

    @router.get("/partnerships/{partnership_id}/members/{membership_id}", tags=["members"], summary="One membership")
    async def get_member(partnership_id: str, membership_id: str, principal: Caller) -> dict:
        return out(await membership(partnership_id, membership_id, principal))

    @router.post("/partnerships/{partnership_id}/members/{membership_id}/leave", tags=["members"],
                 summary="The organisation leaves (the membership stays as history)")
    async def leave(partnership_id: str, membership_id: str, body: d.MembershipLeave, principal: Caller) -> dict:
        doc = await membership(partnership_id, membership_id, principal, write=True)
        if doc["left_on"] is not None:
            raise HTTPException(409, f"left on {doc['left_on']}")
        if body.left_on < date.fromisoformat(doc["joined_on"]):
            raise unprocessable("left_on", f"before joined_on {doc['joined_on']}")
        doc = {**doc, "left_on": body.left_on.isoformat()}
        return await replaced("memberships", doc, event(mem.MemberLeft, d.left_payload(doc)))

    # --- action teams -----------------------------------------------------------------------

    async def known_organisations(body: d.ActionTeamIn | d.ActionTeamPatch) -> None:
        ids = set(body.member_ids or ()) | {i.owner_id for i in body.items or () if i.owner_id}
        known = {o["_id"] for o in await store.find("organisations", {"_id": {"$in": sorted(ids)}})}
        if ids - known:
            field = "member_ids" if set(body.member_ids or ()) - known else "items"
            raise unprocessable(field, f"unknown organisation(s): {', '.join(sorted(ids - known))}")

    @router.post("/partnerships/{partnership_id}/action-teams", status_code=201, tags=["action teams"],
                 summary="Form an action team around a priority")
    async def form_team(partnership_id: str, body: d.ActionTeamIn, principal: Caller) -> dict:
        await partnership(partnership_id, principal, write=True)
        await known_organisations(body)
        doc = stored(body, _id=f"{partnership_id}/{body.id}", action_team_id=body.id, partnership_id=partnership_id)
        return await created("action_teams", doc, event(mem.ActionTeamFormed, d.action_team_state(doc)))

    @router.get("/partnerships/{partnership_id}/action-teams", tags=["action teams"], summary="Action teams")
    async def list_teams(partnership_id: str, principal: Caller, paging: Annotated[Paging, Depends()],
                         status: mem.ActionTeamStatus | None = None) -> Page:
        await partnership(partnership_id, principal)
        return await page("action_teams", {"partnership_id": partnership_id} | ({"status": status} if status else {}), paging)

    async def team(partnership_id: str, team_id: str, principal: Principal, write: bool = False) -> dict:
        await partnership(partnership_id, principal, write)
        return await existing("action_teams", f"{partnership_id}/{team_id}", "action team")

    @router.get("/partnerships/{partnership_id}/action-teams/{team_id}", tags=["action teams"], summary="One action team")
    async def get_team(partnership_id: str, team_id: str, principal: Caller) -> dict:
        return out(await team(partnership_id, team_id, principal))

    @router.patch("/partnerships/{partnership_id}/action-teams/{team_id}", tags=["action teams"],
                  summary="Change an action team: members, status, quick wins and long-term items")
    async def change_team(partnership_id: str, team_id: str, body: d.ActionTeamPatch, principal: Caller) -> dict:
        doc = patched(await team(partnership_id, team_id, principal, write=True), body)
        await known_organisations(body)
        return await replaced("action_teams", doc, event(mem.ActionTeamChanged, d.action_team_state(doc)))

    # --- rosters (CSV) ----------------------------------------------------------------------

    @router.get("/partnerships/{partnership_id}/roster.csv", tags=["members"], response_class=Response,
                summary="The roster as CSV: organisations with their memberships, current and past")
    async def export_roster(partnership_id: str, principal: Caller) -> Response:
        await partnership(partnership_id, principal)
        members = await store.find("memberships", {"partnership_id": partnership_id})
        orgs = {o["_id"]: o for o in await store.find("organisations", {"_id": {"$in": [m["organisation_id"] for m in members]}})}
        rows = [{**orgs.get(m["organisation_id"], {}), "organisation_id": m["organisation_id"], **m} for m in members]
        return Response(d.roster_csv(rows), media_type="text/csv",
                        headers={"content-disposition": f'attachment; filename="{partnership_id}-roster.csv"'})

    @router.post("/partnerships/{partnership_id}/roster", tags=["members"],
                 summary="Import a roster CSV: good rows are stored, each bad row is reported with its line",
                 openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}})
    async def import_roster_csv(partnership_id: str, request: Request, principal: Caller,
                                first_line: Annotated[int, Query(ge=1, description="line number of the header")] = 1):
        await partnership(partnership_id, principal, write=True)
        body = await request.body()
        if len(body) > 5 * 1024 * 1024:
            raise HTTPException(413, "a roster upload is at most 5 MiB: split the file")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise unprocessable("body", "not UTF-8 text") from None
        try:
            return await import_roster(store, partnership_id, text, first_line, event)
        except Conflict as exc:
            raise HTTPException(409, f"{exc}: the roster changed meanwhile, import again") from None

    # --- access keys ------------------------------------------------------------------------

    @router.post("/keys", status_code=201, tags=["access"],
                 summary="Issue an API key; its secret is in this answer only")
    async def issue_key(body: d.KeyIn, principal: Caller) -> dict:
        refusal = d.key_refusal(principal.role, principal.partnership_ids, body)
        if refusal:
            raise HTTPException(403 if "may not" in refusal or "no access" in refusal else 422, refusal)
        for pid in body.partnership_ids:
            if await store.get("partnerships", pid) is None:
                raise unprocessable("partnership_ids", f"unknown partnership {pid!r}")
        key_id, secret = new_key()
        doc = {"_id": key_id, **body.model_dump(mode="json"), "key_hash": hash_key(secret),
               "issued_by": principal.key_id, "issued_at": datetime.now(UTC), "revoked_at": None}
        issued = {k: doc[k] for k in ("key_hash", "role", "partnership_ids", "label")}
        return await created("issued_keys", doc, event(mem.AccessKeyIssued, {"key_id": key_id, **issued})) | {"secret": secret}

    def key_scope(principal: Principal) -> dict:
        if principal.is_operator:
            return {}
        principal.require_role(*WRITERS)
        return {"partnership_ids": {"$not": {"$elemMatch": {"$nin": sorted(principal.partnership_ids)}}},
                "role": {"$ne": AccessRole.OPERATOR.value}}

    @router.get("/keys", tags=["access"], summary="Issued keys (never their secrets)")
    async def list_keys(principal: Caller, paging: Annotated[Paging, Depends()], revoked: bool | None = None) -> Page:
        query = key_scope(principal)
        if revoked is not None:
            query["revoked_at"] = {"$ne": None} if revoked else None
        return await page("issued_keys", query, paging)

    @router.delete("/keys/{key_id}", tags=["access"], summary="Revoke a key: every service refuses it from then on")
    async def revoke_key(key_id: str, principal: Caller) -> dict:
        doc = await existing("issued_keys", key_id, "key")
        if not principal.is_operator and not (
                principal.role is AccessRole.PARTNERSHIP_ADMIN and doc["role"] != AccessRole.OPERATOR
                and set(doc["partnership_ids"]) <= principal.partnership_ids):
            raise HTTPException(403, "this key may not revoke that key")
        if doc["revoked_at"] is not None:
            raise HTTPException(409, "already revoked")
        doc = {**doc, "revoked_at": datetime.now(UTC)}
        return await replaced("issued_keys", doc, event(mem.AccessKeyRevoked, {"key_id": key_id}))

    return router


def _reference_routes(router, collection, model, contract, what, event, created, replaced, existing, page) -> None:
    """Create, read, change and list for regions and sectors: statewide reference data."""
    key = f"{what}_id"

    async def create(body: Annotated[model, Body()], principal: Caller) -> dict:
        principal.require_role()
        doc = stored(body)
        return await created(collection, doc, event(contract, _payload(key, doc)))

    async def update(id: str, body: Annotated[model, Body()], principal: Caller) -> dict:
        principal.require_role()
        if body.id != id:
            raise unprocessable("id", f"must be {id!r}, the id in the path")
        doc = stored(body) | {"version": (await existing(collection, id, what))["version"]}
        return await replaced(collection, doc, event(contract, _payload(key, doc)))

    async def get(id: str, principal: Caller) -> dict:
        return out(await existing(collection, id, what))

    async def list_(principal: Caller, paging: Annotated[Paging, Depends()]) -> Page:
        return await page(collection, {}, paging)

    tags = [f"{collection}"]
    router.add_api_route(f"/{collection}", create, methods=["POST"], status_code=201, tags=tags,
                         summary=f"Define a {what} (operators)")
    router.add_api_route(f"/{collection}", list_, methods=["GET"], tags=tags, summary=f"The {collection}")
    router.add_api_route(f"/{collection}/{{id}}", get, methods=["GET"], tags=tags, summary=f"One {what}")
    router.add_api_route(f"/{collection}/{{id}}", update, methods=["PUT"], tags=tags, summary=f"Redefine a {what} (operators)")


def _payload(key: str, doc: dict) -> dict:
    return {key: doc["_id"], **{k: v for k, v in doc.items() if k not in ("_id", "version")}}
