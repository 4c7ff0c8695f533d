"""Leases in MongoDB: one holder at a time for a named piece of work, across every replica.

A lease is one document `{_id: name, holder, until}`. It is short (seconds) and, while held inside
`KeptLeases.hold`, renewed by a heartbeat task, so a live holder keeps it as long as it needs while a
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
DEFAULT_IDLE = timedelta(seconds=0.1)


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

    async def wait_for(self, name: str, holder: str) -> int:
        """Take the lease once it is free: its count of takes (`take`)."""
        pause = 0.005
        while (taken := await self.take(name, holder)) is None:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
        return taken

    async def renew(self, names: list[str], holder: str) -> None:
        if names:
            await self.collection.update_many({"_id": {"$in": names}, "holder": holder},
                                              {"$set": {"until": datetime.now(UTC) + self.lease}})


class KeptLeases:
    """One holder's leases, held for a block of work at a time (`hold`) and kept a moment after it.

    Work comes in bursts (a sender's batches, a partner system's inbound records), and the next
    block of a burst needs the same leases: taking and releasing them around every block cost two
    round trips of a ~75 ms group of 500 events decided (bench/README.md). Kept leases are renewed
    by the heartbeat like held ones, and released once no block began within `idle` (whoever else
    waits for them waits that much longer, once a burst is over), when a block fails, before a block
    that needs a lease sorting before them (taken in one global order, so no two holders wait on
    each other), and by `release` (a graceful stop). A block's counts of takes (`Leases.take`) are
    the same for every block while kept: what one block writes under them, the next adds to.
    """

    def __init__(self, leases: Leases, holder: str, idle: timedelta = DEFAULT_IDLE):
        self.leases = leases
        self.holder = holder
        self.idle = idle
        self.kept: dict[str, int] = {}  # name -> its count of takes
        self._heartbeat: asyncio.Task | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._releasing: asyncio.Task | None = None  # released once idle, under way

    @asynccontextmanager
    async def hold(self, names: Iterable[str]) -> AsyncIterator[dict[str, int]]:
        """Wait for every one of these leases (unless kept), keep them renewed while the block
        runs and for `idle` after. Gives each one's count of takes."""
        self._stop_idle()
        if self._releasing:  # else its release could reach the database after the take below
            await asyncio.wait([self._releasing])
            self._releasing = None
        wanted = set(names)
        try:
            first_missing = min(wanted - self.kept.keys(), default=None)
            await self._release([name for name in self.kept
                                 if name not in wanted or (first_missing is not None and name > first_missing)])
            for name in sorted(wanted - self.kept.keys()):
                self.kept[name] = await self.leases.wait_for(name, self.holder)
            if self.kept and self._heartbeat is None:
                self._heartbeat = asyncio.create_task(self._renew(), name="lease-heartbeat")
            yield {name: self.kept[name] for name in wanted}
        except BaseException:
            await self.release()
            raise
        self._idle = asyncio.get_running_loop().call_later(self.idle.total_seconds(), self._release_idle)

    async def release(self) -> None:
        """Release every kept lease."""
        self._stop_idle()
        if self._heartbeat:
            self._heartbeat.cancel()
            with suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        await self._release(list(self.kept))

    def _stop_idle(self) -> None:
        if self._idle:
            self._idle.cancel()
            self._idle = None

    def _release_idle(self) -> None:
        self._idle = None
        self._releasing = asyncio.create_task(self.release(), name="lease-release")

    async def _release(self, names: list[str]) -> None:
        for name in names:
            del self.kept[name]
        try:
            await self.leases.release(names, self.holder)
        except PyMongoError as exc:  # they run out by themselves within one lease time
            log.warning("leases not released: %s", type(exc).__name__)

    async def _renew(self) -> None:
        interval = self.leases.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.leases.renew(list(self.kept), self.holder)
            except PyMongoError as exc:  # the next beat tries again; the lease outlasts two misses
                log.warning("lease renewal failed: %s", type(exc).__name__)
