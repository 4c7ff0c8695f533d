"""The roster and the common agenda as pure logic: the shapes callers send, the events a change
publishes, who may do what, and roster CSV rows. No I/O here."""

import csv
import io
from collections.abc import Iterable
from datetime import date
from enum import StrEnum

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from shared.contracts import membership as mem
from shared.contracts.base import (
    AccessRole,
    ActionTeamStatus,
    Day,
    Id,
    MembershipRole,
    Name,
    OrganisationKind,
    PartnershipStage,
    Text,
)

Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class Input(BaseModel):
    """What callers send: unknown fields are refused, so a typo is a 422, not a silent drop."""

    model_config = ConfigDict(extra="forbid")


def _not_null(value):
    if value is None:
        raise ValueError("may be left out, but not null")
    return value


NotNull = AfterValidator(_not_null)  # for patch fields whose entity always has a value


# --- regions, sectors, partnerships, targets ---------------------------------------------------

class RegionIn(Input):
    id: Id
    name: Name
    state: str = Field(pattern=r"^[A-Z]{2}$")


class SectorIn(Input):
    id: Id
    name: Name
    naics: list[str] = Field(default_factory=list, max_length=50)


class PartnershipFields(Input):
    vision: Text | None = None
    mission: Text | None = None
    launch_date: Day | None = None
    convener_id: Id | None = None
    priorities: list[Name] = Field(default_factory=list, max_length=50)


class PartnershipIn(PartnershipFields):
    id: Id
    name: Name
    region_id: Id
    sector_id: Id
    stage: PartnershipStage = PartnershipStage.PLANNING


class PartnershipPatch(Input):
    name: Annotated[Name | None, NotNull] = None
    stage: Annotated[PartnershipStage | None, NotNull] = None
    vision: Text | None = None
    mission: Text | None = None
    launch_date: Day | None = None
    convener_id: Id | None = None
    priorities: Annotated[list[Name] | None, NotNull] = Field(default=None, max_length=50)


class TargetIn(Input):
    kpi: Id
    period: str = Field(pattern=r"^(PY\d{4}|\d{4}-Q[1-4]|\d{4}-\d{2})$",
                        description="PY2025 (1 July 2025 - 30 June 2026), 2025-Q3 or 2025-09")
    value: float = Field(ge=0)


def partnership_state(doc: dict) -> dict:
    """The payload of PartnershipCreated/Updated from a stored partnership."""
    fields = mem.PartnershipState.model_fields
    return {"partnership_id": doc["_id"], **{k: doc.get(k) for k in fields if k != "partnership_id" and k in doc}}


# --- organisations, memberships, contacts -----------------------------------------------------

class OrganisationIn(Input):
    id: Id
    name: Name
    kind: OrganisationKind
    size_band: str | None = Field(default=None, max_length=20)
    naics: str | None = Field(default=None, pattern=r"^\d{2,6}$")
    county: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    champion: bool = Field(default=False, description="a spearheading employer of a partnership")


class OrganisationPatch(Input):
    name: Annotated[Name | None, NotNull] = None
    kind: Annotated[OrganisationKind | None, NotNull] = None
    size_band: str | None = Field(default=None, max_length=20)
    naics: str | None = Field(default=None, pattern=r"^\d{2,6}$")
    county: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    champion: Annotated[bool | None, NotNull] = None


def organisation_state(doc: dict) -> dict:
    fields = mem.OrganisationState.model_fields
    return {"organisation_id": doc["_id"], **{k: doc.get(k) for k in fields if k != "organisation_id"}}


class MembershipIn(Input):
    organisation_id: Id
    role: MembershipRole = MembershipRole.MEMBER
    joined_on: Day


class MembershipLeave(Input):
    left_on: Day


def membership_id(partnership_id: str, organisation_id: str, joined_on: date) -> str:
    """One id per stint: re-joining later is a new membership, so history is kept, and the same
    roster row imported twice is the same membership."""
    return f"{partnership_id}:{organisation_id}:{joined_on.isoformat()}"


def new_membership(partnership_id: str, organisation: dict, joined: MembershipIn) -> dict:
    return {"_id": membership_id(partnership_id, organisation["_id"], joined.joined_on),
            "partnership_id": partnership_id, "organisation_id": organisation["_id"],
            "organisation_kind": organisation["kind"], "role": joined.role.value,
            "joined_on": joined.joined_on.isoformat(), "left_on": None}


def joined_payload(doc: dict) -> dict:
    return {"membership_id": doc["_id"], **{k: doc[k] for k in mem.MemberJoined.model_fields if k != "membership_id"}}


def left_payload(doc: dict) -> dict:
    return {"membership_id": doc["_id"], **{k: doc[k] for k in mem.MemberLeft.model_fields if k != "membership_id"}}


class ContactIn(Input):
    id: Id
    name: Name
    email: Email | None = None
    phone: str | None = Field(default=None, max_length=40)
    role: Name | None = None
    consent: bool = Field(default=False, description="agreed to be contacted by the partnership")


class ContactPatch(Input):
    name: Annotated[Name | None, NotNull] = None
    email: Email | None = None
    phone: str | None = Field(default=None, max_length=40)
    role: Name | None = None
    consent: Annotated[bool | None, NotNull] = None


# --- action teams -----------------------------------------------------------------------------

