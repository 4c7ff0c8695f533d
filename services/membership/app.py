"""Membership service: the roster and common agenda: partnerships, organisations, members, action teams, targets and access keys."""

from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from shared.service import Runtime, create_service_app, serve
from shared.settings import ServiceSettings

NAME = "membership"


class MembershipSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MEMBERSHIP_")

    port: int = 8101


def create_app(settings: MembershipSettings | None = None) -> FastAPI:
    runtime = Runtime(NAME, settings or MembershipSettings())
    return create_service_app(
        runtime,
        title="Backbone membership service",
        description="The roster and common agenda: partnerships, organisations, members, action teams, targets and access keys.",
    )


def main() -> None:
    settings = MembershipSettings()
    serve(create_app(settings), settings, NAME)


if __name__ == "__main__":
    main()
