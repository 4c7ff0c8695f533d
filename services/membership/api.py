"""HTTP API of the roster and common agenda: thin routes that parse and bound the input and call
the use cases (service.py), which decide access and raise domain errors (mapped to HTTP once, in
shared/errors.py). Reads are paginated (offset, limit)."""

from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from services.membership.service import REGIONS, SECTORS, MembershipService, Page, Reference
from services.membership.store import Window
from shared.auth import Principal, authenticated
from shared.contracts import membership as mem
from shared.contracts import requests as s
from shared.errors import Invalid

Caller = Annotated[Principal, Depends(authenticated)]
ROSTER_UPLOAD_BYTES = 5 * 1024 * 1024  # larger rosters are sent in chunks (see client.py)


def _service(request: Request) -> MembershipService:
    return request.app.state.membership


def _window(offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
            limit: Annotated[int, Query(ge=1, le=500)] = 50) -> Window:
    return Window(offset, limit)


Service = Annotated[MembershipService, Depends(_service)]
Paging = Annotated[Window, Depends(_window)]
router = APIRouter()


# --- regions and sectors (statewide reference data: operators write) ----------------------------

def _reference_routes(ref: Reference, model: type[s.RegionIn | s.SectorIn]) -> None:
    # FastAPI reads the body model from the annotation at runtime, where mypy sees only a variable.
    async def define(body: Annotated[model, Body()], caller: Caller, service: Service) -> dict:  # type: ignore[valid-type]
        return await service.define_reference(caller, ref, body)

    async def redefine(id: str, body: Annotated[model, Body()],  # type: ignore[valid-type]
                       caller: Caller, service: Service) -> dict:
        return await service.redefine_reference(caller, ref, id, body)

    async def get(id: str, caller: Caller, service: Service) -> dict:
        return await service.get_reference(caller, ref, id)

    async def list_(caller: Caller, service: Service, paging: Paging) -> Page:
        return await service.list_reference(caller, ref, paging)

    path = f"/{ref.collection}"
    tags: list[str | Enum] = [ref.collection]
    router.add_api_route(
        path, define, methods=["POST"], status_code=201, tags=tags, summary=f"Define a {ref.what} (operators)"
    )
    router.add_api_route(path, list_, methods=["GET"], tags=tags, summary=f"The {ref.collection}")
    router.add_api_route(path + "/{id}", get, methods=["GET"], tags=tags, summary=f"One {ref.what}")
    router.add_api_route(
        path + "/{id}", redefine, methods=["PUT"], tags=tags, summary=f"Redefine a {ref.what} (operators)"
    )


_reference_routes(REGIONS, s.RegionIn)
_reference_routes(SECTORS, s.SectorIn)


# --- partnerships -------------------------------------------------------------------------------

@router.post("/partnerships", status_code=201, tags=["partnerships"], summary="Create a partnership (operators)")
async def create_partnership(body: s.PartnershipIn, caller: Caller, service: Service) -> dict:
    return await service.create_partnership(caller, body)


@router.get("/partnerships", tags=["partnerships"], summary="The partnerships this key may see")
async def list_partnerships(caller: Caller, service: Service, paging: Paging, region_id: str | None = None,
                            sector_id: str | None = None, stage: mem.PartnershipStage | None = None) -> Page:
    return await service.list_partnerships(caller, paging, region_id, sector_id, stage)


@router.get("/partnerships/{partnership_id}", tags=["partnerships"], summary="One partnership")
async def get_partnership(partnership_id: str, caller: Caller, service: Service) -> dict:
    return await service.get_partnership(caller, partnership_id)


@router.patch("/partnerships/{partnership_id}", tags=["partnerships"], summary="Change a partnership")
async def update_partnership(partnership_id: str, body: s.PartnershipPatch, caller: Caller, service: Service) -> dict:
    return await service.update_partnership(caller, partnership_id, body)


@router.put("/partnerships/{partnership_id}/targets", tags=["partnerships"],
            summary="Set a roadmap target, e.g. 40 hires in PY2025 (201 when new)")
