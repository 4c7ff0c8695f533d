"""Event subscribers: the membership read model, and partner events arriving on backbone.inbound."""

from collections.abc import Awaitable, Callable

from faststream.kafka import KafkaBroker

from services.events.intake import Intake, Outcome
from services.events.store import EventsStore
from shared.catalog import EVENT_TYPES, INBOUND, MEMBERSHIP
from shared.consumer import BatchHandler, RuleViolation, subscribe
from shared.contracts import membership as mem
from shared.envelope import CloudEvent, EventError
from shared.settings import KafkaSettings


def membership_handlers(store: EventsStore) -> dict:
    def saving(save) -> Callable[[CloudEvent], Awaitable[None]]:
        async def handler(event: CloudEvent) -> None:
            await save(event.data)

        return handler

    return {
        mem.PartnershipCreated: saving(store.save_partnership), mem.PartnershipUpdated: saving(store.save_partnership),
        mem.OrganisationRegistered: saving(store.save_organisation),
        mem.OrganisationUpdated: saving(store.save_organisation),
        mem.MemberJoined: saving(store.member_joined), mem.MemberLeft: saving(store.member_left),
        mem.ActionTeamFormed: saving(store.save_action_team), mem.ActionTeamChanged: saving(store.save_action_team),
    }


def inbound_handlers(intake: Intake) -> dict:
    """Partner systems publish straight to backbone.inbound. Each event is decided exactly as over
    HTTP; an accepted one is republished to its catalogue topic under the same id before the
    offset is committed. Every catalogue type is handled here, so a type the service does not take
    in is dead-lettered by the rules rather than skipped as "ignored". Who may write to the topic
    is for Kafka's ACLs to say; the per-partnership scope of API keys applies to HTTP."""

    async def on_inbound(event: CloudEvent) -> None:
        [result] = await intake.submit([event], entry="kafka")
        if result.status is Outcome.REJECTED:
            raise RuleViolation(str(EventError(result.errors)))

    return {e.model: on_inbound for e in EVENT_TYPES}


def inbound_batches(intake: Intake) -> BatchHandler:
    """A fetched batch of partner events decided as one submission (one group, not one per event);
    the handlers above take over when a batch fails for a reason other than the infrastructure."""

    async def decide(events: list[CloudEvent]) -> list[str | None]:
        results = await intake.submit(events, entry="kafka")
        return [str(EventError(r.errors)) if r.status is Outcome.REJECTED else None for r in results]

    return decide


def subscribe_all(broker: KafkaBroker, settings: KafkaSettings, service: str, store: EventsStore, intake: Intake) -> None:
    subscribe(broker, settings, service, [MEMBERSHIP], membership_handlers(store))
    # Own consumer group: a slow partner batch never holds up the read model, and vice versa.
    subscribe(broker, settings, service, [INBOUND], inbound_handlers(intake), group_suffix="-inbound",
              batches=inbound_batches(intake))
