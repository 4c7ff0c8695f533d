"""The membership service's MongoDB: the roster and common agenda, issued keys, and the
transactional outbox. Every change is one transaction that writes the entities and the outbox
records of its events together, so a change and its events exist both or neither."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DeleteOne, InsertOne, ReplaceOne, UpdateMany
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.catalog import BY_TYPE
from shared.envelope import CloudEvent
from shared.settings import KafkaSettings

COLLECTIONS = ("regions", "sectors", "partnerships", "targets", "organisations", "memberships",
               "action_teams", "contacts", "issued_keys")

Write = InsertOne | ReplaceOne | UpdateMany | DeleteOne


class Conflict(Exception):
    """A duplicate id, or a document changed by someone else since it was read."""


@dataclass
class Change:
    """Writes to several collections and the events they publish, committed as one."""

    writes: list[tuple[str, Write]] = field(default_factory=list)
    events: list[CloudEvent] = field(default_factory=list)

    def insert(self, collection: str, doc: dict) -> "Change":
        self.writes.append((collection, InsertOne({**doc, "version": 1})))
        return self

    def replace(self, collection: str, doc: dict) -> "Change":
        """Replace a document read at doc["version"]; Conflict if it moved on meanwhile."""
        self.writes.append((collection, ReplaceOne({"_id": doc["_id"], "version": doc["version"]},
                                                   {**doc, "version": doc["version"] + 1})))
        return self

    def emit(self, *events: CloudEvent) -> "Change":
        self.events.extend(events)
        return self


def outbox_record(event: CloudEvent, kafka: KafkaSettings) -> dict:
    event_type = BY_TYPE[event.type]
    return {"_id": event.id, "seq": ObjectId(), "type": event.type, "topic": kafka.topic(event_type.topic.name),
            "key": event_type.partition_key(event.data), "value": event.to_json(), "sent": False, "attempt": None}


class MembershipStore:
    def __init__(self, db: AsyncDatabase, kafka: KafkaSettings):
        self.db = db
        self.kafka = kafka
        self.outbox = db["outbox"]
        self.leases = db["leases"]
        self.on_commit = lambda: None  # the relay's wake-up

    async def create_indexes(self) -> None:
        await self.db.partnerships.create_index([("region_id", ASCENDING), ("sector_id", ASCENDING)])
        await self.db.memberships.create_index([("partnership_id", ASCENDING), ("organisation_id", ASCENDING)])
        await self.db.action_teams.create_index([("partnership_id", ASCENDING)])
        await self.db.targets.create_index([("partnership_id", ASCENDING)])
        await self.db.contacts.create_index([("organisation_id", ASCENDING)])
        await self.outbox.create_index([("sent", ASCENDING), ("seq", ASCENDING)])

    # --- reads ------------------------------------------------------------------------------

    async def get(self, collection: str, id: str) -> dict | None:
        return await self.db[collection].find_one({"_id": id})

    async def find(self, collection: str, query: dict[str, Any]) -> list[dict]:
        return await self.db[collection].find(query).sort("_id", ASCENDING).to_list()

    async def page(self, collection: str, query: dict[str, Any], offset: int, limit: int) -> tuple[list[dict], int]:
        items = await self.db[collection].find(query).sort("_id", ASCENDING).skip(offset).limit(limit).to_list()
        return items, await self.db[collection].count_documents(query)

    async def is_empty(self) -> bool:
        return await self.db.partnerships.find_one({}) is None

    # --- writes -----------------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        """Store the writes and the outbox records of the events in one transaction."""

        async def write(session) -> None:
            by_collection: dict[str, list[Write]] = {}
            for collection, op in change.writes:
                by_collection.setdefault(collection, []).append(op)
            for collection, ops in by_collection.items():
                result = await self.db[collection].bulk_write(ops, ordered=True, session=session)
                replaced = sum(1 for op in ops if isinstance(op, ReplaceOne))
                if result.matched_count < replaced:
                    raise Conflict(f"a {collection[:-1]} changed meanwhile: read it again and retry")
            if change.events:
                await self.outbox.insert_many([outbox_record(e, self.kafka) for e in change.events], session=session)

        try:
            async with self.db.client.start_session() as session:
                await session.with_transaction(write)
        except DuplicateKeyError:
            raise Conflict("already exists") from None
        except BulkWriteError as exc:
            if any(e.get("code") == 11000 for e in exc.details.get("writeErrors", [])):
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
        await self.outbox.update_many({"_id": {"$in": ids}}, {"$set": {"attempt": stored}})

    async def mark_sent(self, ids: list[str]) -> None:
        if ids:
            await self.outbox.update_many({"_id": {"$in": ids}}, {"$set": {"sent": True, "attempt": None}})

    async def prune_sent(self, older_than: timedelta) -> None:
        cutoff = ObjectId.from_datetime(datetime.now(UTC) - older_than)
        await self.outbox.delete_many({"sent": True, "seq": {"$lt": cutoff}})

    async def hold_lease(self, name: str, owner: str, seconds: float) -> bool:
        """One relay at a time: take or renew the lease if it is free, expired or ours."""
        now = datetime.now(UTC)
        try:
            await self.leases.update_one(
                {"_id": name, "$or": [{"owner": owner}, {"until": {"$lt": now}}]},
                {"$set": {"owner": owner, "until": now + timedelta(seconds=seconds)}}, upsert=True)
            return True
        except DuplicateKeyError:
            return False  # held by another live relay

    async def release_lease(self, name: str, owner: str) -> None:
        await self.leases.delete_one({"_id": name, "owner": owner})