async def set_target(partnership_id: str, body: s.TargetIn, caller: Caller, service: Service,
                     response: Response) -> dict:
    target, new = await service.set_target(caller, partnership_id, body)
    response.status_code = 201 if new else 200
    return target


@router.delete("/partnerships/{partnership_id}/targets/{kpi}/{period}", status_code=204, tags=["partnerships"],
               summary="Remove a roadmap target (who may set it may remove it)")
async def remove_target(partnership_id: str, kpi: str, period: str, caller: Caller, service: Service) -> None:
    await service.remove_target(caller, partnership_id, kpi, period)


@router.get("/partnerships/{partnership_id}/targets", tags=["partnerships"], summary="The roadmap's targets")
async def list_targets(partnership_id: str, caller: Caller, service: Service, paging: Paging,
                       period: str | None = None) -> Page:
    return await service.list_targets(caller, partnership_id, paging, period)


# --- organisations and contacts -----------------------------------------------------------------

@router.post("/organisations", status_code=201, tags=["organisations"], summary="Register an organisation")
async def register_organisation(body: s.OrganisationIn, caller: Caller, service: Service) -> dict:
    return await service.register_organisation(caller, body)


@router.get("/organisations", tags=["organisations"], summary="Organisations, by kind, county or name prefix")
async def list_organisations(caller: Caller, service: Service, paging: Paging,
                             kind: mem.OrganisationKind | None = None, county: str | None = None,
                             champion: bool | None = None,
                             name: Annotated[str | None, Query(max_length=100)] = None) -> Page:
    return await service.list_organisations(caller, paging, kind, county, champion, name)


@router.get("/organisations/{organisation_id}", tags=["organisations"], summary="One organisation")
async def get_organisation(organisation_id: str, caller: Caller, service: Service) -> dict:
    return await service.get_organisation(caller, organisation_id)


@router.patch("/organisations/{organisation_id}", tags=["organisations"],
              summary="Change an organisation (a shared one: operators only)")
async def update_organisation(
    organisation_id: str, body: s.OrganisationPatch, caller: Caller, service: Service
) -> dict:
    return await service.update_organisation(caller, organisation_id, body)


@router.post("/organisations/{organisation_id}/contacts", status_code=201, tags=["contacts"],
             summary="Add a contact person, kept by one partnership (here only, never on the bus)")
async def add_contact(organisation_id: str, body: s.ContactIn, caller: Caller, service: Service) -> dict:
    return await service.add_contact(caller, organisation_id, body)


@router.get("/organisations/{organisation_id}/contacts", tags=["contacts"],
            summary="An organisation's contacts kept by this key's partnerships")
async def list_contacts(organisation_id: str, caller: Caller, service: Service, paging: Paging,
                        consent: bool | None = None) -> Page:
    return await service.list_contacts(caller, organisation_id, paging, consent)


@router.get("/contacts/{contact_id}", tags=["contacts"], summary="One contact")
async def get_contact(contact_id: str, caller: Caller, service: Service) -> dict:
    return await service.get_contact(caller, contact_id)


@router.patch("/contacts/{contact_id}", tags=["contacts"], summary="Change a contact, e.g. withdraw consent")
async def update_contact(contact_id: str, body: s.ContactPatch, caller: Caller, service: Service) -> dict:
    return await service.update_contact(caller, contact_id, body)


# --- memberships ----------------------------------------------------------------------------------

@router.post("/partnerships/{partnership_id}/members", status_code=201, tags=["members"],
             summary="An organisation joins the partnership")
async def join(partnership_id: str, body: s.MembershipIn, caller: Caller, service: Service) -> dict:
    return await service.join(caller, partnership_id, body)


@router.get("/partnerships/{partnership_id}/members", tags=["members"],
            summary="Memberships, current and past, by role, kind or status")
