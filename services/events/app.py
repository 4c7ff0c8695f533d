"""Events service: activities, attendance, talent outcomes and demand surveys from operators and partner systems."""

from datetime import timedelta

from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from services.events.api import routes
from services.events.handlers import subscribe_all
from services.events.intake import Intake
from services.events.service import EventsService
from services.events.store import EventsStore
from shared.catalog import ACTIVITIES, DEMAND, OUTCOMES
from shared.service import Runtime, ServiceSpec, create_service_app, serve
from shared.settings import ServiceSettings

NAME = "events"


class EventsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTS_")

    port: int = 8102
    # An ATS sends hundreds of outcomes per call; far more belongs in several calls.
    max_batch_events: int = 1000
    max_batch_bytes: int = 4 * 1024 * 1024
    # How long a replica may hold a partnership's turn to decide events: far above a group's
    # time (publish with acks=all, one transaction), short enough when a replica died holding it.
    decision_lease_seconds: float = 60.0


def create_app(settings: EventsSettings | None = None) -> FastAPI:
    settings = settings or EventsSettings()
    runtime = Runtime(NAME, settings)
    store = EventsStore(runtime.db)
    intake = Intake(runtime, store, max_group_events=settings.max_batch_events,
                    decision_lease=timedelta(seconds=settings.decision_lease_seconds))
    service = EventsService(intake, store)
    subscribe_all(runtime.broker, settings.kafka, NAME, store, runtime.keys, service)

    async def create_indexes(_: Runtime) -> None:
        await store.create_indexes()

    return create_service_app(
        runtime,
        title="Backbone events service",
        description="Activities, attendance, talent outcomes and demand surveys from operators and partner systems.",
        publishes=(ACTIVITIES, OUTCOMES, DEMAND),
        routers=[routes(service, intake, settings.max_batch_events, settings.max_batch_bytes)],
        on_startup=[create_indexes],
    )


SERVICE = ServiceSpec(NAME, EventsSettings, create_app)


def main() -> None:
    settings = EventsSettings()
    serve(create_app(settings), settings, NAME)


if __name__ == "__main__":
    main()
