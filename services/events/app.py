"""Events service: activities, attendance, talent outcomes and demand surveys from operators and partner systems."""

from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from shared.service import Runtime, create_service_app, serve
from shared.settings import ServiceSettings

NAME = "events"


class EventsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTS_")

    port: int = 8102


def create_app(settings: EventsSettings | None = None) -> FastAPI:
    runtime = Runtime(NAME, settings or EventsSettings())
    return create_service_app(
        runtime,
        title="Backbone events service",
        description="Activities, attendance, talent outcomes and demand surveys from operators and partner systems.",
    )


def main() -> None:
    settings = EventsSettings()
    serve(create_app(settings), settings, NAME)


if __name__ == "__main__":
    main()
