"""Event subscribers: every partnership event is journalled (for digests), kept in the little
read model notify needs (names, activities and their reminders), and queued as a delivery for
each matching subscription. All of it is stored before the handler returns, so before the Kafka
offset is committed: a crash replays the event, and the stored effects are idempotent."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import cast

from faststream.kafka import KafkaBroker

from services.notify.delivery import Deliverer
from services.notify.domain import FOLLOW_UP, audience, plan_reminders, safe_id
from services.notify.messages import follow_up_data, webhook_body
from services.notify.store import NotifyStore
from shared.catalog import ACTIVITIES, DEMAND, EVENT_TYPES, MEMBERSHIP, OUTCOMES, SIGNALS
from shared.consumer import subscribe
from shared.contracts import activities as act
from shared.contracts import membership as mem
from shared.contracts.base import ActivityKind, PartnershipEvent
from shared.contracts.signals import NotificationDelivered, NotificationFailed
from shared.envelope import CloudEvent
from shared.settings import KafkaSettings

TOPICS = (MEMBERSHIP, ACTIVITIES, OUTCOMES, DEMAND, SIGNALS)


def activity_key(partnership_id: str, activity_id: str) -> str:
    return f"{partnership_id}|{activity_id}"


class Notifier:
    def __init__(self, store: NotifyStore, deliverer: Deliverer, clock: Callable[[], datetime],
                 reminder_leads: list[timedelta]):
        self.store, self.deliverer, self.clock, self.reminder_leads = store, deliverer, clock, reminder_leads

    def handlers(self) -> dict:
        # Notify's own results come back on the signals topic; they are nobody's news.
        table = {
            e.model: self.on_event
            for e in EVENT_TYPES
            if issubclass(e.model, PartnershipEvent) and e.model not in (NotificationDelivered, NotificationFailed)
        }
        return table | {mem.OrganisationRegistered: self.on_organisation, mem.OrganisationUpdated: self.on_organisation}

    async def on_organisation(self, event: CloudEvent) -> None:
        data = cast(mem.OrganisationState, event.data)  # subscribed to its two subtypes only
        await self.store.save_name("organisations", data.organisation_id, data.name)

    async def on_event(self, event: CloudEvent) -> None:
        data = cast(PartnershipEvent, event.data)  # subscribed to partnership events only
        pid = data.partnership_id
        if isinstance(data, mem.PartnershipState):
            await self.store.save_name("partnerships", pid, data.name)
        if isinstance(data, (act.ActivityScheduled, act.ActivityRescheduled, act.ActivityCancelled,
                             act.ActivityCompleted)):
            await self._activity(data)
        await self.store.record(event.id, pid, event.type, event.time, data.model_dump(mode="json"))
        subscribers = await self.store.subscribers(pid)
        await self.deliverer.enqueue(audience(subscribers, event.type, pid), safe_id(event.id), event.type, pid,
                                     event.to_json())
        if isinstance(data, act.ActivityCompleted) and data.kind is ActivityKind.PARTNERSHIP_MEETING:
            await self._follow_up(event, subscribers)

    async def _activity(self, data) -> None:
        key, now = activity_key(data.partnership_id, data.activity_id), self.clock()
        if isinstance(data, act.ActivityScheduled):
            await self.store.save_activity(key, {
                "partnership_id": data.partnership_id, "activity_id": data.activity_id, "kind": data.kind.value,
                "title": data.title, "starts_at": data.starts_at, "ends_at": data.ends_at, "sites": data.sites,
                "host_ids": data.host_ids, "status": "scheduled"})
        elif isinstance(data, act.ActivityRescheduled):
            known = await self.store.activity(key)
            await self.store.save_activity(key, {
                "partnership_id": data.partnership_id, "activity_id": data.activity_id, "starts_at": data.starts_at,
                "ends_at": data.ends_at,
                # A reschedule of an activity notify never saw scheduled still deserves reminders.
                **({} if known else {"kind": "activity", "title": data.activity_id, "status": "scheduled"})})
            if known and known["status"] != "scheduled":
                return
        else:
            await self.store.save_activity(key, {"status": "cancelled" if isinstance(data, act.ActivityCancelled)
                                                 else "completed"})
            await self.store.cancel_reminders(key, now)
            return
        await self.store.plan_reminders(
            key, data.partnership_id, data.starts_at,
            plan_reminders(data.partnership_id, data.activity_id, data.starts_at, self.reminder_leads, now), now)

    async def _follow_up(self, event: CloudEvent, subscribers: list[dict]) -> None:
        """The meeting's minutes and follow-up items, to subscribers of the organisations that took part."""
        data = cast(act.ActivityCompleted, event.data)  # a partnership meeting's completion
        activity = await self.store.activity(activity_key(data.partnership_id, data.activity_id))
        notification_id = safe_id(f"follow-up.{event.id}")
        body = webhook_body(notification_id, event.time, data.activity_id,
                            follow_up_data(data, activity.get("title") if activity else None))
        await self.deliverer.enqueue(
            audience(subscribers, FOLLOW_UP, data.partnership_id, data.participant_ids),
            notification_id, FOLLOW_UP, data.partnership_id, body)


def subscribe_all(broker: KafkaBroker, settings: KafkaSettings, service: str, notifier: Notifier) -> None:
    subscribe(broker, settings, service, TOPICS, notifier.handlers())
