"""The delivery worker: sends pending deliveries from MongoDB, logs every attempt, retries with
backoff, dead-letters when retries are exhausted, pauses subscriptions that keep failing, and
puts each final result on the bus (NotificationDelivered / NotificationFailed).

A delivery is stored before the Kafka offset of its event is committed, and it leaves "pending"
only after an attempt's result is stored: a crash at any point means it is sent again (at least
once); the receiver drops the repeat by its `webhook-id` (the event id)."""

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from prometheus_client import Counter, Histogram

from services.notify.channels import Mailer, SendFailed, Webhooks
from services.notify.domain import (
    DeliveryStatus,
    PausePolicy,
    RetryPolicy,
    Status,
    delivery_id,
    unsubscribe_token,
)
from services.notify.messages import organisations_in, render
from services.notify.store import NotifyStore
from shared.contracts.signals import NotificationDelivered, NotificationFailed
from shared.envelope import CloudEvent, new_event
from shared.subscriptions import Channel

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

QUEUED = Counter("backbone_notify_notifications_queued_total", "Deliveries stored for sending, by notification kind",
                 ["kind"])
ATTEMPTS = Counter("backbone_notify_delivery_attempts_total", "Delivery attempts, by channel and outcome",
                   ["channel", "outcome"])
FINISHED = Counter("backbone_notify_deliveries_finished_total", "Deliveries that reached a final state",
                   ["channel", "status"])
SECONDS = Histogram("backbone_notify_delivery_attempt_seconds", "Time of one delivery attempt", ["channel"])
PAUSED = Counter("backbone_notify_subscriptions_paused_total", "Subscriptions paused after repeated failures")

RESULT_IDS = uuid.UUID("1c5d4f0e-2a7b-4c38-9e61-0b8f3d2a9c17")  # namespace of result event ids
SEND_ERRORS = (SendFailed, LookupError, ValueError)  # a bad stored subscription counts as a failed attempt


def kind_of(event_type: str) -> str:
    """A bounded metric label: reminder, digest, follow_up, or event (any catalogue event)."""
    part = event_type.split(".")
    return part[3] if part[2] == "notify" else "event"


# Every series whose labels are known starts at 0, so the first failure is an increase() alerts see.
for _channel in Channel:
    SECONDS.labels(_channel.value)
    for _outcome in ("delivered", "failed"):
        ATTEMPTS.labels(_channel.value, _outcome)
    for _status in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD, DeliveryStatus.CANCELLED):
        FINISHED.labels(_channel.value, _status.value)
for _kind in ("event", "reminder", "digest", "follow_up"):  # every value kind_of gives
    QUEUED.labels(_kind)


