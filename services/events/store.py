"""The events service's MongoDB: its read model of the membership roster, the lifecycle of
activities, the hires later outcomes refer to, the ids of every accepted event, and the events
held until what they name arrives.

Read-model updates are idempotent and independent of arrival order, because organisations are
keyed by organisation on Kafka while memberships are keyed by partnership: the two may arrive
in either order, and any message may be redelivered.
"""

import asyncio
from collections.abc import Set
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.events.domain import Activity, Facts, Hire, Key, References, identity, partnership_of, record_of
from shared.contracts.base import ActionTeamStatus
from shared.contracts.membership import ActionTeamState, MemberJoined, MemberLeft, OrganisationState, PartnershipState
from shared.envelope import CloudEvent
from shared.lease import DEFAULT_LEASE, Leases
from shared.mongo import find_among


class HeldStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass
class Holds:
    """What one decision changes in the held events, stored with its accepted events."""

    new: list[dict] = field(default_factory=list)  # events held now, as `held_doc` makes them
    retries: dict[str, dict] = field(default_factory=dict)  # identity -> fields of the next attempt
    settled: dict[str, dict] = field(default_factory=dict)  # identity -> final status, reason, errors

    def __bool__(self) -> bool:
        return bool(self.new or self.retries or self.settled)


def held_doc(event: CloudEvent, *, entry: str, origin: dict | None, errors: list[dict], reason: str,
             held_at: datetime, deadline: datetime, next_attempt_at: datetime) -> dict:
    """A held event as stored: all it takes to decide it again (the event itself) and to answer
    its sender (status, reason, errors). `origin`: a Kafka event's record (topic, partition, offset)."""
    return {"_id": identity(event.source, event.id), "source": event.source, "id": event.id,
            "partnership_id": partnership_of(event.data), "organisations": _organisations(event),
            "event": event.to_json().decode(), "entry": entry, "origin": origin,
            "status": HeldStatus.PENDING, "reason": reason, "errors": errors, "attempts": 0,
            "held_at": held_at, "deadline": deadline, "next_attempt_at": next_attempt_at}


def _organisations(event: CloudEvent) -> list[str]:
    fields = vars(event.data)
    return [o for name in ("employer_id", "provider_id") if (o := fields.get(name))] + list(fields.get("host_ids", ()))


def _id(key: Key) -> str:
    # Ids are unique only within a partnership. "/" cannot occur in an Id, so the joined key is
    # unambiguous, and a string _id is an exact index lookup on every server (SecantusDB scans
    # for sub-document _ids).
    return "/".join(key)


