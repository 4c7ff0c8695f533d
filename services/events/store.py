"""The events service's MongoDB: its read model of the membership roster, the lifecycle of
activities, the hires later outcomes refer to, and the ids of every accepted event.

Read-model updates are idempotent and independent of arrival order, because organisations are
keyed by organisation on Kafka while memberships are keyed by partnership: the two may arrive
in either order, and any message may be redelivered.
"""

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import date, timedelta

from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from services.events.domain import Activity, Facts, Hire, Key, References, identity
from shared.contracts.base import ActionTeamStatus
from shared.contracts.membership import ActionTeamState, MemberJoined, MemberLeft, OrganisationState, PartnershipState
from shared.envelope import CloudEvent
from shared.lease import DEFAULT_LEASE, Leases


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

    async def create_indexes(self) -> None:
        await self.memberships.create_index([("partnership_id", 1), ("organisation_id", 1)])

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
        docs = await self.accepted.find({"_id": {"$in": identities}}, {"_id": 1}).to_list()
        return {doc["_id"] for doc in docs}

    async def facts(self, refs: References) -> Facts:
        """Load everything the rules of one submission will look at, in one query per collection."""

        async def ids(collection, keys) -> list[dict]:
            return await collection.find({"_id": {"$in": list(keys)}}).to_list() if keys else []

        async def active_members() -> set[Key]:
            if not refs.members:
                return set()
            docs = await self.memberships.find({
                "partnership_id": {"$in": list({p for p, _ in refs.members})},
                "organisation_id": {"$in": list({o for _, o in refs.members})},
            }).to_list()
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
        return Facts(
            partnerships={d["_id"] for d in partnerships},
            organisations={d["_id"] for d in organisations},
            members=members,
            action_teams={(d["partnership_id"], d["action_team_id"]): ActionTeamStatus(d["status"])
                          for d in teams},
            activities={(a.partnership_id, a.activity_id): a
                        for a in (Activity.model_validate(d["state"]) for d in activities)},
            hires={(h.partnership_id, h.hire_id): h for h in (Hire.model_validate(d["hire"]) for d in hires)},
        )

    async def record(self, events: list[CloudEvent], facts: Facts) -> None:
        """Store accepted events' ids and their effects together: a transaction, so a crash never
        leaves an id recorded without its effect or the other way round."""
        if not events:
            return
        async with self.client.start_session() as session:
            async with await session.start_transaction():
                await self.accepted.insert_many(
                    [{"_id": identity(e.source, e.id), "source": e.source, "id": e.id, "type": e.type,
                      "partnership_id": e.data.partnership_id} for e in events],
                    session=session)
                if facts.changed_activities:
                    await self.activities.bulk_write(
                        [ReplaceOne({"_id": _id(key)},
                                    {"state": facts.activities[key].model_dump(mode="json")}, upsert=True)
                         for key in facts.changed_activities],
                        session=session)
                if facts.new_hires:
                    await self.hires.insert_many(
                        [{"_id": _id((h.partnership_id, h.hire_id)), "hire": h.model_dump(mode="json")}
                         for h in facts.new_hires],
                        session=session)

    async def activity(self, partnership_id: str, activity_id: str) -> Activity | None:
        doc = await self.activities.find_one({"_id": _id((partnership_id, activity_id))})
        return Activity.model_validate(doc["state"]) if doc else None
