"""Roster import as a plan: from the parsed rows and what is stored, the writes and events of
one change and the report (each bad row with its line). Importing the same file again plans
nothing. No I/O here: the use case loads, decides who may do it, and commits."""

from collections import Counter
from collections.abc import Callable

from services.membership import domain as d
from services.membership.store import Change
from shared.contracts import membership as mem
from shared.envelope import CloudEvent
from shared.errors import Conflict, NotAllowed

ORGANISATION_FIELDS = (*mem.OrganisationState.model_fields, "champion")
Event = Callable[[type, dict], CloudEvent]


def plan_import(partnership_id: str, rows: list[d.RosterRow], errors: list[d.RowError],
                organisations: dict[str, dict], memberships: dict[str, dict],
                check_change: Callable[[str], None], event: Event) -> tuple[Change, dict]:
    """`organisations`: the stored ones the rows name; `memberships`: the partnership's stints
    of them; `check_change(organisation_id)` raises NotAllowed if the caller may not change it."""
    active = {m["organisation_id"]: m for m in memberships.values() if m["left_on"] is None}
    change, counts = Change(), Counter[str]()
    for row in rows:
        mid = d.membership_id(partnership_id, row.organisation.id, row.joined_on)
        current = active.get(row.organisation.id)
        try:
            if mid not in memberships and current and current["_id"] != mid:
                raise Conflict(f"already a member since {current['joined_on']}")
            _organisation(row.organisation, organisations, change, counts, check_change, event)
        except (Conflict, NotAllowed) as refused:
            errors.append(d.RowError(line=row.line, reason=refused.message))
            counts["refused"] += 1
            continue
        _membership(partnership_id, row, mid, organisations, memberships, active, change, counts, event)
    errors.sort(key=lambda e: e.line)
    report = {"rows": len(rows) + len(errors) - counts["refused"], "imported": len(rows) - counts["refused"],
              **{k: counts[k] for k in ("organisations_registered", "organisations_updated", "members_joined",
                                        "members_left", "unchanged")},
              "errors": [e.model_dump() for e in errors]}
    return change, report


def _organisation(org, organisations: dict, change: Change, counts: Counter, check_change, event: Event) -> None:
    wanted = {"_id": org.id, **org.model_dump(mode="json", exclude={"id"})}
    before = organisations.get(org.id)
    if before is None:
        change.insert("organisations", wanted)
        change.emit(event(mem.OrganisationRegistered, d.organisation_state(wanted)))
        organisations[org.id] = {**wanted, "version": 1}
        counts["organisations_registered"] += 1
    elif any(before.get(k) != wanted.get(k) for k in ORGANISATION_FIELDS if k != "organisation_id"):
        check_change(org.id)
        after = {**before, **wanted}
        change.replace("organisations", after)
        change.emit(event(mem.OrganisationUpdated, d.organisation_state(after)))
        organisations[org.id] = {**after, "version": before["version"] + 1}
        counts["organisations_updated"] += 1


def _membership(partnership_id: str, row: d.RosterRow, mid: str, organisations: dict, memberships: dict,
                active: dict, change: Change, counts: Counter, event: Event) -> None:
    before = memberships.get(mid)
    left_on = row.left_on.isoformat() if row.left_on else None
    if before is None:
        doc = d.new_membership(partnership_id, organisations[row.organisation.id], row.role, row.joined_on)
        change.emit(event(mem.MemberJoined, d.joined_payload(doc)))
        counts["members_joined"] += 1
        if left_on:
            doc["left_on"] = left_on
            change.emit(event(mem.MemberLeft, d.left_payload(doc)))
            counts["members_left"] += 1
        else:
            active[row.organisation.id] = doc
        change.insert("memberships", doc)
        memberships[mid] = {**doc, "version": 1}
    elif left_on and before["left_on"] is None:
        after = {**before, "left_on": left_on}
        change.replace("memberships", after)
        change.emit(event(mem.MemberLeft, d.left_payload(after)))
        memberships[mid] = {**after, "version": before["version"] + 1}
        active.pop(row.organisation.id, None)
        counts["members_left"] += 1
    else:
        counts["unchanged"] += 1
