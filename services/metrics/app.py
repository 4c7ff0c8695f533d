"""Metrics service: shared measurement: rolls every domain event into KPIs stored in MongoDB."""

from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from shared.service import Runtime, create_service_app, serve
from shared.settings import ServiceSettings

NAME = "metrics"


class MetricsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="METRICS_")

    port: int = 8103


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    runtime = Runtime(NAME, settings or MetricsSettings())
    return create_service_app(
        runtime,
        title="Backbone metrics service",
        description="Shared measurement: rolls every domain event into KPIs stored in MongoDB.",
    )


def main() -> None:
    settings = MetricsSettings()
    serve(create_app(settings), settings, NAME)


if __name__ == "__main__":
    main()
