"""The membership use cases: each takes the caller's Principal first, decides whether the caller
may do it, then loads through the store, applies the domain rule and commits the change with its
events. They raise shared.errors domain errors only; api.py maps nothing itself.

Who owns what (the rule docs/security.md states):
- Regions, sectors and partnerships are statewide: operators define them. A partnership's own
  data (its record, targets, members, action teams, roster) is changed by operators and that
  partnership's admins, and read by every key of the partnership (admins, partner systems,
  viewers). Partner systems and viewers change nothing here.
- An organisation record is statewide. Operators and partnership admins register new ones.
  Operators change any; a partnership admin only an organisation that is an active member of
  one of its partnerships and has never been a member of a partnership outside its key (a past
  membership still shows in that partnership's roster). An organisation shared with another
  partnership is changed by operators only. A roster import follows the same rule row by row.
- Joining an existing organisation to one's partnership is how organisations are shared; it
  exposes nothing of another partnership (contacts, memberships and teams stay theirs).
- Operators and partnership admins read the statewide organisation directory (needed to join);
  partner systems and viewers see only organisations that are or were members of their
  partnerships.
- Contacts are personal data owned by the partnership that entered them (`partnership_id`):
  only that partnership's admins and operators list, read or change them; partner systems and
  viewers never see contacts. A contact is entered for a partnership the organisation is or was
  a member of. Contacts stored before this rule carry no partnership: operators only see them.
- Keys: operators issue, list and revoke every key. A partnership admin issues viewer and
  partner-system keys for its own partnerships, and lists and revokes the non-operator keys that
  cover only its own partnerships. An event source belongs to one partner system: a source held
  by a live key that covers a partnership outside the new key's is refused (a rotated key of
  the same system may reuse it); `/keys/...` and `/backbone/...` are never issued.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from services.membership import domain as d
from services.membership.roster import plan_import
from services.membership.store import Change, MembershipStore, Window
from shared.auth import Principal, hash_key, new_key
from shared.contracts import membership as mem
from shared.contracts import requests as s
from shared.contracts.base import AccessRole, EventData
from shared.envelope import CloudEvent, new_event
from shared.errors import Conflict, Invalid, NotAllowed, NotFound

ADMIN = AccessRole.PARTNERSHIP_ADMIN  # the one role besides operators that changes membership data


class Page(BaseModel):
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class Reference:
    """Statewide reference data: regions and sectors."""

    collection: str
    what: str
    defined: type[EventData]


REGIONS = Reference("regions", "region", mem.RegionDefined)
SECTORS = Reference("sectors", "sector", mem.SectorDefined)


def out(doc: dict) -> dict:
    """A stored document as answered: `_id` as `id`, never a key's verifier."""
    return {"id": doc["_id"], **{k: v for k, v in doc.items() if k not in ("_id", "key_hash")}}


def stored(model: BaseModel, **extra) -> dict:
    """A validated input as a document: dates as ISO strings, `id` as `_id`."""
    document = model.model_dump(mode="json")
    return {"_id": document.pop("id"), **document, **extra}


def patched(doc: dict, patch: BaseModel) -> dict:
    return {**doc, **patch.model_dump(mode="json", exclude_unset=True)}


def _page(found: tuple[list[dict], int], window: Window) -> Page:
    items, total = found
    return Page(items=[out(i) for i in items], total=total, offset=window.offset, limit=window.limit)