class Deliverer:
    def __init__(self, store: NotifyStore, publish: Callable[[CloudEvent], Awaitable[None]], source: str,
                 webhooks: Webhooks, mailer: Mailer | None, clock: Clock, retry: RetryPolicy, pause: PausePolicy,
                 lease: timedelta, concurrency: int, poll_seconds: float, public_url: str, zone: ZoneInfo):
        self.store, self.publish, self.source = store, publish, source
        self.webhooks, self.mailer = webhooks, mailer
        self.clock, self.retry, self.pause = clock, retry, pause
        self.lease, self.concurrency, self.poll_seconds = lease, concurrency, poll_seconds
        self.public_url, self.zone = public_url, zone
        self.unsubscribe_key = b""
        self.wake: Callable[[], None] = lambda: None  # the delivery worker's, set by workers.py

    async def enqueue(self, subscriptions: list[dict], notification_id: str, event_type: str, partnership_id: str,
                      body: bytes, **extra) -> None:
        now = self.clock()
        added = await self.store.enqueue([
            {"_id": delivery_id(s["_id"], notification_id), "subscription_id": s["_id"],
             "notification_id": notification_id, "type": event_type, "partnership_id": partnership_id,
             "channel": s["channel"], "body": body.decode(), "status": DeliveryStatus.PENDING.value, "attempts": 0,
             "next_attempt_at": now, "created_at": now, "updated_at": now, **extra}
            for s in subscriptions])
        if added:
            QUEUED.labels(kind_of(event_type)).inc(added)
            self.wake()

    def unsubscribe_url(self, subscription_id: str) -> str:
        return f"{self.public_url}/unsubscribe?token={unsubscribe_token(self.unsubscribe_key, subscription_id)}"

    async def step(self) -> float:
        """Deliver what is due (the delivery Worker's step); the answer is how long to wait: until
        the next retry is due, at most the poll interval, unless `wake` is called first."""
        await self._announce()
        batch = await self.store.claim_due(self.clock(), self.lease, self.concurrency * 4)
        if batch:
            gate = asyncio.Semaphore(self.concurrency)

            async def one(d: dict) -> None:
                async with gate:
                    await self._deliver(d)

            await asyncio.gather(*(one(d) for d in batch))
            return 0
        next_due = await self.store.next_due()
        if next_due is None:
            return self.poll_seconds
        return max(0.0, min(self.poll_seconds, (next_due - self.clock()).total_seconds()))

    async def _deliver(self, d: dict) -> None:
        subscription = await self.store.subscription(d["subscription_id"])
        if subscription is None or subscription["status"] == Status.UNSUBSCRIBED:
            await self._finish(d, DeliveryStatus.CANCELLED, d["attempts"], "subscription gone", announce=False)
            return
        if subscription["status"] == Status.PAUSED:
            await self.store.settle(d["_id"], {"status": DeliveryStatus.HELD.value, "updated_at": self.clock()})
            return
        attempt = d["attempts"] + 1
        started = time.perf_counter()
        try:
            await self._send(subscription, d)
            reason = None
        except SEND_ERRORS as exc:
            reason = exc.reason if isinstance(exc, SendFailed) else f"unusable subscription: {type(exc).__name__}"
        seconds = time.perf_counter() - started
        now = self.clock()
        SECONDS.labels(d["channel"]).observe(seconds)
        ATTEMPTS.labels(d["channel"], "failed" if reason else "delivered").inc()
        logged = {
            "delivery_id": d["_id"], "subscription_id": d["subscription_id"], "notification_id": d["notification_id"],
            "number": attempt, "at": now, "outcome": "failed" if reason else "delivered", "reason": reason,
            "seconds": round(seconds, 4)}
        if reason is None:
            await self.store.count_success(d["subscription_id"])
            await self._finish(d, DeliveryStatus.DELIVERED, attempt, None, logged=logged)
            return
        log.warning("delivery attempt failed", extra={"delivery_id": d["_id"], "attempt": attempt, "reason": reason})
        if await self.store.count_failure(d["subscription_id"], reason, self.pause, now):
            PAUSED.inc()
            log.warning("subscription paused after repeated failures", extra={"subscription_id": d["subscription_id"]})
        if self.retry.exhausted(attempt):
            await self._finish(d, DeliveryStatus.DEAD, attempt, reason, logged=logged)
            return
        await self.store.record_attempt(logged, d["_id"], {
            "attempts": attempt, "last_error": reason, "updated_at": now,
            "next_attempt_at": now + self.retry.delay(attempt, random.random())})

    async def _send(self, subscription: dict, d: dict) -> None:
        body = d["body"].encode()
        if subscription["channel"] == Channel.WEBHOOK:
            await self.webhooks.send(subscription["webhook_url"], subscription["webhook_secret"],
                                     d["notification_id"], body)
            return
        if self.mailer is None:
            raise SendFailed("e-mail is not configured (NOTIFY_SMTP_HOST)")
        event = orjson.loads(body)
        url = self.unsubscribe_url(subscription["_id"])
        mail = render(event, await self.store.partnership_name(d["partnership_id"]),
                      await self.store.organisation_names(organisations_in(event["data"])), url, self.zone)
        await self.mailer.send(subscription["email"], mail, d["notification_id"], url)

    async def _finish(self, d: dict, status: DeliveryStatus, attempts: int, reason: str | None,
                      announce: bool = True, logged: dict | None = None) -> None:
        """Final state, with the attempt that led to it (`logged`) if any; `announced: False` puts
        the result in the outbox that the loop's next round empties (_announce), so a broker
        outage delays the result event but never loses it."""
        fields = {"status": status.value, "attempts": attempts, "last_error": reason, "updated_at": self.clock(),
                  "finished_at": self.clock(), "next_attempt_at": None}
        if announce:
            fields["announced"] = False
        if logged is None:
            await self.store.settle(d["_id"], fields)
        else:
            await self.store.record_attempt(logged, d["_id"], fields)
        FINISHED.labels(d["channel"], status.value).inc()

    async def _announce(self) -> None:
        for d in await self.store.unannounced():
            common = dict(partnership_id=d["partnership_id"], subscription_id=d["subscription_id"],
                          event_id=d["notification_id"], channel=d["channel"], attempts=d["attempts"])
            data = (NotificationDelivered(**common) if d["status"] == DeliveryStatus.DELIVERED
                    else NotificationFailed(**common, reason=d["last_error"] or "unknown"))
            # A fixed id per delivery and result: if this process dies before marking it, the
            # repeat after restart is recognisably the same event.
            await self.publish(
                new_event(data, source=self.source, id=str(uuid.uuid5(RESULT_IDS, f"{d['_id']}/{d['status']}")))
            )
            await self.store.mark_announced(d["_id"])