async def list_members(partnership_id: str, caller: Caller, service: Service, paging: Paging,
                       role: mem.MembershipRole | None = None, kind: mem.OrganisationKind | None = None,
                       active: bool | None = None, organisation_id: str | None = None) -> Page:
    return await service.list_members(caller, partnership_id, paging, role, kind, active, organisation_id)


@router.get("/partnerships/{partnership_id}/members/{membership_id}", tags=["members"], summary="One membership")
async def get_member(partnership_id: str, membership_id: str, caller: Caller, service: Service) -> dict:
    return await service.get_member(caller, partnership_id, membership_id)


@router.post("/partnerships/{partnership_id}/members/{membership_id}/leave", tags=["members"],
             summary="The organisation leaves (the membership stays as history)")
async def leave(partnership_id: str, membership_id: str, body: s.MembershipLeave, caller: Caller,
                service: Service) -> dict:
    return await service.leave(caller, partnership_id, membership_id, body.left_on)


# --- action teams ---------------------------------------------------------------------------------

@router.post("/partnerships/{partnership_id}/action-teams", status_code=201, tags=["action teams"],
             summary="Form an action team around a priority")
async def form_team(partnership_id: str, body: s.ActionTeamIn, caller: Caller, service: Service) -> dict:
    return await service.form_team(caller, partnership_id, body)


@router.get("/partnerships/{partnership_id}/action-teams", tags=["action teams"], summary="Action teams")
async def list_teams(partnership_id: str, caller: Caller, service: Service, paging: Paging,
                     status: mem.ActionTeamStatus | None = None) -> Page:
    return await service.list_teams(caller, partnership_id, paging, status)


@router.get("/partnerships/{partnership_id}/action-teams/{team_id}", tags=["action teams"], summary="One action team")
async def get_team(partnership_id: str, team_id: str, caller: Caller, service: Service) -> dict:
    return await service.get_team(caller, partnership_id, team_id)


@router.patch("/partnerships/{partnership_id}/action-teams/{team_id}", tags=["action teams"],
              summary="Change an action team: members, status, quick wins and long-term items")
async def change_team(partnership_id: str, team_id: str, body: s.ActionTeamPatch, caller: Caller,
                      service: Service) -> dict:
    return await service.change_team(caller, partnership_id, team_id, body)


# --- rosters (CSV) --------------------------------------------------------------------------------

@router.get("/partnerships/{partnership_id}/roster.csv", tags=["members"], response_class=Response,
            summary="The roster as CSV: organisations with their memberships, current and past")
async def export_roster(partnership_id: str, caller: Caller, service: Service) -> StreamingResponse:
    return StreamingResponse(await service.export_roster(caller, partnership_id), media_type="text/csv",
                    headers={"content-disposition": f'attachment; filename="{partnership_id}-roster.csv"'})


@router.post(
    "/partnerships/{partnership_id}/roster",
    tags=["members"],
    max_body_size=ROSTER_UPLOAD_BYTES,
    summary="Import a roster CSV (at most 5 MiB): good rows are stored, each bad row is reported with its line",
    openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_roster(partnership_id: str, request: Request, caller: Caller, service: Service,
                        first_line: Annotated[int, Query(ge=1, description="line number of the header")] = 1) -> dict:
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("body", "not UTF-8 text") from None
    return await service.import_roster(caller, partnership_id, text, first_line)


# --- access keys ----------------------------------------------------------------------------------

@router.post("/keys", status_code=201, tags=["access"], summary="Issue an API key; its secret is in this answer only")
async def issue_key(body: s.KeyIn, caller: Caller, service: Service) -> dict:
    return await service.issue_key(caller, body)


@router.get("/keys", tags=["access"], summary="Issued keys (never their secrets)")
async def list_keys(caller: Caller, service: Service, paging: Paging, revoked: bool | None = None) -> Page:
    return await service.list_keys(caller, paging, revoked)


@router.delete("/keys/{key_id}", tags=["access"], summary="Revoke a key: every service refuses it from then on")
async def revoke_key(key_id: str, caller: Caller, service: Service) -> dict:
    return await service.revoke_key(caller, key_id)
