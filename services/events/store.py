"""The events service's MongoDB: its read model of the membership roster, the lifecycle of
activities, the record of every accepted event (with the hires later outcomes refer to), and the
events held until what they name arrives.

Read-model updates are idempotent and independent of arrival order, because organisations are
keyed by organisation on Kafka while memberships are keyed by partnership: the two may arrive
in either order, and any message may be redelivered.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Set
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

import bson
from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.events.domain import (
    VOID_TYPE,
    Activity,
    Facts,
    Hire,
    Key,
    References,
    identity,
    partnership_of,
    record_of,
)
from shared.contracts import outcomes as out
from shared.contracts.base import ActionTeamStatus
from shared.contracts.membership import ActionTeamState, MemberJoined, MemberLeft, OrganisationState, PartnershipState
from shared.envelope import CloudEvent
from shared.lease import DEFAULT_LEASE, KeptLeases, Leases
from shared.mongo import IN_SLICE, create_collections, find_among, mark_multikey

# Identities or ids asked of the sheets in one query: each sheet found holds many of them, so the
# local server's cost of found documents (shared.mongo.IN_SLICE) stays small. 500 identities none
# found: 14 ms in one query, 22 ms in slices of 50.
SHEET_SLICE = 1000
# The records page reads the newest days first, in windows reaching this many days back from its
# newest: a page costs what the windows it needs hold, not the partnership's whole history (the
# local server fetches and sorts every document a query matches before it returns the first).
PAGE_WINDOWS = (1, 7, 92, 731)
SHEET_BYTES = 4 * 1024 * 1024  # of records in one sheet (see `sheets_of`)
VOIDS_MENDED = "voided_by holds the void's id"  # an upgrade made once (`EventsStore._mend_voids`)


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


def sheets_of(records: list[dict], hires: Mapping[str, Hire] | None = None,
              turns: Mapping[str, int] | None = None) -> list[dict]:
    """Accepted records as stored: a partnership's day to a document with their identities and
    ids apart, to be indexed. One document per group and day rather than per record, because the
    local server pays per document written to a collection with secondary indexes (~170 µs each,
    bench/README.md), and a group's records mostly happened on one day. A sheet holds at most
    SHEET_BYTES of records: a group of large events (an attendance list may be 256 KiB) starts
    another, far from MongoDB's 16 MiB a document.

    `hires`: the hire each record of a hire records (by the record's identity), kept in its
    record's sheet and found by its key (`hire_key`, indexed): a hire costs no document of its
    own. Its key is not unique there: the rules, under the partnership's turn, record a hire
    once, and kept in the unique index of identities the keys made new hires 1.14x slower (bench/README.md).

    `turns`: the partnership's turn each sheet is written in (`EventsStore.kept_turns`)."""
    sheets: list[dict] = []
    open_sheets: dict[tuple[str, str], dict] = {}
    filled: dict[tuple[str, str], int] = {}  # bytes of records in each open sheet
    for record in records:
        key, size = (record["partnership_id"], day_of(record.get("time"))), len(bson.encode(record))
        sheet = open_sheets.get(key)
        if sheet is None or filled[key] + size > SHEET_BYTES:
            sheet = open_sheets[key] = {"partnership_id": key[0], "day": key[1], "identities": [], "ids": [],
                                        "records": []}
            if turns:
                sheet["turn"] = turns[key[0]]
            sheets.append(sheet)
            filled[key] = 0
        filled[key] += size
        sheet["identities"].append(record["_id"])
        sheet["ids"].append(record["id"])
        sheet["records"].append(record)
        if hires and (hire := hires.get(record["_id"])):
            sheet.setdefault("hires", []).append(_hire_doc(hire))
    return sheets


def hire_key(hire: Hire | Key) -> str:
    """A hire's key in the sheets: ids are unique only within a partnership."""
    return _id((hire.partnership_id, hire.hire_id) if isinstance(hire, Hire) else hire)


def _hire_doc(hire: Hire) -> dict:
    return {"key": hire_key(hire)} | hire.model_dump(mode="json")


def _hires_recorded(events: list[CloudEvent], facts: Facts) -> dict[str, Hire]:
    """The record (by identity) of each hire accepted now: the last event recording it (one
    recorded, voided and recorded again in a group is kept with its second record)."""
    kept = {hire_key(h): h for h in facts.new_hires}
    recorded: dict[str, str] = {}  # hire key -> identity of its record
    for event in events:
        if isinstance(event.data, out.HireRecorded) and (key := hire_key(
                (event.data.partnership_id, event.data.hire_id))) in kept:
            recorded[key] = identity(event.source, event.id)
    return {record: kept[key] for key, record in recorded.items()}


def day_of(time: datetime | None) -> str:
    """The UTC day a record's sheet is filed under ("" for records from before times were kept)."""
    return _utc(time).date().isoformat() if time else ""


def _utc(time: datetime) -> datetime:
    return time.replace(tzinfo=UTC) if time.tzinfo is None else time.astimezone(UTC)


class _MovedMeanwhile(Exception):
    """Another replica moved some of the records being moved."""


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
        self.legacy_hires = db["hires"]  # one document per hire, before hires were kept in sheets: moved at setup
        # The records of accepted events, a partnership's day of one decided group to a document
        # (a sheet, see `sheets_of`). Its unique index of identities (source and id) makes every
        # entry point accept an event once.
        self.accepted = db["accepted_records"]
        self.legacy_accepted = db["accepted_events"]  # one document per record, before sheets: moved at setup
        # One lease per partnership: which replica decides its events now, until when, and how
        # many turns were taken (each sheet names the turn it was written in, so a replica's filter
        # of what is recorded, services/events/recorded.py, finds what others wrote since it looked).
        self.turns = Leases(db["decision_turns"], decision_lease)
        # One document per event held until what it names arrives, and its final status.
        self.held = db["held_events"]
        # One document per change of stored data made once at setup (`_mend_voids`), when it was made.
        self.upgrades = db["upgrades"]

    async def setup(self) -> None:
        await create_collections(self.activities.database, [self.activities.name])
        await self.memberships.create_index([("partnership_id", 1), ("organisation_id", 1)])
        await self.accepted.create_index("identities", unique=True)
        await self.accepted.create_index([("partnership_id", 1), ("ids", 1)])  # lineage rows, corrections
        await self.accepted.create_index([("partnership_id", 1), ("day", -1)])  # the records page
        await self.accepted.create_index("hires.key")  # the hires later outcomes refer to
        await self.accepted.create_index([("partnership_id", 1), ("turn", 1)])  # what was recorded since
        await self.held.create_index([("status", 1), ("next_attempt_at", 1)])
        await self.held.create_index([("status", 1), ("partnership_id", 1)])
        await self.held.create_index([("status", 1), ("organisations", 1)])
        await self.held.create_index([("status", 1), ("source", 1)])  # which identities to look up (`pending`)
        await mark_multikey(self.accepted, ["identities", "ids", "hires.key"])
        await mark_multikey(self.held, ["organisations"])
        await self._move_legacy_records()
        await self._move_legacy_hires()
        await self._mend_voids()

    async def _move_legacy_records(self) -> None:
        """Records kept one document each (before sheets) moved into sheets. An old replica still
        running during a rollout may have recorded an event a new one had recorded in a sheet
        already (each checks only its own place): kept once."""
        async def sheets(docs: list[dict]) -> list[dict]:
            kept = await self.recorded([d["_id"] for d in docs])
            return sheets_of([d for d in docs if d["_id"] not in kept])

        await self._move_to_sheets(self.legacy_accepted, sheets)

    async def _move_legacy_hires(self) -> None:
        """Hires kept one document each (before they were kept in sheets) moved into sheets of
        hires alone (no records; their records stay where they are). Their identities are their
        keys, as unique as they were here: an empty list would be one key of the unique index, the
        same in every such sheet (and a hire's key, with no space, is never an event's identity).
        A hire a new replica recorded meanwhile is kept once; one an old replica still running
        during a rollout stores here after the move is moved by the next start of a new one."""
        async def sheets(docs: list[dict]) -> list[dict]:
            hires = [Hire.model_validate(d["hire"]) for d in docs]
            kept = {h["key"] for h in await self._hires([hire_key(h) for h in hires])}
            by_partnership: dict[str, list[Hire]] = {}
            for hire in hires:
                if hire_key(hire) not in kept:
                    by_partnership.setdefault(hire.partnership_id, []).append(hire)
            return [{"partnership_id": pid, "day": "", "identities": [hire_key(h) for h in own], "ids": [],
                     "records": [], "hires": [_hire_doc(h) for h in own]} for pid, own in by_partnership.items()]

        await self._move_to_sheets(self.legacy_hires, sheets)

    async def _mend_voids(self) -> None:
        """Records voided before a void's own id was kept (4c3ea42: `voided_by` held the voided
        record's own id, so the records page named the record, not its void) given their void's id,
        once: each void's record names the record it took back. Reads every sheet holding a void
        (no index serves that); the next start sees the upgrade done and reads nothing. Safe with
        two replicas at once: each mend sets what the other sets."""
        if await self.upgrades.find_one({"_id": VOIDS_MENDED}):
            return
        mends = []
        async for sheet in self.accepted.find({"records.type": VOID_TYPE}, {"records": 1}):
            for record in sheet["records"]:
                if record["type"] == VOID_TYPE:
                    data = record["data"]
                    voided = identity(data["voided_source"], data["voided_id"])
                    mends.append(UpdateOne({"identities": voided}, {"$set": {"records.$[r].voided_by": record["id"]}},
                                           array_filters=[{"r._id": voided, "r.voided_by": data["voided_id"]}]))
        for start in range(0, len(mends), 1000):
            await self.accepted.bulk_write(mends[start:start + 1000], ordered=False)
        await self.upgrades.update_one({"_id": VOIDS_MENDED}, {"$set": {"at": datetime.now(UTC), "voids": len(mends)}},
                                       upsert=True)

    async def _move_to_sheets(self, legacy: AsyncCollection,
                              sheets: Callable[[list[dict]], Awaitable[list[dict]]]) -> None:
        """Documents of a layout before sheets moved into the sheets `sheets` makes of them, a
        thousand at a time. Moved and deleted in one transaction, which fails if another replica
        moved any of them meanwhile: a document is never in both places, nor in neither."""
        while docs := await legacy.find({}).limit(1000).to_list():
            async def move(session, docs=docs) -> None:
                gone = 0
                for start in range(0, len(docs), IN_SLICE):
                    result = await legacy.delete_many(
                        {"_id": {"$in": [d["_id"] for d in docs[start:start + IN_SLICE]]}}, session=session)
                    gone += result.deleted_count
                if gone != len(docs):
                    raise _MovedMeanwhile
                if moving := await sheets(docs):
                    await self.accepted.insert_many(moving, session=session)

            async with self.client.start_session() as session:
                with suppress(_MovedMeanwhile):  # read again
                    await session.with_transaction(move)

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

    def kept_turns(self, holder: str, keep: timedelta) -> KeptLeases:
        """Whose `hold(partnership_ids)` decides these partnerships' events alone among every
        replica of the service: rules read state, publish, then store, and a second replica in
        between could pass a rule only one may. A short lease per partnership, renewed while held
        (shared/lease.py): a replica that dies holding a turn loses it within one lease time. Kept
        for `keep` after a group, for the next group of a burst. Gives each partnership's turn number."""
        return KeptLeases(self.turns, holder, keep)

    async def finished_turns(self, holder: str) -> dict[str, int]:
        """Each partnership's last turn whose records are stored (or never will be): its count of
        turns, less the one another replica is in now."""
        return await self.turns.taken(holder)

    async def recorded(self, identities: list[str]) -> set[str]:
        """Which of these events (by `domain.identity`) were accepted before."""
        wanted = set(identities)
        docs = await find_among(self.accepted, "identities", wanted, projection={"identities": 1, "_id": 0},
                                slice_size=SHEET_SLICE)
        return {i for doc in docs for i in doc["identities"] if i in wanted}

    async def recorded_keys(self, since: Mapping[str, int] | None = None) -> AsyncIterator[tuple[list[str], list[str]]]:
        """The identities and hire keys of every sheet (a sheet's at a time), or of the sheets
        written in each partnership's turns after `since`'s."""
        projection = {"identities": 1, "hires.key": 1, "_id": 0}
        queries = [{}] if since is None else [{"partnership_id": pid, "turn": {"$gt": turn}}
                                             for pid, turn in since.items()]
        for query in queries:
            async for sheet in self.accepted.find(query, projection, batch_size=100):
                yield sheet["identities"], [hire["key"] for hire in sheet.get("hires", ())]

    async def _records_among(self, field: str, values: Iterable[str], query: dict | None = None) -> list[dict]:
        """The accepted records whose `field` (`_id`: the identity, or `id`) is one of `values`,
        from the sheets holding them (found by the sheets' index of that field). Picked here, not by
        the server: a `$filter` projection costs the local server a comparison per record and value."""
        wanted = set(values)
        docs = await find_among(self.accepted, {"_id": "identities", "id": "ids"}[field], wanted, query, {"records": 1},
                                SHEET_SLICE)
        sheets = {doc["_id"]: doc for doc in docs}  # a sheet holding values of two slices is found twice
        return [record for doc in sheets.values() for record in doc["records"] if record[field] in wanted]

    async def _hires(self, keys: list[str]) -> list[dict]:
        """The hires (as `_hire_doc` keeps them) of these keys, from the sheets holding them."""
        wanted = set(keys)
        docs = await find_among(self.accepted, "hires.key", wanted, projection={"hires": 1, "_id": 0},
                                slice_size=SHEET_SLICE)
        return [hire for doc in docs for hire in doc["hires"] if hire["key"] in wanted]

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

        partnerships, organisations, members, teams, activities, found_hires = await asyncio.gather(
            ids(self.partnerships, refs.partnerships),
            ids(self.organisations, refs.organisations),
            active_members(),
            ids(self.action_teams, [_id(k) for k in refs.action_teams]),
            ids(self.activities, [_id(k) for k in refs.activities]),
            self._hires([hire_key(k) for k in refs.hires]),
        )
        records = await self._records_among("_id", refs.records)  # voids only: no query without one
        return Facts(
            partnerships={d["_id"] for d in partnerships},
            organisations={d["_id"] for d in organisations},
            members=members,
            action_teams={(d["partnership_id"], d["action_team_id"]): ActionTeamStatus(d["status"])
                          for d in teams},
            activities={(a.partnership_id, a.activity_id): a
                        for a in (Activity.model_validate(d["state"]) for d in activities)},
            hires={(h.partnership_id, h.hire_id): h for h in map(Hire.model_validate, found_hires)},
            records={d["_id"]: d for d in records},
        )

    async def record(self, events: list[CloudEvent], facts: Facts, holds: Holds | None = None,
                     published: asyncio.Future[None] | None = None, turns: Mapping[str, int] | None = None) -> None:
        """Store accepted events' ids and their effects, and what became of held events, together:
        a transaction, so a crash never leaves an id recorded without its effect, or a held event
        both accepted and still waiting.

        `published`: the events' publishing, under way. The transaction writes meanwhile and
        commits only once it is done (it fails if that failed): the events are recorded only once
        Kafka has them, and the database's work no longer waits for Kafka's.

        `turns`: the turn of each partnership the events were decided in (`turn`), on their sheets."""
        if not events and not holds:
            if published is not None:
                await published
            return
        async def write(session) -> None:
            if facts.removed_hires:  # before the new ones: a correction records a voided hire's id again
                keys = [hire_key(key) for key in facts.removed_hires]
                await self.accepted.update_many({"hires.key": {"$in": keys}},
                                                {"$pull": {"hires": {"key": {"$in": keys}}}}, session=session)
            if events:
                await self.accepted.insert_many(
                    sheets_of([facts.records.get(identity(e.source, e.id)) or record_of(e) for e in events],
                              _hires_recorded(events, facts), turns),
                    session=session)
            if facts.voided:
                await self.accepted.bulk_write(
                    [UpdateOne({"identities": record}, {"$set": {"records.$[voided].voided_by": void_id}},
                               array_filters=[{"voided._id": record, "voided.voided_by": {"$exists": False}}])
                     for record, void_id in facts.voided.items()], session=session)
            if holds:
                await self._store_holds(holds, session)
            if facts.changed_activities:
                await self.activities.bulk_write(
                    [ReplaceOne({"_id": _id(key)},
                                {"state": facts.activities[key].model_dump(mode="json")}, upsert=True)
                     for key in facts.changed_activities],
                    session=session)
            if published is not None:
                await published  # done already when a conflict runs the writes again

        # Retried whole on a write conflict (a wake, or a held event's hold stored by another
        # replica, wrote the same held event): what it writes was decided under the turn.
        async with self.client.start_session() as session:
            await session.with_transaction(write)

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

    async def pending(self, sources: Mapping[str, str]) -> dict[str, dict]:
        """The held events among these (`domain.identity` -> its source) still waiting for a
        decision. Most of the time their sources have few events held, or none: those are listed
        (by the index of status and source, at most one more than asked) and only those among these
        fetched, rather than every identity looked up (~15% of a group of new events' time)."""
        if not sources:
            return {}
        listed = await self.held.find({"status": HeldStatus.PENDING, "source": {"$in": sorted(set(sources.values()))}},
                                      {"_id": 1}).limit(len(sources) + 1).to_list()
        few = len(listed) <= len(sources)
        asked = [doc["_id"] for doc in listed if doc["_id"] in sources] if few else list(sources)
        # By _id alone, the status checked here (see find_among).
        docs = await find_among(self.held, "_id", asked) if asked else []
        return {doc["_id"]: doc for doc in docs if doc["status"] == HeldStatus.PENDING}

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
        for accepted in await self._records_among("_id", [event_identity], {"partnership_id": partnership_id}):
            return {"source": accepted["source"], "id": accepted["id"], "status": HeldStatus.ACCEPTED}
        return await self.held.find_one({"_id": event_identity, "partnership_id": partnership_id}, {"event": 0})

    async def records(self, partnership_id: str, ids: list[str] | None, event_type: str | None,
                      before: datetime | None, limit: int) -> list[dict]:
        """Accepted events of the partnership, newest first (by their time): those with these ids, or a page."""
        def shown(record: dict) -> bool:  # records from before times were kept have nothing to show
            return (record.get("time") is not None and (event_type is None or record["type"] == event_type)
                    and (before is None or _utc(record["time"]) < before))

        if ids is not None:
            rows = [r for r in await self._records_among("id", ids, {"partnership_id": partnership_id}) if shown(r)]
        else:
            rows = await self._newest(partnership_id, before, limit, shown)
        rows.sort(key=lambda r: r["id"])
        rows.sort(key=lambda r: _utc(r["time"]), reverse=True)
        return [{k: v for k, v in r.items() if k != "_id"} | {"time": _utc(r["time"]), "data": r.get("data", {})}
                for r in rows[:limit]]

    async def _newest(self, partnership_id: str, before: datetime | None, limit: int,
                      shown: Callable[[dict], bool]) -> list[dict]:
        """At least `limit` records `shown` of the partnership before `before` (all if fewer): all
        those of the newest days, read a window of days at a time (PAGE_WINDOWS). The type is left
        to `shown`: with records.type in the query, the local server plans on the index of ids and
        reads the partnership's whole history (bench/records.py)."""
        newest = _utc(before) if before is not None else datetime.now(UTC)
        days: dict = {"$lte": day_of(before)} if before is not None else {}
        rows: list[dict] = []
        for back in (*PAGE_WINDOWS, None):
            oldest = None if back is None else day_of(newest - timedelta(days=back))
            window = days | ({"$gte": oldest} if oldest is not None else {})
            query = {"partnership_id": partnership_id} | ({"day": window} if window else {})
            async for sheet in self.accepted.find(query, {"records": 1}):
                rows += [r for r in sheet["records"] if shown(r)]
            if len(rows) >= limit or oldest is None:
                return rows  # every later day is read: the rest is older than the rows found
            days = {"$lt": oldest}
        return rows

    async def activity(self, partnership_id: str, activity_id: str) -> Activity | None:
        doc = await self.activities.find_one({"_id": _id((partnership_id, activity_id))})
        return Activity.model_validate(doc["state"]) if doc else None
