"""The roster and the common agenda as pure rules: the events a change publishes, who may change
a shared organisation, which keys an issuer may create, and roster CSV rows. No I/O here."""

import csv
import io
from collections.abc import Collection, Iterable
from datetime import date

from pydantic import BaseModel, ValidationError

from shared.contracts import membership as mem
from shared.contracts.base import AccessRole, Day, MembershipRole, OrganisationKind
from shared.contracts.requests import Input, OrganisationIn
from shared.errors import Conflict, Invalid, NotAllowed
from shared.kpi_names import unknown_kpi
from shared.periods import parse_target_period
from shared.spreadsheet import FORMULA_STARTS, csv_lines, csv_text

# --- targets -------------------------------------------------------------------------------------

def check_target(kpi: str, period: str) -> None:
    """A target names a single-valued KPI of the catalogue and a period in the documented years:
    anything else could never be measured, and would sit in every partnership's milestone check."""
    if problem := unknown_kpi(kpi):
        raise Invalid("kpi", problem)
    try:
        parse_target_period(period)
    except ValueError as exc:
        raise Invalid("period", str(exc)) from None


# --- event payloads from stored documents ------------------------------------------------------


def partnership_state(doc: dict) -> dict:
    """The payload of PartnershipCreated/Updated from a stored partnership."""
    fields = mem.PartnershipState.model_fields
    return {"partnership_id": doc["_id"], **{k: doc.get(k) for k in fields if k != "partnership_id" and k in doc}}


def organisation_state(doc: dict) -> dict:
    fields = mem.OrganisationState.model_fields
    return {"organisation_id": doc["_id"], **{k: doc.get(k) for k in fields if k != "organisation_id"}}


def joined_payload(doc: dict) -> dict:
    return {"membership_id": doc["_id"], **{k: doc[k] for k in mem.MemberJoined.model_fields if k != "membership_id"}}


def left_payload(doc: dict) -> dict:
    return {"membership_id": doc["_id"], **{k: doc[k] for k in mem.MemberLeft.model_fields if k != "membership_id"}}


def action_team_state(doc: dict) -> dict:
    fields = mem.ActionTeamState.model_fields
    return {"action_team_id": doc["action_team_id"], **{k: doc.get(k) for k in fields if k != "action_team_id"}}


# --- memberships and organisations ------------------------------------------------------------

def membership_id(partnership_id: str, organisation_id: str, joined_on: date) -> str:
    """One id per stint: re-joining later is a new membership, so history is kept, and the same
    roster row imported twice is the same membership."""
    return f"{partnership_id}:{organisation_id}:{joined_on.isoformat()}"


def new_membership(partnership_id: str, organisation: dict, role: MembershipRole, joined_on: date) -> dict:
    return {"_id": membership_id(partnership_id, organisation["_id"], joined_on),
            "partnership_id": partnership_id, "organisation_id": organisation["_id"],
            "organisation_kind": organisation["kind"], "role": role.value,
            "joined_on": joined_on.isoformat(), "left_on": None}


def check_organisation_change(role: AccessRole, mine: Collection[str], organisation_id: str,
                              memberships: Iterable[dict]) -> None:
    """An organisation record is statewide. Operators change any; a partnership admin only one
    that is an active member of one of its partnerships and has never been a member of another
    (a past membership still shows in that partnership's roster)."""
    if role is AccessRole.OPERATOR:
        return
    if role is not AccessRole.PARTNERSHIP_ADMIN:
        raise NotAllowed(f"role {role.value!r} may not change organisations")
    memberships = list(memberships)
    if {m["partnership_id"] for m in memberships} - set(mine):
        raise NotAllowed(f"organisation {organisation_id!r} is shared with other partnerships: "
                         "only operators change it")
    if not any(m["left_on"] is None for m in memberships):
        raise NotAllowed(f"organisation {organisation_id!r} is no active member of this key's partnerships: "
                         "only operators change it")


# --- access keys ------------------------------------------------------------------------------

# Sources no key may be issued for: every key's own `/keys/<key_id>` and the services' own.
RESERVED_SOURCES = ("/keys/", "/backbone/")
# What a partnership admin may issue, for its own partnerships.
ADMIN_ISSUES = (AccessRole.VIEWER, AccessRole.PARTNER_SYSTEM)


def check_key_request(issuer_role: AccessRole, issuer_partnerships: Collection[str], role: AccessRole,
                      partnership_ids: Collection[str], sources: Collection[str]) -> None:
    """Invalid for a key that makes no sense; NotAllowed for one this issuer may not create.
    Operators issue anything; a partnership admin viewer and partner-system keys of its own
    partnerships."""
    if role is not AccessRole.OPERATOR and not partnership_ids:
        raise Invalid("partnership_ids", "a partnership key needs at least one partnership")
    if role is AccessRole.OPERATOR and partnership_ids:
        raise Invalid("partnership_ids", "an operator key covers every partnership: give no partnership_ids")
    if role is AccessRole.VIEWER and sources:
        raise Invalid("sources", "a viewer key sends no events")
    reserved = [s for s in sources if s.startswith(RESERVED_SOURCES)]
    if reserved:
        raise Invalid("sources", f"{reserved[0]!r} is reserved (keys' and services' own sources)")
    if issuer_role is AccessRole.OPERATOR:
        return
    if issuer_role is not AccessRole.PARTNERSHIP_ADMIN or role not in ADMIN_ISSUES:
        raise NotAllowed(f"role {issuer_role.value!r} may not issue {role.value!r} keys")
    outside = sorted(set(partnership_ids) - set(issuer_partnerships))
    if outside:
        raise NotAllowed(f"this key has no access to partnership {outside[0]!r}")


