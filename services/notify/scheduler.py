"""Time-driven notifications: reminders before activities and the weekly digests. Both are kept
in MongoDB, so a restart neither loses nor repeats them; each tick queues what has come due."""

import logging
import time
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import httpx
from prometheus_client import Gauge

from services.notify.delivery import Clock, Deliverer
from services.notify.domain import (
    DIGEST,
    REMINDER,
    audience,
    choose_reminders,
    digest_due,
    digest_key,
    kpi_movement,
    safe_id,
    week_label,
    week_start,
)
from services.notify.messages import digest_data, reminder_data, webhook_body
from services.notify.store import NotifyStore
from shared.contracts.notifications import WeeklyDigest
from shared.contracts.queries import KpiValuesV1
from shared.periods import program_year

log = logging.getLogger(__name__)

LAST_TICK = Gauge("backbone_notify_scheduler_last_tick_timestamp_seconds",
                  "When the scheduler last finished checking reminders and digests (Unix time)")
OPEN = Gauge("backbone_notify_open_deliveries", "Deliveries pending or held, at the last scheduler tick")


class KpiSource:
    """KPI values from the metrics service's HTTP API (the KpiValuesV1 query contract), for the digests'
    KPI movement."""

    def __init__(self, url: str, api_key: str, timeout_seconds: float):
        self.client = httpx.AsyncClient(base_url=url, timeout=timeout_seconds,
                                        headers={"Authorization": f"Bearer {api_key}"})

    async def values(self, partnership_id: str, period: str) -> dict[str, float]:
        response = await self.client.get("/kpis/values", params={"period": period, "scope": "partnership",
                                                                 "scope_id": partnership_id})
        response.raise_for_status()
        return KpiValuesV1.model_validate_json(response.content).numbers()  # ValidationError is a ValueError

    async def close(self) -> None:
        await self.client.aclose()


class Scheduler:
    def __init__(self, store: NotifyStore, deliverer: Deliverer, kpis: KpiSource | None, clock: Clock,
                 zone: ZoneInfo, digest_send_after: timedelta):
        self.store, self.deliverer, self.kpis, self.clock = store, deliverer, kpis, clock
        self.zone, self.digest_send_after = zone, digest_send_after

    async def tick(self) -> None:
        now = self.clock()
        await self.reminders(now)
        await self.digests(now)
        OPEN.set(await self.store.count_open())
        LAST_TICK.set(time.time())

    async def reminders(self, now: datetime) -> None:
        send, skip = choose_reminders(await self.store.due_reminders(now), now)
        for reminder in send:
            activity = cast(dict, await self.store.activity(reminder["activity_key"]))  # reminders: of saved ones
            pid = reminder["partnership_id"]
            body = webhook_body(reminder["_id"], now, activity["activity_id"],
                                reminder_data(activity, reminder["lead_seconds"]))
            await self.deliverer.enqueue(audience(await self.store.subscribers(pid), REMINDER, pid),
                                         reminder["_id"], REMINDER, pid, body,
                                         activity_key=reminder["activity_key"], starts_at=reminder["starts_at"])
            log.debug("reminder queued", extra={"reminder_id": reminder["_id"]})
        await self.store.finish_reminders([r["_id"] for r in send], "sent")
        await self.store.finish_reminders([r["_id"] for r in skip], "skipped")

    async def digests(self, now: datetime) -> None:
        send_at = digest_due(now, self.zone, self.digest_send_after)
        if send_at is None:
            return
        week = week_label(now, self.zone)
        done = await self.store.digested(week)
        made: dict[str, bytes] = {}  # one digest per partnership and tick, whatever the recipients
        for subscription in await self.store.digest_subscriptions():
            if subscription["created_at"] > send_at:
                continue  # subscribed after this week's digest went out: from next week on
            for pid in subscription["partnership_ids"]:
                key = digest_key(pid, subscription["recipient_hash"], week)
                if key in done or not await self.store.claim_digest(key, subscription["_id"], pid, week, now):
                    continue
                notification_id = safe_id(f"digest.{pid}.{week}")
                if pid not in made:
                    made[pid] = webhook_body(notification_id, now, pid, await self._digest(pid, week, now))
                await self.deliverer.enqueue([subscription], notification_id, DIGEST, pid, made[pid])
                await self.store.digest_queued(key)
        if made:
            log.info("digests queued", extra={"week": week, "partnerships": len(made)})

    async def _digest(self, pid: str, week: str, now: datetime) -> WeeklyDigest:
        start = week_start(now, self.zone)
        since = start - timedelta(days=7)
        return digest_data(pid, week, since, start, await self.store.journal_between(pid, since, start),
                           await self.store.upcoming(pid, now, now + timedelta(days=7)),
                           await self._kpis(pid, week, now))

    async def _kpis(self, pid: str, week: str, now: datetime) -> dict[str, Any]:
        """KPI movement since the last digest; when it cannot be had, the digest says why."""
        snapshot = await self.store.kpi_snapshot(pid, week)
        if snapshot is None:
            if self.kpis is None:
                return {"available": False,
                        "note": "KPI movement is not part of this digest: no metrics service is configured."}
            period = program_year(now.astimezone(self.zone).date())
            try:
                values = await self.kpis.values(pid, period)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                log.warning("metrics service unavailable for a digest",
                            extra={"partnership_id": pid, "error": type(exc).__name__})
                return {"available": False,
                        "note": "KPI movement is missing from this digest: the metrics service could not be reached."}
            await self.store.save_kpi_snapshot(pid, week, period, values)
            snapshot = {"period": period, "values": values}
        return {"available": True, "period": snapshot["period"],
                "movement": kpi_movement(snapshot["values"], await self.store.previous_kpis(pid, week))}
