"""The membership service's MongoDB: the roster and common agenda, issued keys, and the
transactional outbox. Every change is one transaction that writes the entities and the outbox
records of its events together, so a change and its events exist both or neither.

The use cases (service.py) ask by intent (`roster_of`, `memberships_of`, `contacts_page`...);
MongoDB's query language stays in this file."""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DeleteOne, InsertOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from shared.catalog import BY_TYPE
from shared.contracts.base import AccessRole
from shared.envelope import CloudEvent
from shared.errors import Conflict
from shared.lease import DEFAULT_LEASE, Leases
from shared.mongo import IN_SLICE, create_collections, duplicate_key, find_among, mark_multikey
from shared.settings import KafkaSettings


@dataclass(frozen=True)
class Window:
    """Which slice of a list to read (documents in id order)."""

    offset: int = 0
    limit: int = 50


@dataclass
class Change:
    """Writes to several collections and the events they publish, committed as one."""

    writes: list[tuple[str, dict, int | None]] = field(default_factory=list)  # collection, doc, version read
    events: list[CloudEvent] = field(default_factory=list)
    removals: list[tuple[str, str, int]] = field(default_factory=list)  # collection, id, version read

    def insert(self, collection: str, doc: dict) -> "Change":
        self.writes.append((collection, {**doc, "version": 1}, None))
        return self

    def replace(self, collection: str, doc: dict) -> "Change":
        """Replace a document read at doc["version"]; Conflict if it moved on meanwhile."""
        self.writes.append((collection, {**doc, "version": doc["version"] + 1}, doc["version"]))
        return self

    def remove(self, collection: str, doc: dict) -> "Change":
        """Delete a document read at doc["version"]; Conflict if it moved on meanwhile."""
        self.removals.append((collection, doc["_id"], doc["version"]))
        return self

    def emit(self, *events: CloudEvent) -> "Change":
        self.events.extend(events)
        return self


def outbox_record(event: CloudEvent, kafka: KafkaSettings) -> dict:
    event_type = BY_TYPE[event.type]
    return {"_id": event.id, "seq": ObjectId(), "type": event.type, "topic": kafka.topic(event_type.topic.name),
            "key": event_type.partition_key(event.data), "value": event.to_json(), "sent": False, "attempt": None}


def _where(**equals: Any) -> dict[str, Any]:
    """Equality filters; a None value means "any"."""
    return {k: v for k, v in equals.items() if v is not None}


# SecantusDB answers `$in` in time quadratic in the list's length (5,000 ids: 40 s): lookups go in
# slices (shared.mongo.IN_SLICE), which keep a whole roster's linear (5,000 ids: about 1 s).
# What a Change writes, in a transaction (see create_collections).
WRITTEN = ("regions", "sectors", "organisations", "partnerships", "memberships", "action_teams", "targets",
           "contacts", "issued_keys")
ROSTER_SLICE = 500  # memberships per slice of a streamed roster export


def _among(ids: set[str] | None) -> dict[str, Any]:
    return {} if ids is None else {"_id": {"$in": sorted(ids)}}


