"""Leases in MongoDB: one holder at a time for a named piece of work, across every replica.

A lease is one document `{_id: name, holder, until}`. It is short (seconds) and, while held inside
`Leases.hold`, renewed by a heartbeat task, so a live holder keeps it as long as it needs while a
SIGKILLed holder's leases run out within one lease time and another replica takes them over.
Released on a graceful stop, so a restart waits for nothing.

Why no fencing token: every user writes only effects that are safe when a stale holder finishes
late. The events service's decisions are idempotent by event id (`accepted_events` is the unique
index), and the outbox relay recovers its predecessor's interrupted batch from the offsets it
noted before publishing. A lease only keeps two replicas from doing the same work at once; the
heartbeat renews at a third of the lease time so a holder loses it only when it cannot reach the
database for a whole lease time, and then it could not write either.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

log = logging.getLogger(__name__)
RELEASED = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_LEASE = timedelta(seconds=5)


class Leases:
    def __init__(self, collection: AsyncCollection, lease: timedelta = DEFAULT_LEASE):
        self.collection = collection
        self.lease = lease

    async def take(self, name: str, holder: str) -> int | None:
        """Take or renew the lease if it is free, run out or already ours: how many times it was
        taken, this time included (a holder may mark what it writes with it); None if another holds it."""
        now = datetime.now(UTC)
        try:
            # Held by another: the filter misses and the upsert collides with the existing _id.
            lease = await self.collection.find_one_and_update(
                {"_id": name, "$or": [{"until": {"$lte": now}}, {"holder": holder}]},
                {"$set": {"holder": holder, "until": now + self.lease}, "$inc": {"taken": 1}},
                {"taken": 1}, upsert=True, return_document=ReturnDocument.AFTER)
            return lease["taken"] if lease else None  # never None: upserted, and returned after
        except DuplicateKeyError:
            return None

    async def taken(self, holder: str) -> dict[str, int]:
        """Each lease's last take whose holder is done with it: how many times it was taken, less
        the take another holder is in now (its writes may be under way)."""
        now, done = datetime.now(UTC), {}
        async for lease in self.collection.find({}):
            held_by_another = lease["holder"] != holder and lease["until"].replace(tzinfo=UTC) > now
            done[lease["_id"]] = lease.get("taken", 0) - (1 if held_by_another else 0)
        return done

    async def release(self, names: Iterable[str], holder: str) -> None:
        names = list(names)
        if names:
            await self.collection.update_many({"_id": {"$in": names}, "holder": holder},
                                              {"$set": {"until": RELEASED}})

    @asynccontextmanager
    async def hold(self, names: Iterable[str], holder: str) -> AsyncIterator[dict[str, int]]:
        """Wait for every one of these leases, keep them renewed while the block runs, release
        them after. Taken in one global order, so no two holders wait on each other. Gives each
        one's count of takes, this one included (`take`)."""
        taken: dict[str, int] = {}
        heartbeat: asyncio.Task | None = None
        try:
            for name in sorted(set(names)):
                taken[name] = await self._wait_for(name, holder)
            if taken:
                heartbeat = asyncio.create_task(self._renew(list(taken), holder), name="lease-heartbeat")
            yield taken
        finally:
            if heartbeat:
                heartbeat.cancel()
                with suppress(asyncio.CancelledError):
                    await heartbeat
            try:
                await self.release(taken, holder)
            except PyMongoError as exc:  # they run out by themselves within one lease time
                log.warning("leases not released: %s", type(exc).__name__)

    async def _wait_for(self, name: str, holder: str) -> int:
        pause = 0.005
        while (taken := await self.take(name, holder)) is None:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
        return taken

    async def _renew(self, names: list[str], holder: str) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                now = datetime.now(UTC)
                await self.collection.update_many({"_id": {"$in": names}, "holder": holder},
                                                  {"$set": {"until": now + self.lease}})
            except PyMongoError as exc:  # the next beat tries again; the lease outlasts two misses
                log.warning("lease renewal failed: %s", type(exc).__name__)