def may_manage_key(issuer_role: AccessRole, issuer_partnerships: Collection[str], key: dict) -> bool:
    """Operators list and revoke every key; a partnership admin the non-operator keys that cover
    only its own partnerships (its viewers and partner systems, and fellow admins)."""
    if issuer_role is AccessRole.OPERATOR:
        return True
    return (issuer_role is AccessRole.PARTNERSHIP_ADMIN and key["role"] != AccessRole.OPERATOR.value
            and set(key["partnership_ids"]) <= set(issuer_partnerships))


def check_sources_free(role: AccessRole, partnership_ids: Collection[str], sources: Collection[str],
                       holders: Iterable[dict]) -> None:
    """A source belongs to one partner system: events are deduplicated by (source, id). A live
    key holding one may share it only if it covers no partnership outside the new key's (a
    rotated key of the same system)."""
    if role is AccessRole.OPERATOR:
        return  # an operator key covers every partnership
    for holder in holders:
        if holder["role"] == AccessRole.OPERATOR.value or set(holder["partnership_ids"]) - set(partnership_ids):
            taken = sorted(set(holder["sources"]) & set(sources))
            raise Conflict(f"sources: {', '.join(taken)} already belong(s) to another system's key")


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


def _one_of(values: Iterable) -> str:
    return "one of " + ", ".join(str(v.value) for v in values)


DATE = "a date written YYYY-MM-DD, e.g. 2024-07-01"
EXPECTED = {  # what a roster column holds, in words (never the pattern that checks it)
    "organisation_id": "an id of letters and digits (also . _ : -), at most 128, starting with a letter or digit",
    "name": "a name of 1 to 200 characters", "kind": _one_of(OrganisationKind),
    "size_band": "at most 20 characters", "naics": "a NAICS code of 2 to 6 digits", "county": "at most 100 characters",
    "state": "a two-letter state code in capitals, e.g. CT", "role": _one_of(MembershipRole),
    "joined_on": DATE, "left_on": DATE,
}


def _reason(exc: ValidationError) -> str:
    """Each bad cell as `column X: found ..., expected ...`."""
    parts = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        column = "organisation_id" if loc == ("organisation", "id") else str(loc[-1]) if loc else ""
        found = error.get("input")
        found_text = "nothing" if found in (None, "") or error["type"] == "missing" else repr(str(found)[:40])
        parts.append(f"column {column}: found {found_text}, expected {EXPECTED.get(column, error['msg'])}")
    return "; ".join(parts)


def _unquoted(value: str) -> str:
    """A cell as stored: the export prefixes a formula-like text with one apostrophe."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


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
    rows, errors = [], []
    seen: dict[tuple[str, date], int] = {}  # (organisation, joined_on) -> its line
    for record in reader:
        line = first_line + reader.line_num - 1
        if None in record:
            errors.append(RowError(line=line, reason="more fields than columns"))
            continue
        values = {k: (_unquoted(v).strip() or None) if v is not None else None for k, v in record.items()}
        organisation: dict[str, object] = {
            k: values.get(k) for k in OrganisationIn.model_fields if k != "champion" and values.get(k) is not None
        }
        organisation["id"] = values.get("organisation_id")
        organisation["champion"] = (values.get("champion") or "").lower() in ("1", "true", "yes", "y")
        try:
            row = RosterRow.model_validate({"line": line, "organisation": organisation,
                                            "role": values.get("role") or MembershipRole.MEMBER,
                                            "joined_on": values.get("joined_on"), "left_on": values.get("left_on")})
        except ValidationError as exc:
            errors.append(RowError(line=line, reason=_reason(exc)))
            continue
        if row.left_on and row.left_on < row.joined_on:
            errors.append(RowError(line=line, reason=f"column left_on: found {row.left_on}, expected a date "
                                                     f"on or after joined_on ({row.joined_on})"))
            continue
        key = (row.organisation.id, row.joined_on)
        if key in seen:
            errors.append(RowError(line=line, reason=f"duplicate of line {seen[key]}"))
            continue
        seen[key] = line
        rows.append(row)
    return rows, errors


def roster_csv(rows: Iterable[dict]) -> str:
    """Rows (organisation fields + role, joined_on, left_on) as CSV that parse_roster reads back;
    no cell runs as a formula in a spreadsheet."""
    return csv_text(ROSTER_COLUMNS, _roster_cells(rows))


def roster_csv_header() -> str:
    return csv_lines([ROSTER_COLUMNS])


def roster_csv_rows(rows: Iterable[dict]) -> str:
    """roster_csv without its header: one slice of a streamed roster."""
    return csv_lines(_roster_cells(rows))


def _roster_cells(rows: Iterable[dict]) -> Iterable[list[str]]:
    return ([_cell(row.get(c)) for c in ROSTER_COLUMNS] for row in rows)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