class MembershipStore:
    def __init__(self, db: AsyncDatabase, kafka: KafkaSettings, relay_lease: timedelta = DEFAULT_LEASE):
        self.db = db
        self.kafka = kafka
        self.outbox = db["outbox"]
        self.leases = Leases(db["leases"], relay_lease)
        self.on_commit = lambda: None  # the relay's wake-up

    async def create_indexes(self) -> None:
        await create_collections(self.db, [*WRITTEN, self.outbox.name])
        await self.db.partnerships.create_index([("region_id", ASCENDING), ("sector_id", ASCENDING)])
        await self.db.memberships.create_index([("partnership_id", ASCENDING), ("organisation_id", ASCENDING)])
        await self.db.memberships.create_index([("organisation_id", ASCENDING)])
        await self.db.action_teams.create_index([("partnership_id", ASCENDING)])
        await self.db.targets.create_index([("partnership_id", ASCENDING)])
        await self.db.contacts.create_index([("organisation_id", ASCENDING), ("partnership_id", ASCENDING)])
        await self.db.issued_keys.create_index([("sources", ASCENDING)])
        await mark_multikey(self.db.issued_keys, ["sources"])
        await self.outbox.create_index([("sent", ASCENDING), ("seq", ASCENDING)])

    # --- single documents and lists ---------------------------------------------------------

    async def get(self, collection: str, id: str) -> dict | None:
        return await self.db[collection].find_one({"_id": id})

    async def organisations(self, ids: set[str]) -> dict[str, dict]:
        found = await self._find_among("organisations", "_id", ids)
        return {o["_id"]: o for o in found}

    async def memberships_of(self, organisation_ids: set[str]) -> list[dict]:
        """Every stint of these organisations in any partnership, current and past."""
        return await self._find_among("memberships", "organisation_id", organisation_ids)

    async def roster_of(self, partnership_id: str, organisation_ids: set[str] | None = None) -> list[dict]:
        """The partnership's memberships, current and past (of these organisations only, if given)."""
        if organisation_ids is None:
            return await self._find("memberships", {"partnership_id": partnership_id})
        return await self._find_among("memberships", "organisation_id", organisation_ids,
                                      {"partnership_id": partnership_id})

    async def roster_slices(self, partnership_id: str) -> AsyncIterator[list[dict]]:
        """The partnership's memberships in id order, a slice at a time (for streaming)."""
        cursor = self.db.memberships.find({"partnership_id": partnership_id}).sort("_id", ASCENDING)
        slice_: list[dict] = []
        async for membership in cursor.batch_size(ROSTER_SLICE):
            slice_.append(membership)
            if len(slice_) == ROSTER_SLICE:
                yield slice_
                slice_ = []
        if slice_:
            yield slice_

    async def active_membership(self, partnership_id: str, organisation_id: str) -> dict | None:
        return await self.db.memberships.find_one(
            {"partnership_id": partnership_id, "organisation_id": organisation_id, "left_on": None})

    async def organisation_ids_in(self, partnership_ids: set[str]) -> set[str]:
        """Organisations that are or were members of any of these partnerships."""
        found = self.db.memberships.find({"partnership_id": {"$in": sorted(partnership_ids)}}, {"organisation_id": 1})
        return {m["organisation_id"] async for m in found}

    async def live_keys_holding(self, sources: list[str]) -> list[dict]:
        """Keys not revoked that were issued for any of these event sources."""
        return await self._find("issued_keys", {"sources": {"$in": sources}, "revoked_at": None})

    async def _find(self, collection: str, query: dict[str, Any]) -> list[dict]:
        return await self.db[collection].find(query).sort("_id", ASCENDING).to_list()

    async def _find_among(self, collection: str, field: str, values: set[str],
                          query: dict[str, Any] | None = None) -> list[dict]:
        """Documents whose `field` is one of `values`, asked IN_SLICE values at a time."""
        return sorted(await find_among(self.db[collection], field, sorted(values), query), key=lambda doc: doc["_id"])

    # --- pages: (documents, total) ------------------------------------------------------------

    async def reference_page(self, collection: str, window: Window) -> tuple[list[dict], int]:
        return await self._page(collection, {}, window)

    async def partnerships_page(self, window: Window, among: set[str] | None, region_id: str | None = None,
                                sector_id: str | None = None, stage: str | None = None) -> tuple[list[dict], int]:
        """`among`: these partnerships only (None: all)."""
        return await self._page("partnerships", _where(region_id=region_id, sector_id=sector_id, stage=stage)
                                | _among(among), window)

    async def targets_page(
        self, window: Window, partnership_id: str, period: str | None = None
    ) -> tuple[list[dict], int]:
        return await self._page("targets", _where(partnership_id=partnership_id, period=period), window)

    async def organisations_page(self, window: Window, among: set[str] | None, kind: str | None = None,
                                 county: str | None = None, champion: bool | None = None,
                                 name_prefix: str | None = None) -> tuple[list[dict], int]:
        query = _where(kind=kind, county=county, champion=champion) | _among(among)
        if name_prefix:
            query["name"] = {"$regex": "^" + re.escape(name_prefix), "$options": "i"}
        return await self._page("organisations", query, window)

    async def contacts_page(self, window: Window, organisation_id: str, kept_by: set[str] | None,
                            consent: bool | None = None) -> tuple[list[dict], int]:
        """`kept_by`: contacts entered by these partnerships only (None: every contact)."""
        query = _where(organisation_id=organisation_id, consent=consent)
        if kept_by is not None:
            query["partnership_id"] = {"$in": sorted(kept_by)}
        return await self._page("contacts", query, window)

    async def members_page(self, window: Window, partnership_id: str, role: str | None = None,
                           kind: str | None = None, organisation_id: str | None = None,
                           active: bool | None = None) -> tuple[list[dict], int]:
        query = _where(
            partnership_id=partnership_id, role=role, organisation_kind=kind, organisation_id=organisation_id
        )
        if active is not None:
            query["left_on"] = None if active else {"$ne": None}
        return await self._page("memberships", query, window)

    async def action_teams_page(self, window: Window, partnership_id: str,
                                status: str | None = None) -> tuple[list[dict], int]:
        return await self._page("action_teams", _where(partnership_id=partnership_id, status=status), window)

    async def keys_page(
        self, window: Window, within: set[str] | None, revoked: bool | None = None
    ) -> tuple[list[dict], int]:
        """`within`: non-operator keys covering only these partnerships (None: every key)."""
        query: dict[str, Any] = {}
        if within is not None:
            query = {"partnership_ids": {"$not": {"$elemMatch": {"$nin": sorted(within)}}},
                     "role": {"$ne": AccessRole.OPERATOR.value}}
        if revoked is not None:
            query["revoked_at"] = {"$ne": None} if revoked else None
        return await self._page("issued_keys", query, window)

    async def _page(self, collection: str, query: dict[str, Any], window: Window) -> tuple[list[dict], int]:
        items = await (self.db[collection].find(query).sort("_id", ASCENDING)
                       .skip(window.offset).limit(window.limit).to_list())
        return items, await self.db[collection].count_documents(query)

    # --- writes -----------------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        """Store the writes and the outbox records of the events in one transaction."""

        async def write(session) -> None:
            by_collection: dict[str, list[InsertOne | ReplaceOne | DeleteOne]] = {}
            for collection, doc, read_at in change.writes:
                op = InsertOne(doc) if read_at is None else ReplaceOne({"_id": doc["_id"], "version": read_at}, doc)
                by_collection.setdefault(collection, []).append(op)
            for collection, id, read_at in change.removals:
                by_collection.setdefault(collection, []).append(DeleteOne({"_id": id, "version": read_at}))
            for collection, ops in by_collection.items():
                result = await self.db[collection].bulk_write(ops, ordered=True, session=session)
                replaced = sum(1 for op in ops if isinstance(op, ReplaceOne))
                removed = sum(1 for op in ops if isinstance(op, DeleteOne))
                if result.matched_count < replaced or result.deleted_count < removed:
                    raise Conflict(f"a {collection[:-1]} changed meanwhile: read it again and retry")
            if change.events:
                await self.outbox.insert_many([outbox_record(e, self.kafka) for e in change.events], session=session)

        try:
            async with self.db.client.start_session() as session:
                await session.with_transaction(write)
        except PyMongoError as exc:
            if duplicate_key(exc):
                raise Conflict("already exists") from None  # `from None`: the error holds the document
            raise
        if change.events:
            self.on_commit()

    # --- the outbox -------------------------------------------------------------------------

    async def unsent(self, limit: int) -> list[dict]:
        return await self.outbox.find({"sent": False}).sort("seq", ASCENDING).limit(limit).to_list()

    async def mark_attempt(self, ids: list[str], offsets: dict[str, dict[int, int]]) -> None:
        """Before publishing: where each topic's partitions ended, so a relay that dies after
        publishing can find out which of these records made it."""
        stored = {topic: {str(p): o for p, o in parts.items()} for topic, parts in offsets.items()}
        await self._update_among(ids, {"attempt": stored})

    async def mark_sent(self, ids: list[str]) -> None:
        await self._update_among(ids, {"sent": True, "attempt": None})

    async def _update_among(self, ids: list[str], values: dict[str, Any]) -> None:
        for start in range(0, len(ids), IN_SLICE):
            await self.outbox.update_many({"_id": {"$in": ids[start:start + IN_SLICE]}}, {"$set": values})

    async def prune_sent(self, older_than: timedelta) -> None:
        cutoff = ObjectId.from_datetime(datetime.now(UTC) - older_than)
        await self.outbox.delete_many({"sent": True, "seq": {"$lt": cutoff}})

    async def hold_lease(self, name: str, owner: str) -> bool:
        """One relay at a time: take or renew the lease if it is free, run out or ours."""
        return await self.leases.take(name, owner) is not None

    async def release_lease(self, name: str, owner: str) -> None:
        await self.leases.release([name], owner)