class MembershipService:
    def __init__(self, store: MembershipStore, source: str):
        self.store = store
        self.source = source  # CloudEvents source of what this service publishes

    # --- the unit of work ---------------------------------------------------------------------

    def _event(self, model: type[EventData], payload: dict) -> CloudEvent:
        try:
            return new_event(model.model_validate(payload), source=self.source)
        except ValidationError as exc:  # the change would publish an invalid event: refuse it
            error = exc.errors()[0]
            raise Invalid(".".join(str(p) for p in error["loc"]), error["msg"]) from None

    async def _created(self, collection: str, doc: dict, *events: CloudEvent) -> dict:
        await self.store.commit(Change().insert(collection, doc).emit(*events))
        return out({**doc, "version": 1})

    async def _replaced(self, collection: str, doc: dict, *events: CloudEvent) -> dict:
        await self.store.commit(Change().replace(collection, doc).emit(*events))
        return out({**doc, "version": doc["version"] + 1})

    async def _existing(self, collection: str, id: str, what: str) -> dict:
        doc = await self.store.get(collection, id)
        if doc is None:
            raise NotFound(f"no {what} {id!r}")
        return doc

    async def _partnership(self, principal: Principal, partnership_id: str, write: bool = False) -> dict:
        """The partnership, once the caller may read it (or change it, `write`)."""
        if write:
            principal.require_writer(partnership_id, ADMIN)
        else:
            principal.require_partnership(partnership_id)
        return await self._existing("partnerships", partnership_id, "partnership")

    # --- regions and sectors: operators define, everyone reads ----------------------------------

    async def define_reference(self, principal: Principal, ref: Reference, body: s.RegionIn | s.SectorIn) -> dict:
        principal.require_role()
        doc = stored(body)
        return await self._created(ref.collection, doc, self._event(ref.defined, _reference_payload(ref, doc)))

    async def redefine_reference(self, principal: Principal, ref: Reference, id: str,
                                 body: s.RegionIn | s.SectorIn) -> dict:
        principal.require_role()
        if body.id != id:
            raise Invalid("id", f"must be {id!r}, the id in the path")
        doc = stored(body, version=(await self._existing(ref.collection, id, ref.what))["version"])
        return await self._replaced(ref.collection, doc, self._event(ref.defined, _reference_payload(ref, doc)))

    async def get_reference(self, principal: Principal, ref: Reference, id: str) -> dict:
        return out(await self._existing(ref.collection, id, ref.what))

    async def list_reference(self, principal: Principal, ref: Reference, window: Window) -> Page:
        return _page(await self.store.reference_page(ref.collection, window), window)

    # --- partnerships and targets ---------------------------------------------------------------

    async def create_partnership(self, principal: Principal, body: s.PartnershipIn) -> dict:
        principal.require_role()
        for field, collection in (("region_id", "regions"), ("sector_id", "sectors"), ("convener_id", "organisations")):
            value = getattr(body, field)
            if value and await self.store.get(collection, value) is None:
                raise Invalid(field, f"unknown {collection[:-1]} {value!r}")
        doc = stored(body)
        return await self._created("partnerships", doc, self._event(mem.PartnershipCreated, d.partnership_state(doc)))

    async def list_partnerships(self, principal: Principal, window: Window, region_id: str | None = None,
                                sector_id: str | None = None, stage: str | None = None) -> Page:
        among = None if principal.is_operator else set(principal.partnership_ids)
        return _page(await self.store.partnerships_page(window, among, region_id, sector_id, stage), window)

    async def get_partnership(self, principal: Principal, partnership_id: str) -> dict:
        return out(await self._partnership(principal, partnership_id))

    async def update_partnership(self, principal: Principal, partnership_id: str, patch: s.PartnershipPatch) -> dict:
        doc = patched(await self._partnership(principal, partnership_id, write=True), patch)
        return await self._replaced("partnerships", doc, self._event(mem.PartnershipUpdated, d.partnership_state(doc)))

    async def set_target(self, principal: Principal, partnership_id: str, body: s.TargetIn) -> tuple[dict, bool]:
        """The target, and whether it is new (a repeated value changes nothing and publishes nothing)."""
        await self._partnership(principal, partnership_id, write=True)
        d.check_target(body.kpi, body.period)
        doc = {"_id": f"{partnership_id}/{body.kpi}/{body.period}", "partnership_id": partnership_id,
               **body.model_dump(mode="json")}
        before = await self.store.get("targets", doc["_id"])
        if before and before["value"] == body.value:
            return out(before), False
        event = self._event(mem.TargetSet, {"partnership_id": partnership_id, **body.model_dump()})
        if before:
            return await self._replaced("targets", {**doc, "version": before["version"]}, event), False
        return await self._created("targets", doc, event), True

    async def remove_target(self, principal: Principal, partnership_id: str, kpi: str, period: str) -> None:
        """Take a target off the roadmap (whoever may set it); metrics stops measuring against it."""
        await self._partnership(principal, partnership_id, write=True)
        doc = await self._existing("targets", f"{partnership_id}/{kpi}/{period}", "target")
        event = self._event(mem.TargetRemoved, {"partnership_id": partnership_id, "kpi": kpi, "period": period})
        await self.store.commit(Change().remove("targets", doc).emit(event))

    async def list_targets(self, principal: Principal, partnership_id: str, window: Window,
                           period: str | None = None) -> Page:
        await self._partnership(principal, partnership_id)
        return _page(await self.store.targets_page(window, partnership_id, period), window)

    # --- organisations --------------------------------------------------------------------------

    async def _visible_organisations(self, principal: Principal) -> set[str] | None:
        """None: the statewide directory (operators, admins); else those of the key's partnerships."""
        if principal.role in (AccessRole.OPERATOR, ADMIN):
            return None
        return await self.store.organisation_ids_in(set(principal.partnership_ids))

    async def register_organisation(self, principal: Principal, body: s.OrganisationIn) -> dict:
        principal.require_role(ADMIN)
        doc = stored(body)
        return await self._created("organisations", doc,
                                   self._event(mem.OrganisationRegistered, d.organisation_state(doc)))

    async def list_organisations(self, principal: Principal, window: Window, kind: str | None = None,
                                 county: str | None = None, champion: bool | None = None,
                                 name_prefix: str | None = None) -> Page:
        among = await self._visible_organisations(principal)
        return _page(await self.store.organisations_page(window, among, kind, county, champion, name_prefix), window)

    async def get_organisation(self, principal: Principal, organisation_id: str) -> dict:
        visible = await self._visible_organisations(principal)
        if visible is not None and organisation_id not in visible:
            raise NotAllowed(f"organisation {organisation_id!r} is in none of this key's partnerships")
        return out(await self._existing("organisations", organisation_id, "organisation"))

    async def update_organisation(self, principal: Principal, organisation_id: str, patch: s.OrganisationPatch) -> dict:
        principal.require_role(ADMIN)
        doc = patched(await self._existing("organisations", organisation_id, "organisation"), patch)
        d.check_organisation_change(principal.role, principal.partnership_ids, organisation_id,
                                    await self.store.memberships_of({organisation_id}))
        return await self._replaced(
            "organisations", doc, self._event(mem.OrganisationUpdated, d.organisation_state(doc))
        )

    # --- contacts: personal data, kept by the partnership that entered them ----------------------

    async def add_contact(self, principal: Principal, organisation_id: str, body: s.ContactIn) -> dict:
        principal.require_role(ADMIN)
        partnership_id = body.partnership_id or _only_partnership(principal)
        if partnership_id:
            principal.require_writer(partnership_id, ADMIN)
        await self._existing("organisations", organisation_id, "organisation")
        if partnership_id and not await self.store.roster_of(partnership_id, {organisation_id}):
            raise Invalid("partnership_id", f"organisation {organisation_id!r} has never been a member of "
                                            f"partnership {partnership_id!r}")
        return await self._created("contacts", stored(body, organisation_id=organisation_id,
                                                      partnership_id=partnership_id))

    async def list_contacts(self, principal: Principal, organisation_id: str, window: Window,
                            consent: bool | None = None) -> Page:
        principal.require_role(ADMIN)
        await self._existing("organisations", organisation_id, "organisation")
        kept_by = None if principal.is_operator else set(principal.partnership_ids)
        return _page(await self.store.contacts_page(window, organisation_id, kept_by, consent), window)

    async def _contact(self, principal: Principal, contact_id: str) -> dict:
        principal.require_role(ADMIN)
        doc = await self.store.get("contacts", contact_id)
        # Another partnership's contact is answered as missing: its existence is theirs too.
        if doc is None or not (principal.is_operator or doc.get("partnership_id") in principal.partnership_ids):
            raise NotFound(f"no contact {contact_id!r}")
        return doc

    async def get_contact(self, principal: Principal, contact_id: str) -> dict:
        return out(await self._contact(principal, contact_id))

    async def update_contact(self, principal: Principal, contact_id: str, patch: s.ContactPatch) -> dict:
        return await self._replaced("contacts", patched(await self._contact(principal, contact_id), patch))

    # --- memberships ----------------------------------------------------------------------------

    async def join(self, principal: Principal, partnership_id: str, body: s.MembershipIn) -> dict:
        await self._partnership(principal, partnership_id, write=True)
        organisation = await self.store.get("organisations", body.organisation_id)
        if organisation is None:
            raise Invalid("organisation_id", f"unknown organisation {body.organisation_id!r}")
        active = await self.store.active_membership(partnership_id, body.organisation_id)
        if active:
            raise Conflict(f"{body.organisation_id!r} is a member since {active['joined_on']}")
        doc = d.new_membership(partnership_id, organisation, body.role, body.joined_on)
        return await self._created("memberships", doc, self._event(mem.MemberJoined, d.joined_payload(doc)))

    async def list_members(self, principal: Principal, partnership_id: str, window: Window, role: str | None = None,
                           kind: str | None = None, active: bool | None = None,
                           organisation_id: str | None = None) -> Page:
        await self._partnership(principal, partnership_id)
        return _page(await self.store.members_page(window, partnership_id, role, kind, organisation_id, active), window)

    async def _membership(self, principal: Principal, partnership_id: str, membership_id: str,
                          write: bool = False) -> dict:
        await self._partnership(principal, partnership_id, write)
        doc = await self.store.get("memberships", membership_id)
        if doc is None or doc["partnership_id"] != partnership_id:
            raise NotFound(f"no membership {membership_id!r} in {partnership_id!r}")
        return doc

    async def get_member(self, principal: Principal, partnership_id: str, membership_id: str) -> dict:
        return out(await self._membership(principal, partnership_id, membership_id))

    async def leave(self, principal: Principal, partnership_id: str, membership_id: str, left_on: date) -> dict:
        doc = await self._membership(principal, partnership_id, membership_id, write=True)
        if doc["left_on"] is not None:
            raise Conflict(f"left on {doc['left_on']}")
        if left_on < date.fromisoformat(doc["joined_on"]):
            raise Invalid("left_on", f"before joined_on {doc['joined_on']}")
        doc = {**doc, "left_on": left_on.isoformat()}
        return await self._replaced("memberships", doc, self._event(mem.MemberLeft, d.left_payload(doc)))

    # --- action teams ---------------------------------------------------------------------------

    async def _check_known_organisations(self, body: s.ActionTeamIn | s.ActionTeamPatch) -> None:
        members = set(body.member_ids or ())
        ids = members | {i.owner_id for i in body.items or () if i.owner_id}
        unknown = ids - set(await self.store.organisations(ids))
        if unknown:
            raise Invalid("member_ids" if members & unknown else "items",
                          f"unknown organisation(s): {', '.join(sorted(unknown))}")

    async def form_team(self, principal: Principal, partnership_id: str, body: s.ActionTeamIn) -> dict:
        await self._partnership(principal, partnership_id, write=True)
        await self._check_known_organisations(body)
        doc = stored(body, action_team_id=body.id, partnership_id=partnership_id) | {
            "_id": f"{partnership_id}/{body.id}"
        }
        return await self._created("action_teams", doc, self._event(mem.ActionTeamFormed, d.action_team_state(doc)))

    async def list_teams(self, principal: Principal, partnership_id: str, window: Window,
                         status: str | None = None) -> Page:
        await self._partnership(principal, partnership_id)
        return _page(await self.store.action_teams_page(window, partnership_id, status), window)

    async def _team(self, principal: Principal, partnership_id: str, team_id: str, write: bool = False) -> dict:
        await self._partnership(principal, partnership_id, write)
        return await self._existing("action_teams", f"{partnership_id}/{team_id}", "action team")

    async def get_team(self, principal: Principal, partnership_id: str, team_id: str) -> dict:
        return out(await self._team(principal, partnership_id, team_id))

    async def change_team(self, principal: Principal, partnership_id: str, team_id: str,
                          patch: s.ActionTeamPatch) -> dict:
        doc = patched(await self._team(principal, partnership_id, team_id, write=True), patch)
        await self._check_known_organisations(patch)
        return await self._replaced("action_teams", doc, self._event(mem.ActionTeamChanged, d.action_team_state(doc)))

    # --- rosters (CSV) --------------------------------------------------------------------------

    async def export_roster(self, principal: Principal, partnership_id: str) -> AsyncIterator[str]:
        """Checked at once; the CSV then comes a slice of members at a time, so a roster of any
        size starts answering at once and never sits in memory whole."""
        await self._partnership(principal, partnership_id)
        return self._roster_csv(partnership_id)

    async def _roster_csv(self, partnership_id: str) -> AsyncIterator[str]:
        yield d.roster_csv_header()
        async for members in self.store.roster_slices(partnership_id):
            organisations = await self.store.organisations({m["organisation_id"] for m in members})
            yield d.roster_csv_rows({**organisations.get(m["organisation_id"], {}), **m} for m in members)

    async def import_roster(self, principal: Principal, partnership_id: str, text: str, first_line: int) -> dict:
        """Good rows are stored in one change; each bad or refused row is reported with its line."""
        await self._partnership(principal, partnership_id, write=True)
        rows, errors = d.parse_roster(text, first_line)
        named = {r.organisation.id for r in rows}
        organisations = await self.store.organisations(named)
        memberships = {m["_id"]: m for m in await self.store.roster_of(partnership_id, named)}
        stints: dict[str, list[dict]] = {}
        for m in await self.store.memberships_of(set(organisations)):
            stints.setdefault(m["organisation_id"], []).append(m)

        def check_change(organisation_id: str) -> None:
            d.check_organisation_change(principal.role, principal.partnership_ids, organisation_id,
                                        stints.get(organisation_id, ()))

        change, report = plan_import(partnership_id, rows, errors, organisations, memberships, check_change,
                                     self._event)
        if change.writes:
            try:
                await self.store.commit(change)
            except Conflict as exc:
                raise Conflict(f"{exc.message}: the roster changed meanwhile, import again") from None
        return report

    # --- access keys ----------------------------------------------------------------------------

    async def issue_key(self, principal: Principal, body: s.KeyIn) -> dict:
        """The key with its secret, which is in this answer only."""
        d.check_key_request(principal.role, principal.partnership_ids, body.role, body.partnership_ids, body.sources)
        for partnership_id in body.partnership_ids:
            if await self.store.get("partnerships", partnership_id) is None:
                raise Invalid("partnership_ids", f"unknown partnership {partnership_id!r}")
        if body.sources:
            d.check_sources_free(body.role, body.partnership_ids, body.sources,
                                 await self.store.live_keys_holding(body.sources))
        key_id, secret = new_key()
        doc = {"_id": key_id, **body.model_dump(mode="json"), "key_hash": hash_key(secret),
               "issued_by": principal.key_id, "issued_at": datetime.now(UTC), "revoked_at": None}
        issued = {k: doc[k] for k in ("key_hash", "role", "partnership_ids", "label", "sources")}
        return await self._created("issued_keys", doc, self._event(mem.AccessKeyIssued, {"key_id": key_id, **issued})) \
            | {"secret": secret}

    async def list_keys(self, principal: Principal, window: Window, revoked: bool | None = None) -> Page:
        principal.require_role(ADMIN)
        within = None if principal.is_operator else set(principal.partnership_ids)
        return _page(await self.store.keys_page(window, within, revoked), window)

    async def revoke_key(self, principal: Principal, key_id: str) -> dict:
        principal.require_role(ADMIN)
        doc = await self._existing("issued_keys", key_id, "key")
        if not d.may_manage_key(principal.role, principal.partnership_ids, doc):
            raise NotAllowed("this key may not revoke that key")
        if doc["revoked_at"] is not None:
            raise Conflict("already revoked")
        doc = {**doc, "revoked_at": datetime.now(UTC)}
        return await self._replaced("issued_keys", doc, self._event(mem.AccessKeyRevoked, {"key_id": key_id}))


def _reference_payload(ref: Reference, doc: dict) -> dict:
    return {f"{ref.what}_id": doc["_id"], **{k: v for k, v in doc.items() if k not in ("_id", "version")}}


def _only_partnership(principal: Principal) -> str | None:
    """The partnership a contact is kept by when none is named: an admin's only one."""
    if principal.is_operator:
        return None
    if len(principal.partnership_ids) != 1:
        raise Invalid("partnership_id", "required: this key covers several partnerships")
    return next(iter(principal.partnership_ids))
