"""Notify service: continuous communication: webhooks, e-mail, reminders, digests and milestones."""

from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from shared.service import Runtime, create_service_app, serve
from shared.settings import ServiceSettings

NAME = "notify"


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_")

    port: int = 8104


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    runtime = Runtime(NAME, settings or NotifySettings())
    return create_service_app(
        runtime,
        title="Backbone notify service",
        description="Continuous communication: webhooks, e-mail, reminders, digests and milestones.",
    )


def main() -> None:
    settings = NotifySettings()
    serve(create_app(settings), settings, NAME)


if __name__ == "__main__":
    main()
