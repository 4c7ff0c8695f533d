"""MembershipStore's methods over dicts in memory, for the use cases' unit tests. Same answers as
the MongoDB store (documents in id order, (items, total) pages), no server."""

import copy
from collections.abc import Callable

from services.membership.store import Change, Window
from shared.errors import Conflict

Match = Callable[[dict], bool]


def _equal(**wanted) -> Match:
    return lambda doc: all(doc.get(k) == v for k, v in wanted.items() if v is not None)


class FakeStore:
    def __init__(self):
        self.collections: dict[str, dict[str, dict]] = {}
        self.events = []  # every event committed, in order

    def _all(self, collection: str, match: Match = lambda doc: True) -> list[dict]:
        docs = self.collections.get(collection, {})
        return [copy.deepcopy(docs[k]) for k in sorted(docs) if match(docs[k])]

    def _page(self, collection: str, match: Match, window: Window) -> tuple[list[dict], int]:
        found = self._all(collection, match)
        return found[window.offset:window.offset + window.limit], len(found)

    async def get(self, collection: str, id: str) -> dict | None:
        doc = self.collections.get(collection, {}).get(id)
        return copy.deepcopy(doc)

    async def organisations(self, ids: set[str]) -> dict[str, dict]:
        return {o["_id"]: o for o in self._all("organisations", lambda o: o["_id"] in ids)}

    async def memberships_of(self, organisation_ids: set[str]) -> list[dict]:
        return self._all("memberships", lambda m: m["organisation_id"] in organisation_ids)

    async def roster_of(self, partnership_id: str, organisation_ids: set[str] | None = None) -> list[dict]:
        return self._all("memberships", lambda m: m["partnership_id"] == partnership_id
                         and (organisation_ids is None or m["organisation_id"] in organisation_ids))

    async def roster_slices(self, partnership_id: str):
        yield await self.roster_of(partnership_id)

    async def active_membership(self, partnership_id: str, organisation_id: str) -> dict | None:
        found = self._all("memberships", lambda m: (m["partnership_id"], m["organisation_id"], m["left_on"])
                          == (partnership_id, organisation_id, None))
        return found[0] if found else None

    async def organisation_ids_in(self, partnership_ids: set[str]) -> set[str]:
        return {
            m["organisation_id"] for m in self._all("memberships", lambda m: m["partnership_id"] in partnership_ids)
        }

    async def live_keys_holding(self, sources: list[str]) -> list[dict]:
        return self._all("issued_keys", lambda k: k["revoked_at"] is None and set(k["sources"]) & set(sources))

    async def reference_page(self, collection: str, window: Window):
        return self._page(collection, lambda doc: True, window)

    async def partnerships_page(self, window, among, region_id=None, sector_id=None, stage=None):
        match = _equal(region_id=region_id, sector_id=sector_id, stage=stage)
        return self._page("partnerships", lambda p: match(p) and (among is None or p["_id"] in among), window)

    async def targets_page(self, window, partnership_id, period=None):
        return self._page("targets", _equal(partnership_id=partnership_id, period=period), window)

    async def organisations_page(self, window, among, kind=None, county=None, champion=None, name_prefix=None):
        match = _equal(kind=kind, county=county, champion=champion)
        return self._page("organisations", lambda o: match(o) and (among is None or o["_id"] in among)
                          and o["name"].lower().startswith((name_prefix or "").lower()), window)

    async def contacts_page(self, window, organisation_id, kept_by, consent=None):
        match = _equal(organisation_id=organisation_id, consent=consent)
        return self._page("contacts", lambda c: match(c) and (kept_by is None or c.get("partnership_id") in kept_by),
                          window)

    async def members_page(self, window, partnership_id, role=None, kind=None, organisation_id=None, active=None):
        match = _equal(
            partnership_id=partnership_id, role=role, organisation_kind=kind, organisation_id=organisation_id
        )
        return self._page("memberships", lambda m: match(m) and (active is None or (m["left_on"] is None) == active),
                          window)

    async def action_teams_page(self, window, partnership_id, status=None):
        return self._page("action_teams", _equal(partnership_id=partnership_id, status=status), window)

    async def keys_page(self, window, within, revoked=None):
        def match(k: dict) -> bool:
            scoped = within is None or (k["role"] != "operator" and set(k["partnership_ids"]) <= within)
            return scoped and (revoked is None or (k["revoked_at"] is not None) == revoked)

        return self._page("issued_keys", match, window)

    async def commit(self, change: Change) -> None:
        """All writes or none, like the MongoDB transaction."""
        after = copy.deepcopy(self.collections)
        for collection, doc, read_at in change.writes:
            docs = after.setdefault(collection, {})
            if read_at is None and doc["_id"] in docs:
                raise Conflict("already exists")
            if read_at is not None and docs.get(doc["_id"], {}).get("version") != read_at:
                raise Conflict(f"a {collection[:-1]} changed meanwhile: read it again and retry")
            docs[doc["_id"]] = copy.deepcopy(doc)
        for collection, id, read_at in change.removals:
            docs = after.setdefault(collection, {})
            if docs.get(id, {}).get("version") != read_at:
                raise Conflict(f"a {collection[:-1]} changed meanwhile: read it again and retry")
            del docs[id]
        self.collections = after
        self.events.extend(change.events)
