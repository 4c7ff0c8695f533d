"""Events service: activities, attendance, talent outcomes and demand surveys from operators and partner systems."""

from datetime import timedelta

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.events.api import routes
from services.events.handlers import subscribe_all
from services.events.holds import HeldEvents, backoff
from services.events.intake import Intake
from services.events.service import EventsService
from services.events.store import EventsStore
from services.events.workers import held_worker, recorded_loader
from shared.catalog import ACTIVITIES, DEMAND, INBOUND, MEMBERSHIP, OUTCOMES
from shared.lease import DEFAULT_IDLE
from shared.service import Runtime, ServiceSpec, create_service_app, serve
from shared.settings import ServiceSettings

NAME = "events"


class EventsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTS_")

    port: int = 8102
    # An ATS sends hundreds of outcomes per call; far more belongs in several calls.
    max_batch_events: int = 1000
    max_batch_bytes: int = 4 * 1024 * 1024
    # How long a partnership's turn to decide events outlives its holder: renewed every third of
    # it while held (shared/lease.py), so only a dead replica's turn runs out, within this time
    # (the 5 s failover target, with a margin for the survivor's own round trips).
    decision_lease_seconds: float = 3.0
    # How long a replica keeps a partnership's turn after deciding a group, for the next group of
    # a burst (instead of taking and releasing it around every group: new hires ingested 1.03x as
    # fast, bench/README.md): what another replica waits for that partnership beyond the burst.
    decision_keep_seconds: float = Field(default=DEFAULT_IDLE.total_seconds(), ge=0, le=1)
    # How long an event may wait for what it names (a member whose joining has not arrived yet)
    # before it is refused (HTTP) or dead-lettered (Kafka); 0 refuses it at once. Held events
    # are decided again when the roster changes, and else after 1 s, 2 s, 4 s ... at most
    # `hold_retry_max_seconds` apart.
    hold_seconds: float = 15 * 60.0
    hold_retry_seconds: float = 1.0
    hold_retry_max_seconds: float = 60.0
    # Memory for the filter of recorded identities and hires (services/events/recorded.py): 32 MiB
    # rules out all but ~1 in 25,000 new events at 10 million records (shared/bloom.py).
    recorded_filter_mib: int = Field(default=32, ge=1, le=4096)


def create_app(settings: EventsSettings | None = None) -> FastAPI:
    settings = settings or EventsSettings()
    runtime = Runtime(NAME, settings)
    store = EventsStore(runtime.db, timedelta(seconds=settings.decision_lease_seconds))
    intake = Intake(runtime, store, max_group_events=settings.max_batch_events,
                    hold=timedelta(seconds=settings.hold_seconds),
                    retry=backoff(timedelta(seconds=settings.hold_retry_seconds),
                                  timedelta(seconds=settings.hold_retry_max_seconds)),
                    recorded_filter_mib=settings.recorded_filter_mib,
                    keep_turn=timedelta(seconds=settings.decision_keep_seconds))
    held = HeldEvents(store, intake)
    read_model = settings.kafka.group(NAME)  # the consumer group of the roster read model
    runtime.lag.follow(read_model, [MEMBERSHIP])
    runtime.lag.follow(read_model + "-inbound", [INBOUND])
    service = EventsService(intake, store)
    subscribe_all(runtime.broker, settings.kafka, NAME, store, runtime.keys, service, held)

    async def start(_: Runtime) -> None:
        await store.setup()

    async def release_turns(_: Runtime) -> None:  # kept after the last group: a restart waits for nothing
        await intake.turns.release()

    return create_service_app(
        runtime,
        title="Backbone events service",
        description="Activities, attendance, talent outcomes and demand surveys from operators and partner systems.",
        publishes=(ACTIVITIES, OUTCOMES, DEMAND),
        routers=[routes(service, intake, settings.max_batch_events, settings.max_batch_bytes,
                        retry_after_seconds=max(1, round(settings.hold_retry_seconds)),
                        membership_lag=lambda: runtime.lag.of(read_model))],
        on_startup=[start],
        on_shutdown=[release_turns],
        workers=[held_worker(held), recorded_loader(intake.recorded)],
    )


SERVICE = ServiceSpec(NAME, EventsSettings, create_app)


def main() -> None:
    settings = EventsSettings()
    serve(create_app(settings), settings, NAME)


if __name__ == "__main__":
    main()
