"""Event subscribers: the membership read model, the partner systems' keys (each gets its own
inbound topic), and partner events arriving on those topics."""

from collections import defaultdict
from collections.abc import Awaitable, Callable

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.events.holds import HeldEvents
from services.events.intake import EventResult, Outcome
from services.events.service import EventsService
from services.events.store import EventsStore
from shared.auth import KeyRing, Principal
from shared.catalog import INBOUND, MEMBERSHIP, inbound_of
from shared.consumer import (
    EventConsumer,
    RuleViolation,
    count_consumed_from,
    group_subscriber,
    subscribe,
)
from shared.contracts import membership as mem
from shared.contracts.base import AccessRole
from shared.envelope import CloudEvent, EventError
from shared.errors import DomainError, NotAuthenticated
from shared.kafka import ensure_topics
from shared.settings import KafkaSettings

# The dead letter's reason when the key of the topic may not send an event (revoked or never issued);
# any other refusal: not_allowed.
_REFUSED: dict[type[DomainError], str] = {NotAuthenticated: "unknown_key"}


def membership_handlers(store: EventsStore, held: HeldEvents) -> dict:
    def saving(save) -> Callable[[CloudEvent], Awaitable[None]]:
        async def handler(event: CloudEvent) -> None:
            await save(event.data)
            # Stored first: a held event decided again at once sees this change.
            await held.roster_changed(getattr(event.data, "partnership_id", None),
                                      getattr(event.data, "organisation_id", None))

        return handler

    return {
        mem.PartnershipCreated: saving(store.save_partnership), mem.PartnershipUpdated: saving(store.save_partnership),
        mem.OrganisationRegistered: saving(store.save_organisation),
        mem.OrganisationUpdated: saving(store.save_organisation),
        mem.MemberJoined: saving(store.member_joined), mem.MemberLeft: saving(store.member_left),
        mem.ActionTeamFormed: saving(store.save_action_team), mem.ActionTeamChanged: saving(store.save_action_team),
    }


def _violation(result: EventResult | DomainError) -> RuleViolation | None:
    if isinstance(result, DomainError):
        return RuleViolation(result.message, _REFUSED.get(type(result), "not_allowed"))
    if result.status is Outcome.REJECTED:
        return RuleViolation(str(EventError(result.errors)))
    return None  # accepted, duplicate, or held (stored: dead-lettered only if its hold ends unresolved)


def _origins(topic: str, records: list, events: list[CloudEvent]) -> list[dict]:
    """Each event's record, kept with it if it is held (its dead letter names it). The events are
    the records that parsed, in order: when all did, they pair up; else only the topic is known."""
    if len(records) == len(events):
        return [{"topic": r.topic, "partition": r.partition, "offset": r.offset} for r in records]
    return [{"topic": topic} for _ in events]


class PartnerInbound:
    """Partner systems publish to their own topic, `backbone.inbound.<key_id>`: producing to it is
    acting as that key (Kafka's ACLs let only the partner's user write it). Each record is decided
    as the key's principal exactly as over HTTP: a revoked or unknown key, a partnership it may not
    write or a source it may not send as are dead-lettered with that reason, never accepted.
    Accepted events are republished to their catalogue topic under their own id before the offset
    is committed. One consumer group follows every partner topic by pattern; a key's topic is
    created when the key's issuing is read, and the consumer subscribes again at once so it is
    read within seconds (other replicas find it at their next metadata refresh)."""

    def __init__(self, broker: KafkaBroker, settings: KafkaSettings, service: str, keys: KeyRing,
                 events: EventsService, max_batch_events: int = 500):
        self.settings = settings
        self.keys = keys
        self.events = events
        self.prefix = settings.topic(INBOUND.name.format(key_id=""))
        self.consumer = EventConsumer(service, broker, settings, handlers={})
        self.subscriber = group_subscriber(
            broker, settings, service, group_suffix="-inbound", pattern=settings.topic(INBOUND.name),
            title=f"{service}:{INBOUND.name}", batch=True, max_records=max_batch_events)
        self.subscriber(self.on_batch)
        keys.on_issue.append(self.on_key_issued)  # after the ring stored the key: it is known before its topic exists

    async def on_key_issued(self, key: mem.AccessKeyIssued) -> None:
        if key.role is not AccessRole.PARTNER_SYSTEM:
            return
        topic = self.settings.topic(inbound_of(key.key_id).name)
        await ensure_topics(self.settings, topics=[inbound_of(key.key_id)])
        count_consumed_from(self.settings, [topic])
        consumer = self.subscriber.consumer
        # Read the new topic now, not at the next metadata refresh. Not when it is read already (the
        # issuing read again after a rebalance): subscribing rebalances the group, and its records
        # not yet committed would be read, and any dead letter sent, a second time.
        if consumer is not None and topic not in consumer.subscription():
            consumer.subscribe(pattern=self.subscriber.pattern.broker_address)

    async def on_batch(self, message: KafkaMessage) -> None:
        by_topic = defaultdict(list)  # a partition's records stay in order
        for record in message.raw_message:
            by_topic[record.topic].append(record)
        for topic, records in by_topic.items():
            key_id = topic.removeprefix(self.prefix)
            caller = await self.keys.principal(key_id)
            await self.consumer.decide_records(records, self._deciding_as(caller, key_id, topic, records),
                                               self._handling_as(caller, key_id, topic))

    def _deciding_as(self, caller: Principal | None, key_id: str, topic: str, records: list):
        async def decide(events: list[CloudEvent]) -> list[RuleViolation | None]:
            return [_violation(r) for r in
                    await self.events.submit_inbound(caller, key_id, events, _origins(topic, records, events))]

        return decide

    def _handling_as(self, caller: Principal | None, key_id: str, topic: str):
        """One record at a time, when its batch failed for a reason other than the infrastructure."""

        async def handle(event: CloudEvent) -> None:
            [result] = await self.events.submit_inbound(caller, key_id, [event], [{"topic": topic}])
            if violation := _violation(result):
                raise violation

        return handle


def subscribe_all(broker: KafkaBroker, settings: KafkaSettings, service: str, store: EventsStore,
                  keys: KeyRing, events: EventsService, held: HeldEvents) -> PartnerInbound:
    subscribe(broker, settings, service, [MEMBERSHIP], membership_handlers(store, held))
    # Own consumer group: a slow partner batch never holds up the read model, and vice versa.
    return PartnerInbound(broker, settings, service, keys, events)
