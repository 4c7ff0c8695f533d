"""Metrics service: shared measurement: rolls every domain event into KPIs stored in MongoDB."""

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI
from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.metrics.api import routes
from services.metrics.milestones import Milestones
from services.metrics.pages import pages
from services.metrics.queries import KpiService
from services.metrics.recording import EventsGateway
from services.metrics.rollup import SOURCES, MetricsConsumer
from services.metrics.roster import roster_gateways
from services.metrics.sessions import LoginThrottle, Sessions
from services.metrics.shares import ShareLinks, ShareStore, share_routes
from services.metrics.store import MetricsStore
from services.metrics.workers import metrics_workers
from shared.catalog import SIGNALS
from shared.kafka import dead_letter
from shared.service import Runtime, ServiceSpec, create_service_app, serve
from shared.settings import ServiceSettings

NAME = "metrics"


class MetricsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="METRICS_")

    port: int = 8103
    # Records per batch, stored in one MongoDB transaction: bigger batches, fewer writes per event
    # (catching up, 20,000 stored 100k events ~20% faster than 5,000: bench/README.md). A live
    # stream's batches are as small as what arrived since the last poll.
    max_batch_events: int = 20_000
    poll_timeout_ms: int = 200
    # Memory for the rollup's filter of applied event identities (services/metrics/dedupe.py):
    # fixed, whatever the history; 64 MiB keeps lookups rare up to about 30 million events.
    dedupe_filter_mib: int = Field(default=64, ge=1, le=4096)
    # Partnership-months of dated facts the read use cases keep between reads (services/metrics/
    # cache.py, KeptMonths): a program year and a month of 25 partnerships by default. At 400k
    # events a year, a year of 25 partnerships kept took ~340 MiB (bench/README.md, "Reads").
    kept_months: int = Field(default=325, ge=0)
    # How often KPIs of changed partnerships are checked for milestones and exported as gauges.
    milestone_interval_seconds: float = 2.0
    # Signs the KPI pages' session cookies (the sessions themselves are in the database); set it
    # when several replicas serve the pages.
    session_secret: SecretStr | None = None
    session_hours: float = 8.0
    # The events, membership and notify services' addresses, for the pages' recording and roster
    # forms (they call those APIs as the person signed in); unset, the forms say they are not set up.
    events_url: str | None = None
    membership_url: str | None = None
    notify_url: str | None = None
    # The time zone the pages show times in and forms take them in (the state's: America/Denver).
    time_zone: Annotated[ZoneInfo, BeforeValidator(lambda name: _zone(name))] = ZoneInfo("UTC")


def _zone(name: str | ZoneInfo) -> ZoneInfo:
    try:
        return name if isinstance(name, ZoneInfo) else ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"no time zone {name!r}: give an IANA name such as America/Denver") from None


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    settings = settings or MetricsSettings()
    runtime = Runtime(NAME, settings)
    store = MetricsStore(runtime.db)


    async def refuse(record: ConsumerRecord, reason: str, detail: str) -> None:
        await dead_letter(runtime.broker, settings.kafka, body=record.value or b"", key=record.key,
                          source_topic=record.topic, partition=record.partition, offset=record.offset,
                          service=NAME, reason=reason, detail=detail, headers=record.headers)

    kpi_service = KpiService(store, zone=settings.time_zone, kept_months=settings.kept_months)
    milestones = Milestones(store, kpi_service, runtime.publish, runtime.source)
    secret = settings.session_secret.get_secret_value().encode() if settings.session_secret else None
    sessions = Sessions(runtime.db, secret, settings.session_hours)
    share_store = ShareStore(runtime.db)
    links = ShareLinks(share_store)
    consumer = MetricsConsumer(store, settings.kafka, max_batch_events=settings.max_batch_events,
                               poll_timeout_ms=settings.poll_timeout_ms, dead_letter=refuse,
                               on_stored=milestones.stored, seen_filter_mib=settings.dedupe_filter_mib)
    runtime.lag.follow(settings.kafka.group(NAME), SOURCES)

    async def start(_: Runtime) -> None:
        await store.setup()
        await sessions.setup()
        await share_store.setup()
        await runtime.broker.connect()  # dead letters and milestones need the producer from the first batch on
        await consumer.start()

    async def stop(_: Runtime) -> None:  # after the workers: the rollup's batch is finished or cancelled
        await consumer.stop()

    return create_service_app(
        runtime,
        title="Backbone metrics service",
        description=("Shared measurement: rolls every domain event into KPIs stored in MongoDB. It reads "
                     "backbone.membership, .activities, .outcomes and .demand with its own batch consumer "
                     "(group backbone-metrics), so those reads are not listed as FastStream subscribers."),
        publishes=(SIGNALS,),
        routers=[routes(kpi_service), share_routes(links),
                 pages(kpi_service, runtime.keys, sessions, LoginThrottle(), links,
                       EventsGateway(settings.events_url),
                       roster_gateways(settings.membership_url, settings.notify_url), settings.time_zone)],
        on_startup=[start],
        on_shutdown=[stop],
        workers=metrics_workers(consumer, milestones, settings.milestone_interval_seconds),
    )


SERVICE = ServiceSpec(NAME, MetricsSettings, create_app)


def main() -> None:
    settings = MetricsSettings()
    serve(create_app(settings), settings, NAME)


if __name__ == "__main__":
    main()
