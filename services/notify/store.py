"""Notify's MongoDB: subscriptions (the only place a recipient's address is kept), pending and
finished deliveries with every attempt, reminders, sent digests, and the little it needs to know
of the roster and the activities (names, start times, a journal of last weeks' events)."""

import base64
import secrets
from datetime import datetime, timedelta
from typing import Any, cast

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.notify.domain import DeliveryStatus, PausePolicy, Reminder, Status

OPEN = [DeliveryStatus.PENDING.value, DeliveryStatus.HELD.value]


class NotifyStore:
    def __init__(self, db: AsyncDatabase, journal_days: int, attempts_days: int):
        self.subscriptions = db["subscriptions"]
        self.deliveries = db["deliveries"]
        self.attempts = db["attempts"]
        self.reminders = db["reminders"]
        self.digests = db["digests"]
        self.kpi_snapshots = db["kpi_snapshots"]
        self.partnerships = db["partnerships"]
        self.organisations = db["organisations"]
        self.activities = db["activities"]
        self.journal = db["journal"]
        self.state = db["state"]
        self.db = db
        self.journal_days = journal_days
        self.attempts_days = attempts_days

    async def setup(self) -> None:
        await self.subscriptions.create_index([("partnership_ids", ASCENDING), ("status", ASCENDING)])
        await self.deliveries.create_index([("status", ASCENDING), ("next_attempt_at", ASCENDING)])
        await self.deliveries.create_index([("subscription_id", ASCENDING), ("created_at", DESCENDING)])
        await self.deliveries.create_index("notification_id")
        await self.deliveries.create_index("activity_key")
        await self.deliveries.create_index("announced", sparse=True)
        await self.attempts.create_index([("delivery_id", ASCENDING), ("number", ASCENDING)])
        await self.attempts.create_index("at", expireAfterSeconds=self.attempts_days * 86400)
        await self.reminders.create_index([("status", ASCENDING), ("due_at", ASCENDING)])
        await self.reminders.create_index("activity_key")
        await self.digests.create_index("week")
        await self.activities.create_index([("partnership_id", ASCENDING), ("starts_at", ASCENDING)])
        await self.journal.create_index([("partnership_id", ASCENDING), ("time", ASCENDING)])
        await self.journal.create_index("time", expireAfterSeconds=self.journal_days * 86400)

    async def unsubscribe_key(self) -> bytes:
        """A random key for unsubscribe links, made once and kept, so links survive restarts."""
        generated = base64.b64encode(secrets.token_bytes(32)).decode()
        doc = await self.state.find_one_and_update(
            {"_id": "unsubscribe_key"}, {"$setOnInsert": {"value": generated}}, upsert=True,
            return_document=ReturnDocument.AFTER)
        return base64.b64decode(cast(dict, doc)["value"])  # upserted and returned AFTER: never None

    # --- subscriptions --------------------------------------------------------------------------

    async def add_subscription(self, doc: dict[str, Any]) -> None:
        await self.subscriptions.insert_one(doc)

    async def subscription(self, subscription_id: str) -> dict | None:
        return await self.subscriptions.find_one({"_id": subscription_id})

    async def subscriptions_within(self, partnership_ids: list[str] | None, including: str | None = None) -> list[dict]:
        """Subscriptions all of whose partnerships are among `partnership_ids` (None: any), and
        that include `including` when given."""
        query: dict[str, Any] = {} if including is None else {"partnership_ids": including}
        if partnership_ids is not None:
            query.setdefault("partnership_ids", {"$in": partnership_ids})
            query["$nor"] = [{"partnership_ids": {"$elemMatch": {"$nin": partnership_ids}}}]
        return await self.subscriptions.find(query).sort("created_at", ASCENDING).to_list()

    async def subscribers(self, partnership_id: str) -> list[dict]:
        return await self.subscriptions.find(
            {"partnership_ids": partnership_id, "status": {"$ne": Status.UNSUBSCRIBED.value}}).to_list()

    async def digest_subscriptions(self) -> list[dict]:
        return await self.subscriptions.find({"mode": "digest", "status": Status.ACTIVE.value}).to_list()

    async def _cancel_open(self, subscription_id: str, now: datetime, reason: str) -> None:
        await self.deliveries.update_many(
            {"subscription_id": subscription_id, "status": {"$in": OPEN}},
            {"$set": {"status": DeliveryStatus.CANCELLED.value, "last_error": reason, "updated_at": now,
                      "next_attempt_at": None}})

    async def delete_subscription(self, subscription_id: str, now: datetime) -> bool:
        deleted = (await self.subscriptions.delete_one({"_id": subscription_id})).deleted_count == 1
        await self._cancel_open(subscription_id, now, "subscription deleted")
        return deleted

    async def unsubscribe(self, subscription_id: str, now: datetime) -> bool:
        """Stop for good and erase the address: nothing is sent to it again."""
        result = await self.subscriptions.update_one(
            {"_id": subscription_id},
            {"$set": {"status": Status.UNSUBSCRIBED.value, "unsubscribed_at": now, "updated_at": now},
             "$unset": {"email": "", "webhook_url": "", "webhook_secret": ""}})
        await self._cancel_open(subscription_id, now, "unsubscribed")
        return result.matched_count == 1

    async def resume(self, subscription_id: str, now: datetime) -> dict | None:
        doc = await self.subscriptions.find_one_and_update(
            {"_id": subscription_id, "status": Status.PAUSED.value},
            {"$set": {"status": Status.ACTIVE.value, "consecutive_failures": 0, "updated_at": now},
             "$unset": {"paused_reason": "", "paused_at": "", "failing_since": ""}},
            return_document=ReturnDocument.AFTER)
        if doc is not None:
            await self.deliveries.update_many(
                {"subscription_id": subscription_id, "status": DeliveryStatus.HELD.value},
                {"$set": {"status": DeliveryStatus.PENDING.value, "next_attempt_at": now, "updated_at": now}})
        return doc

    async def count_failure(self, subscription_id: str, reason: str, pause: PausePolicy, now: datetime) -> bool:
        """One more failed attempt in a row; True when this one paused the subscription."""
        doc = await self.subscriptions.find_one_and_update(
            {"_id": subscription_id},
            {"$inc": {"consecutive_failures": 1}, "$min": {"failing_since": now}, "$set": {"last_failure": reason}},
            return_document=ReturnDocument.AFTER)
        if doc is None or doc["status"] != Status.ACTIVE:
            return False
        why = pause.reason(doc["consecutive_failures"], doc["failing_since"], now, reason)
        if why is None:
            return False
        paused = await self.subscriptions.update_one(
            {"_id": subscription_id, "status": Status.ACTIVE.value},
            {"$set": {"status": Status.PAUSED.value, "paused_at": now, "updated_at": now, "paused_reason": why}})
        return paused.modified_count == 1

    async def count_success(self, subscription_id: str) -> None:
        await self.subscriptions.update_one({"_id": subscription_id, "consecutive_failures": {"$ne": 0}},
                                            {"$set": {"consecutive_failures": 0}, "$unset": {"failing_since": ""}})

    # --- roster and activities ------------------------------------------------------------------

    async def save_name(self, collection: str, id: str, name: str) -> None:
        """A partnership's or organisation's name (public bodies and companies, not people)."""
        await self.db[collection].update_one({"_id": id}, {"$set": {"name": name}}, upsert=True)

    async def partnership_name(self, partnership_id: str) -> str:
        doc = await self.partnerships.find_one({"_id": partnership_id})
        return doc["name"] if doc else partnership_id

    async def organisation_names(self, ids: list[str]) -> dict[str, str]:
        return {d["_id"]: d["name"] async for d in self.organisations.find({"_id": {"$in": ids}})}

    async def record(self, event_id: str, partnership_id: str, event_type: str, time: datetime, data: dict) -> None:
        """The journal digests are made from; keyed by event id, so a redelivery adds nothing."""
        await self.journal.update_one(
            {"_id": event_id},
            {"$setOnInsert": {"partnership_id": partnership_id, "type": event_type, "time": time, "data": data}},
            upsert=True)

    async def journal_between(self, partnership_id: str, since: datetime, until: datetime) -> list[dict]:
        return await self.journal.find(
            {"partnership_id": partnership_id, "time": {"$gte": since, "$lt": until}}).to_list()

    async def save_activity(self, key: str, fields: dict[str, Any]) -> None:
        await self.activities.update_one({"_id": key}, {"$set": fields}, upsert=True)

    async def activity(self, key: str) -> dict | None:
        return await self.activities.find_one({"_id": key})

    async def upcoming(self, partnership_id: str, since: datetime, until: datetime) -> list[dict]:
        return await self.activities.find(
            {"partnership_id": partnership_id, "status": "scheduled", "starts_at": {"$gte": since, "$lt": until}}
        ).sort("starts_at", ASCENDING).to_list()

    # --- reminders ------------------------------------------------------------------------------

    async def plan_reminders(self, activity_key: str, partnership_id: str, starts_at: datetime,
                             reminders: list[Reminder], now: datetime) -> None:
        """Replace an activity's reminders with those for `starts_at`; reminders (and reminder
        deliveries not yet sent) for another start time are cancelled."""
        await self.cancel_reminders(activity_key, now, keep_starts_at=starts_at)
        if reminders:
            await self.reminders.bulk_write([
                UpdateOne({"_id": r.id}, {"$setOnInsert": {
                    "activity_key": activity_key, "partnership_id": partnership_id, "starts_at": starts_at,
                    "lead_seconds": int(r.lead.total_seconds()), "due_at": r.due_at, "status": "pending"}},
                    upsert=True)
                for r in reminders], ordered=False)

    async def cancel_reminders(self, activity_key: str, now: datetime, keep_starts_at: datetime | None = None) -> None:
        other_time = {} if keep_starts_at is None else {"starts_at": {"$ne": keep_starts_at}}
        await self.reminders.update_many({"activity_key": activity_key, "status": "pending", **other_time},
                                         {"$set": {"status": "cancelled"}})
        await self.deliveries.update_many(
            {"activity_key": activity_key, "status": {"$in": OPEN}, **other_time},
            {"$set": {"status": DeliveryStatus.CANCELLED.value, "last_error": "activity moved or cancelled",
                      "updated_at": now, "next_attempt_at": None}})

    async def due_reminders(self, now: datetime) -> list[dict]:
        return await self.reminders.find({"status": "pending", "due_at": {"$lte": now}}).to_list()

    async def finish_reminders(self, ids: list[str], status: str) -> None:
        if ids:
            await self.reminders.update_many({"_id": {"$in": ids}, "status": "pending"}, {"$set": {"status": status}})

    # --- deliveries -----------------------------------------------------------------------------

    async def enqueue(self, deliveries: list[dict]) -> int:
        """Store pending deliveries; one per (subscription, notification) however often asked."""
        if not deliveries:
            return 0
        result = await self.deliveries.bulk_write(
            [UpdateOne({"_id": d["_id"]}, {"$setOnInsert": d}, upsert=True) for d in deliveries], ordered=False)
        return result.upserted_count

    async def claim_due(self, now: datetime, lease: timedelta, limit: int) -> list[dict]:
        """Due deliveries, each leased to this worker: pushing its due time past the lease keeps
        other workers off it, and brings it back by itself if this process dies mid-send."""
        due = await self.deliveries.find(
            {"status": DeliveryStatus.PENDING.value, "next_attempt_at": {"$lte": now}}
        ).sort("next_attempt_at", ASCENDING).limit(limit).to_list()
        claimed = []
        for d in due:
            doc = await self.deliveries.find_one_and_update(
                {"_id": d["_id"], "status": DeliveryStatus.PENDING.value, "next_attempt_at": d["next_attempt_at"]},
                {"$set": {"next_attempt_at": now + lease}}, return_document=ReturnDocument.AFTER)
            if doc is not None:
                claimed.append(doc)
        return claimed

    async def redrive(self, delivery_id: str, now: datetime) -> dict | None:
        """A dead delivery gets a fresh round of attempts (its attempt log stays); None if not dead."""
        return await self.deliveries.find_one_and_update(
            {"_id": delivery_id, "status": DeliveryStatus.DEAD.value},
            {"$set": {"status": DeliveryStatus.PENDING.value, "attempts": 0, "next_attempt_at": now,
                      "updated_at": now, "redriven_at": now}},
            projection={"body": False}, return_document=ReturnDocument.AFTER)

    async def next_due(self) -> datetime | None:
        doc = await self.deliveries.find_one({"status": DeliveryStatus.PENDING.value},
                                             sort=[("next_attempt_at", ASCENDING)])
        return doc["next_attempt_at"] if doc else None

    async def settle(self, delivery_id: str, fields: dict[str, Any]) -> None:
        await self.deliveries.update_one({"_id": delivery_id}, {"$set": fields})

    async def record_attempt(self, attempt: dict[str, Any], delivery_id: str, fields: dict[str, Any]) -> None:
        """An attempt logged and the state its delivery is in after it, in one transaction: the
        delivery log never shows an attempt beside a state from before it."""
        async with self.db.client.start_session() as session:
            async with await session.start_transaction():
                await self.attempts.insert_one(attempt, session=session)
                await self.deliveries.update_one({"_id": delivery_id}, {"$set": fields}, session=session)

    async def unannounced(self, limit: int = 100) -> list[dict]:
        """Finished deliveries whose result is not yet on the bus (the outbox)."""
        return await self.deliveries.find({"announced": False}).limit(limit).to_list()

    async def mark_announced(self, delivery_id: str) -> None:
        await self.deliveries.update_one({"_id": delivery_id}, {"$unset": {"announced": ""}})

    async def deliveries_of(self, subscription_id: str | None, notification_id: str | None,
                            status: DeliveryStatus | None, partnership_ids: list[str] | None, limit: int) -> list[dict]:
        """The newest deliveries matching what is given, of the partnerships given (None: any),
        each with its attempt log."""
        query: dict[str, Any] = {
            k: v for k, v in (("subscription_id", subscription_id), ("notification_id", notification_id),
                              ("status", status and status.value)) if v is not None}
        if partnership_ids is not None:
            query["partnership_id"] = {"$in": partnership_ids}
        return await self._with_attempts(query, limit)

    async def delivery(self, delivery_id: str) -> dict | None:
        found = await self._with_attempts({"_id": delivery_id}, 1)
        return found[0] if found else None

    async def _with_attempts(self, query: dict[str, Any], limit: int) -> list[dict]:
        docs = await self.deliveries.find(query, {"body": False}).sort("created_at", DESCENDING).limit(limit).to_list()
        attempts: dict[str, list] = {}
        async for a in self.attempts.find({"delivery_id": {"$in": [d["_id"] for d in docs]}}, {"_id": False}
                                          ).sort([("at", ASCENDING), ("number", ASCENDING)]):
            attempts.setdefault(a["delivery_id"], []).append(a)
        for d in docs:
            d["attempt_log"] = attempts.get(d["_id"], [])
        return docs

    async def count_open(self) -> int:
        return await self.deliveries.count_documents({"status": {"$in": OPEN}})

    # --- digests --------------------------------------------------------------------------------

    async def digested(self, week: str) -> set[str]:
        return {d["_id"] async for d in self.digests.find({"week": week, "queued": True}, {"_id": True})}

    async def claim_digest(self, key: str, subscription_id: str, partnership_id: str, week: str,
                           now: datetime) -> bool:
        """True when this subscription is the one to carry the digest under `key` (the first to
        claim it; the same one again after a crash before its delivery was queued)."""
        doc = await self.digests.find_one_and_update(
            {"_id": key},
            {"$setOnInsert": {"subscription_id": subscription_id, "partnership_id": partnership_id, "week": week,
                              "created_at": now, "queued": False}},
            upsert=True, return_document=ReturnDocument.AFTER)
        doc = cast(dict, doc)  # upserted and returned AFTER: never None
        return doc["subscription_id"] == subscription_id and not doc["queued"]

    async def digest_queued(self, key: str) -> None:
        await self.digests.update_one({"_id": key}, {"$set": {"queued": True}})

    async def kpi_snapshot(self, partnership_id: str, week: str) -> dict | None:
        return await self.kpi_snapshots.find_one({"_id": f"{partnership_id}|{week}"})

    async def previous_kpis(self, partnership_id: str, week: str) -> dict[str, float] | None:
        doc = await self.kpi_snapshots.find_one({"partnership_id": partnership_id, "week": {"$lt": week}},
                                                sort=[("week", DESCENDING)])
        return doc["values"] if doc else None

    async def save_kpi_snapshot(self, partnership_id: str, week: str, period: str, values: dict[str, float]) -> None:
        await self.kpi_snapshots.update_one(
            {"_id": f"{partnership_id}|{week}"},
            {"$setOnInsert": {"partnership_id": partnership_id, "week": week, "period": period, "values": values}},
            upsert=True)
