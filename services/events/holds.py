"""Held events decided again: at their next attempt (backoff), or at once when something they may
wait for arrives (a roster change read from backbone.membership, an event of their partnership
accepted). Every replica runs this loop; the intake's per-partnership turn keeps two replicas from
deciding one held event twice, and a held event is stored, so a crash loses nothing."""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import Gauge

from services.events.intake import Intake
from services.events.store import EventsStore

log = logging.getLogger(__name__)

HELD = Gauge("backbone_events_held", "Events held until what they name arrives, not yet decided")


def backoff(base: timedelta, most: timedelta):
    """Attempts so far -> wait before the next: doubling from `base`, never above `most`."""
    return lambda attempts: min(base * 2 ** min(attempts, 20), most)


class HeldEvents:
    def __init__(self, store: EventsStore, intake: Intake, *, idle_seconds: float = 5.0, max_group_events: int = 500):
        self.store = store
        self.intake = intake
        self.idle_seconds = idle_seconds  # the longest sleep: other replicas' holds and wakes are seen by then
        self.max_group_events = max_group_events
        self.held = 0  # at the last pass
        self.wake: Callable[[], None] = lambda: None  # the held-events worker's, set by workers.py
        self._wakings: set[asyncio.Task] = set()  # referenced until done, as asyncio asks
        intake.on_accepted.append(self.accepted)

    async def roster_changed(self, partnership_id: str | None = None, organisation_id: str | None = None) -> None:
        """A membership event was stored: held events it may unblock are due now. Nothing held at
        the last pass: no query (a roster import is thousands of events); a hold newer than that
        is decided again by its backoff, a second later."""
        if self.held and await self.store.wake(partnership_ids={partnership_id} if partnership_id else set(),
                                 organisation_id=organisation_id):
            self.wake()

    def accepted(self, partnership_ids: set[str]) -> None:
        """Events of these partnerships were accepted: an activity or hire a held event names may be among them."""
        if self.held:  # most of the time nothing is held: no query then
            task = asyncio.get_running_loop().create_task(self._wake_partnerships(partnership_ids))
            self._wakings.add(task)
            task.add_done_callback(self._wakings.discard)

    async def _wake_partnerships(self, partnership_ids: set[str]) -> None:
        try:
            if await self.store.wake(partnership_ids=partnership_ids):
                self.wake()
        except Exception as exc:  # noqa: BLE001 - their backoff decides them anyway
            log.warning("held events not woken: %s", type(exc).__name__)

    async def step(self) -> float:
        """Decide the held events that are due (the held-events Worker's step); the answer is how
        long to wait: until the next is due, at most `idle_seconds`, unless woken first."""
        due = await self.store.due(datetime.now(UTC), self.max_group_events)
        if due:
            await self.intake.decide_held(due)
        self.held = await self.store.held_count()
        HELD.set(self.held)
        if len(due) == self.max_group_events:
            return 0  # more are due
        next_due = await self.store.next_due()
        if next_due is None:
            return self.idle_seconds
        return min(self.idle_seconds, max(0.0, (next_due - datetime.now(UTC)).total_seconds()))
