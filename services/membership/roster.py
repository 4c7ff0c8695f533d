"""Roster import: the good rows of a CSV become organisations and memberships in one change;
each bad row is reported with its line. Importing the same file again changes nothing."""

from collections import Counter
from collections.abc import Callable

from services.membership import domain as d
from services.membership.store import Change, MembershipStore
from shared.contracts import membership as mem
from shared.envelope import CloudEvent

ORGANISATION_FIELDS = (*mem.OrganisationState.model_fields, "champion")


async def import_roster(store: MembershipStore, partnership_id: str, text: str, first_line: int,
                        event: Callable[[type, dict], CloudEvent]) -> dict:
    rows, errors = d.parse_roster(text, first_line)
    org_ids = sorted({r.organisation.id for r in rows})
    organisations = {o["_id"]: o for o in await store.find("organisations", {"_id": {"$in": org_ids}})}
    memberships = {m["_id"]: m for m in await store.find(
        "memberships", {"partnership_id": partnership_id, "organisation_id": {"$in": org_ids}})}
    active = {m["organisation_id"]: m for m in memberships.values() if m["left_on"] is None}
    change, counts = Change(), Counter()
    for row in rows:
        mid = d.membership_id(partnership_id, row.organisation.id, row.joined_on)
        current = active.get(row.organisation.id)
        if mid not in memberships and current and current["_id"] != mid:
            errors.append(d.RowError(line=row.line, reason=f"already a member since {current['joined_on']}"))
            counts["refused"] += 1
            continue
        _organisation(row.organisation, organisations, change, counts, event)
        _membership(partnership_id, row, mid, organisations, memberships, active, change, counts, event)
    if change.writes:
        await store.commit(change)
    errors.sort(key=lambda e: e.line)
    return {"rows": len(rows) + len(errors) - counts["refused"], "imported": len(rows) - counts["refused"],
            **{k: counts[k] for k in ("organisations_registered", "organisations_updated", "members_joined",
                                      "members_left", "unchanged")},
            "errors": [e.model_dump() for e in errors]}


def _organisation(org: d.OrganisationIn, organisations: dict, change: Change, counts: Counter, event) -> None:
    wanted = {"_id": org.id, **org.model_dump(mode="json", exclude={"id"})}
    before = organisations.get(org.id)
    if before is None:
        change.insert("organisations", wanted)
        change.emit(event(mem.OrganisationRegistered, d.organisation_state(wanted)))
        organisations[org.id] = {**wanted, "version": 1}
        counts["organisations_registered"] += 1
    elif any(before.get(k) != wanted.get(k) for k in ORGANISATION_FIELDS if k != "organisation_id"):
        after = {**before, **wanted}
        change.replace("organisations", after)
        change.emit(event(mem.OrganisationUpdated, d.organisation_state(after)))
        organisations[org.id] = {**after, "version": before["version"] + 1}
        counts["organisations_updated"] += 1


def _membership(partnership_id: str, row: d.RosterRow, mid: str, organisations: dict, memberships: dict,
                active: dict, change: Change, counts: Counter, event) -> None:
    before = memberships.get(mid)
    left_on = row.left_on.isoformat() if row.left_on else None
    if before is None:
        doc = d.new_membership(partnership_id, organisations[row.organisation.id],
                               d.MembershipIn(organisation_id=row.organisation.id, role=row.role, joined_on=row.joined_on))
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