class ItemKind(StrEnum):
    QUICK_WIN = "quick_win"
    LONG_TERM = "long_term"


class ActionItem(Input):
    kind: ItemKind
    title: Name
    due: Day | None = None
    owner_id: Id | None = Field(default=None, description="the organisation that owns it")
    done: bool = False


class ActionTeamIn(Input):
    id: Id
    name: Name
    priority: Name | None = None
    objective: Text | None = None
    status: ActionTeamStatus = ActionTeamStatus.ACTIVE
    member_ids: list[Id] = Field(default_factory=list, max_length=500, description="organisation ids")
    items: list[ActionItem] = Field(default_factory=list, max_length=200)


class ActionTeamPatch(Input):
    name: Annotated[Name | None, NotNull] = None
    priority: Name | None = None
    objective: Text | None = None
    status: Annotated[ActionTeamStatus | None, NotNull] = None
    member_ids: Annotated[list[Id] | None, NotNull] = Field(default=None, max_length=500)
    items: Annotated[list[ActionItem] | None, NotNull] = Field(default=None, max_length=200)


def action_team_state(doc: dict) -> dict:
    fields = mem.ActionTeamState.model_fields
    return {"action_team_id": doc["action_team_id"], **{k: doc.get(k) for k in fields if k != "action_team_id"}}


# --- access keys ------------------------------------------------------------------------------

class KeyIn(Input):
    label: Name
    role: AccessRole
    partnership_ids: list[Id] = Field(default_factory=list, max_length=100)


def key_refusal(issuer_role: AccessRole, issuer_partnerships: frozenset[str], wanted: KeyIn) -> str | None:
    """Why this issuer may not create this key, or None. Operators issue anything; a partnership
    admin issues partner-system keys for its own partnerships only."""
    if wanted.role is not AccessRole.OPERATOR and not wanted.partnership_ids:
        return "a partnership key needs at least one partnership"
    if wanted.role is AccessRole.OPERATOR and wanted.partnership_ids:
        return "an operator key covers every partnership: give no partnership_ids"
    if issuer_role is AccessRole.OPERATOR:
        return None
    if issuer_role is AccessRole.PARTNERSHIP_ADMIN and wanted.role is AccessRole.PARTNER_SYSTEM:
        outside = set(wanted.partnership_ids) - issuer_partnerships
        return f"no access to partnership {sorted(outside)[0]!r}" if outside else None
    return f"role {issuer_role.value!r} may not issue {wanted.role.value!r} keys"


# --- roster CSV -------------------------------------------------------------------------------

ROSTER_COLUMNS = ("organisation_id", "name", "kind", "size_band", "naics", "county", "state", "champion",
                  "role", "joined_on", "left_on")


class RosterRow(Input):
    """One line of a roster: an organisation and its membership of the partnership."""

    line: int
    organisation: OrganisationIn
    role: MembershipRole
    joined_on: Day
    left_on: Day | None = None


class RowError(BaseModel):
    line: int
    reason: str


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        field = "organisation_id" if loc == ("organisation", "id") else ".".join(str(p) for p in loc[-1:])
        parts.append(f"{field}: {error['msg']}" if field else error["msg"])
    return "; ".join(parts)


def parse_roster(text: str, first_line: int = 1) -> tuple[list[RosterRow], list[RowError]]:
    """Every valid row, and each bad one with its line number (the header is line `first_line`)
    and why. Organisation columns map to the organisation, the rest to the membership."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = reader.fieldnames or []
    missing = [c for c in ("organisation_id", "name", "kind", "joined_on") if c not in header]
    if missing:
        return [], [RowError(line=first_line, reason=f"missing column(s): {', '.join(missing)}")]
    unknown = [c for c in header if c not in ROSTER_COLUMNS]
    if unknown:
        return [], [RowError(line=first_line, reason=f"unknown column(s): {', '.join(unknown)}")]
    rows, errors, seen = [], [], {}
    for record in reader:
        line = first_line + reader.line_num - 1
        if None in record:
            errors.append(RowError(line=line, reason="more fields than columns"))
            continue
        values = {k: (v.strip() or None) if v is not None else None for k, v in record.items()}
        organisation = {k: values.get(k) for k in OrganisationIn.model_fields if k != "champion" and values.get(k) is not None}
        organisation["id"] = values.get("organisation_id")
        organisation["champion"] = (values.get("champion") or "").lower() in ("1", "true", "yes", "y")
        try:
            row = RosterRow(line=line, organisation=organisation, role=values.get("role") or MembershipRole.MEMBER,
                            joined_on=values.get("joined_on"), left_on=values.get("left_on"))
        except ValidationError as exc:
            errors.append(RowError(line=line, reason=_reason(exc)))
            continue
        if row.left_on and row.left_on < row.joined_on:
            errors.append(RowError(line=line, reason="left_on: before joined_on"))
            continue
        key = (row.organisation.id, row.joined_on)
        if key in seen:
            errors.append(RowError(line=line, reason=f"duplicate of line {seen[key]}"))
            continue
        seen[key] = line
        rows.append(row)
    return rows, errors


def roster_csv(rows: Iterable[dict]) -> str:
    """Rows (organisation fields + role, joined_on, left_on) as CSV that parse_roster reads back."""
    out = io.StringIO()
    writer = csv.DictWriter(out, ROSTER_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in ROSTER_COLUMNS})
    return out.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