class EventsStore:
    def __init__(self, db: AsyncDatabase, decision_lease: timedelta = DEFAULT_LEASE):
        self.client = db.client
        self.partnerships = db["partnerships"]
        self.organisations = db["organisations"]
        self.memberships = db["memberships"]
        self.action_teams = db["action_teams"]
        self.activities = db["activities"]
        self.hires = db["hires"]
        # One document per accepted event; its _id (the event's identity: source and id) is the
        # unique index that makes every entry point accept an event once.
        self.accepted = db["accepted_events"]
        # One lease per partnership: which replica decides its events now, and until when.
        self.turns = Leases(db["decision_turns"], decision_lease)
        # One document per event held until what it names arrives, and its final status.
        self.held = db["held_events"]

    async def create_indexes(self) -> None:
        await self.memberships.create_index([("partnership_id", 1), ("organisation_id", 1)])
        await self.accepted.create_index([("partnership_id", 1), ("time", -1)])
        await self.accepted.create_index([("partnership_id", 1), ("id", 1)])
        await self.held.create_index([("status", 1), ("next_attempt_at", 1)])
        await self.held.create_index([("status", 1), ("partnership_id", 1)])
        await self.held.create_index([("status", 1), ("organisations", 1)])

    # --- read model, from backbone.membership ---------------------------------------------

    async def save_partnership(self, data: PartnershipState) -> None:
        await self.partnerships.update_one(
            {"_id": data.partnership_id}, {"$set": {"name": data.name, "stage": data.stage.value}}, upsert=True)

    async def save_organisation(self, data: OrganisationState) -> None:
        await self.organisations.update_one(
            {"_id": data.organisation_id}, {"$set": {"name": data.name, "kind": data.kind.value}}, upsert=True)

    async def member_joined(self, data: MemberJoined) -> None:
        await self._save_membership(data, joined_on=data.joined_on)
        # A member is a known organisation even before its registration event arrives.
        await self.organisations.update_one(
            {"_id": data.organisation_id}, {"$setOnInsert": {"kind": data.organisation_kind.value}}, upsert=True)

    async def member_left(self, data: MemberLeft) -> None:
        await self._save_membership(data, left_on=data.left_on)

    async def _save_membership(self, data: MemberJoined | MemberLeft, **dates: date) -> None:
        # $max on dates: a redelivered or late "joined" never undoes a later "left", and vice versa.
        await self.memberships.update_one(
            {"_id": data.membership_id},
            {"$set": {"partnership_id": data.partnership_id, "organisation_id": data.organisation_id},
             "$max": {name: day.isoformat() for name, day in dates.items()}},
            upsert=True,
        )

    async def save_action_team(self, data: ActionTeamState) -> None:
        await self.action_teams.update_one(
            {"_id": _id((data.partnership_id, data.action_team_id))},
            {"$set": {"partnership_id": data.partnership_id, "action_team_id": data.action_team_id,
                      "status": data.status.value}},
            upsert=True,
        )

    # --- the service's own state ------------------------------------------------------------

    def turn(self, partnership_ids: set[str], holder: str) -> AbstractAsyncContextManager[None]:
        """Decide these partnerships' events alone among every replica of the service: rules read
        state, publish, then store, and a second replica in between could pass a rule only one
        may. A short lease per partnership, renewed while held (shared/lease.py): a replica that
        dies holding a turn loses it within one lease time."""
        return self.turns.hold(partnership_ids, holder)

    async def recorded(self, identities: list[str]) -> set[str]:
        """Which of these events (by `domain.identity`) were accepted before."""
        return {doc["_id"] for doc in await find_among(self.accepted, "_id", identities, projection={"_id": 1})}

    async def facts(self, refs: References) -> Facts:
        """Load everything the rules of one submission will look at: the collections side by side,
        each by its index (shared.mongo.find_among)."""

        async def ids(collection, keys) -> list[dict]:
            return await find_among(collection, "_id", keys)

        async def active_members() -> set[Key]:
            wanted: dict[str, list[str]] = {}
            for partnership_id, organisation_id in refs.members:
                wanted.setdefault(partnership_id, []).append(organisation_id)
            docs = []
            for partnership_id, organisation_ids in wanted.items():  # by index: one partnership a query
                docs += await find_among(self.memberships, "organisation_id", organisation_ids,
                                         {"partnership_id": partnership_id})
            # Active: joined, and not left since (a rejoin under the same membership id counts).
            return {(d["partnership_id"], d["organisation_id"]) for d in docs
                    if "joined_on" in d and d["joined_on"] > d.get("left_on", "")}

        partnerships, organisations, members, teams, activities, hires = await asyncio.gather(
            ids(self.partnerships, refs.partnerships),
            ids(self.organisations, refs.organisations),
            active_members(),
            ids(self.action_teams, [_id(k) for k in refs.action_teams]),
            ids(self.activities, [_id(k) for k in refs.activities]),
            ids(self.hires, [_id(k) for k in refs.hires]),
        )
        records = await ids(self.accepted, refs.records)  # voids only: no query without one
        return Facts(
            partnerships={d["_id"] for d in partnerships},
            organisations={d["_id"] for d in organisations},
            members=members,
            action_teams={(d["partnership_id"], d["action_team_id"]): ActionTeamStatus(d["status"])
                          for d in teams},
            activities={(a.partnership_id, a.activity_id): a
                        for a in (Activity.model_validate(d["state"]) for d in activities)},
            hires={(h.partnership_id, h.hire_id): h for h in (Hire.model_validate(d["hire"]) for d in hires)},
            records={d["_id"]: d for d in records},
        )

    async def record(self, events: list[CloudEvent], facts: Facts, holds: Holds | None = None) -> None:
        """Store accepted events' ids and their effects, and what became of held events, together:
        a transaction, so a crash never leaves an id recorded without its effect, or a held event
        both accepted and still waiting."""
        if not events and not holds:
            return
        async with self.client.start_session() as session:
            async with await session.start_transaction():
                if events:
                    await self.accepted.insert_many(
                        [facts.records.get(identity(e.source, e.id)) or record_of(e) for e in events],
                        session=session)
                if facts.voided:
                    await self.accepted.bulk_write(
                        [UpdateOne({"_id": record, "voided_by": {"$exists": False}}, {"$set": {"voided_by": void_id}})
                         for record, void_id in facts.voided.items()], session=session)
                if holds:
                    await self._store_holds(holds, session)
                if facts.changed_activities:
                    await self.activities.bulk_write(
                        [ReplaceOne({"_id": _id(key)},
                                    {"state": facts.activities[key].model_dump(mode="json")}, upsert=True)
                         for key in facts.changed_activities],
                        session=session)
                if facts.removed_hires:  # before the new ones: a correction records a voided hire's id again
                    await self.hires.delete_many({"_id": {"$in": [_id(key) for key in facts.removed_hires]}},
                                                 session=session)
                if facts.new_hires:
                    await self.hires.insert_many(
                        [{"_id": _id((h.partnership_id, h.hire_id)), "hire": h.model_dump(mode="json")}
                         for h in facts.new_hires],
                        session=session)

    async def _store_holds(self, holds: Holds, session) -> None:
        # Replacing: an event refused after its hold may be sent again, and is held afresh.
        writes: list[ReplaceOne | UpdateOne] = [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in holds.new]
        # Only while still pending: what another replica decided meanwhile stays decided.
        writes += [UpdateOne({"_id": i, "status": HeldStatus.PENDING}, {"$set": retry, "$inc": {"attempts": 1}})
                   for i, retry in holds.retries.items()]
        writes += [UpdateOne({"_id": i, "status": HeldStatus.PENDING}, {"$set": settled})
                   for i, settled in holds.settled.items()]
        await self.held.bulk_write(writes, ordered=True, session=session)

    # --- held events ------------------------------------------------------------------------

    async def pending(self, identities: list[str]) -> dict[str, dict]:
        """The held events among these (by `domain.identity`) still waiting for a decision."""
        if not identities:
            return {}
        docs = await find_among(self.held, "_id", identities, {"status": HeldStatus.PENDING})
        return {doc["_id"]: doc for doc in docs}

    async def due(self, now: datetime, limit: int) -> list[dict]:
        """Held events whose next attempt is due, the earliest held first."""
        return await self.held.find({"status": HeldStatus.PENDING, "next_attempt_at": {"$lte": now}}) \
            .sort([("held_at", 1), ("_id", 1)]).limit(limit).to_list()

    async def next_due(self) -> datetime | None:
        doc = await self.held.find_one({"status": HeldStatus.PENDING}, {"next_attempt_at": 1},
                                       sort=[("next_attempt_at", 1)])
        return doc["next_attempt_at"].replace(tzinfo=UTC) if doc else None

    async def held_count(self) -> int:
        return await self.held.count_documents({"status": HeldStatus.PENDING})

    async def wake(self, *, partnership_ids: Set[str] = frozenset(), organisation_id: str | None = None) -> int:
        """Make held events of these partnerships, or naming this organisation, due now: what
        they wait for may just have arrived. Returns how many."""
        named: list[dict] = [{"partnership_id": {"$in": list(partnership_ids)}}] if partnership_ids else []
        named += [{"organisations": organisation_id}] if organisation_id else []
        if not named:
            return 0
        # In a transaction of its own: there a write conflict with a decision fails at once and is
        # retried whole (with_transaction). Outside one, the local server (SecantusDB 0.7) retries a
        # conflicting update_many while holding the collection, and the decision's transaction,
        # which must write these documents to finish, waits for that lock for ever (seen on disk).
        async def wake_due(session) -> int:
            now = datetime.now(UTC)  # those due already are left alone: a load wakes a partnership often
            result = await self.held.update_many({"status": HeldStatus.PENDING, "next_attempt_at": {"$gt": now},
                                                  "$or": named}, {"$set": {"next_attempt_at": now}}, session=session)
            return result.modified_count

        async with self.client.start_session() as session:
            return await session.with_transaction(wake_due)

    async def status(self, partnership_id: str, event_identity: str) -> dict | None:
        """What became of an event of this partnership: accepted, or held (pending, or refused
        after its hold). None when it was never accepted nor held (or is another partnership's)."""
        accepted = await self.accepted.find_one({"_id": event_identity, "partnership_id": partnership_id})
        if accepted:
            return {"source": accepted["source"], "id": accepted["id"], "status": HeldStatus.ACCEPTED}
        return await self.held.find_one({"_id": event_identity, "partnership_id": partnership_id}, {"event": 0})

    async def records(self, partnership_id: str, ids: list[str] | None, event_type: str | None,
                      before: datetime | None, limit: int) -> list[dict]:
        """Accepted events of the partnership, newest first (by their time): those with these ids, or a page."""
        query: dict = {"partnership_id": partnership_id}
        if ids is not None:
            query["id"] = {"$in": ids}
        if event_type is not None:
            query["type"] = event_type
        if before is not None:
            query["time"] = {"$lt": before}
        rows = await self.accepted.find(query, {"_id": 0}).sort([("time", -1), ("id", 1)]).limit(limit).to_list()
        return [row | {"time": row["time"].replace(tzinfo=UTC), "data": row.get("data", {})} for row in rows]

    async def activity(self, partnership_id: str, activity_id: str) -> Activity | None:
        doc = await self.activities.find_one({"_id": _id((partnership_id, activity_id))})
        return Activity.model_validate(doc["state"]) if doc else None
