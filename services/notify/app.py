"""Notify service: continuous communication: webhooks, e-mail, reminders, digests and milestones."""

from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from fastapi import FastAPI
from pydantic import SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.notify.api import routes
from services.notify.channels import Mailer, Webhooks, WebhookTargets
from services.notify.delivery import Deliverer
from services.notify.domain import PausePolicy, RetryPolicy
from services.notify.handlers import TOPICS, Notifier, subscribe_all
from services.notify.scheduler import KpiSource, Scheduler
from services.notify.service import Subscriptions
from services.notify.store import NotifyStore
from services.notify.workers import notify_workers
from shared.catalog import SIGNALS
from shared.service import Runtime, ServiceSpec, create_service_app, serve
from shared.settings import ServiceSettings

NAME = "notify"


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_")

    port: int = 8104
    # Where unsubscribe links point (the service as recipients reach it); default http://host:port.
    public_url: str | None = None
    timezone: str = "UTC"  # for times in e-mails and the digests' weeks
    reminder_lead_times: list[timedelta] = [timedelta(hours=48), timedelta(hours=2)]
    # The digest goes out this long after the start of each ISO week (Monday 00:00): Monday 08:00.
    digest_send_after: timedelta = timedelta(hours=8)
    tick_seconds: float = 15.0  # how often reminders and digests are checked
    # Retries: exponential from the base, capped, with jitter; 12 attempts span about 8 hours.
    retry_base_seconds: float = 30.0
    retry_max_delay_seconds: float = 7200.0
    max_attempts: int = 12
    pause_after_failures: int = 10
    pause_after_failing_for: timedelta = timedelta(hours=24)
    delivery_concurrency: int = 8
    delivery_poll_seconds: float = 5.0
    delivery_lease_seconds: float = 120.0  # a claimed delivery is retried after this if its worker died
    webhook_timeout_seconds: float = 10.0
    webhook_require_https: bool = True  # false lets tests' local receivers use http
    # Webhooks to loopback addresses, for tests' local receivers only; private, link-local and
    # every other non-public address stay refused whatever this says.
    webhook_allow_loopback: bool = False
    smtp_host: str | None = None  # e-mail is off without it
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = 30.0
    mail_from: str | None = None
    # The metrics service's API, for the digests' KPI movement; digests go out without it.
    metrics_url: str | None = None
    metrics_api_key: SecretStr | None = None
    metrics_timeout_seconds: float = 5.0
    journal_days: int = 60
    attempts_days: int = 90
    # Moves the service's clock (reminders, digests, retries): for tests and drills only.
    clock_shift: timedelta = timedelta(0)

    @model_validator(mode="after")
    def _complete(self):
        if self.smtp_host and not self.mail_from:
            raise ValueError("NOTIFY_MAIL_FROM is required with NOTIFY_SMTP_HOST")
        if self.metrics_url and not self.metrics_api_key:
            raise ValueError("NOTIFY_METRICS_API_KEY is required with NOTIFY_METRICS_URL")
        ZoneInfo(self.timezone)
        return self


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()
    runtime = Runtime(NAME, settings)
    zone = ZoneInfo(settings.timezone)

    def clock() -> datetime:
        return datetime.now(UTC) + settings.clock_shift

    store = NotifyStore(runtime.db, settings.journal_days, settings.attempts_days)
    targets = WebhookTargets(settings.webhook_require_https, settings.webhook_allow_loopback)
    webhooks = Webhooks(settings.webhook_timeout_seconds, targets)
    # mail_from is given whenever smtp_host is (checked by NotifySettings)
    mailer = Mailer(settings.smtp_host, settings.smtp_port, settings.smtp_security, settings.smtp_username,
                    settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                    settings.mail_from, settings.smtp_timeout_seconds
                    ) if settings.smtp_host and settings.mail_from else None
    deliverer = Deliverer(
        store, runtime.publish, runtime.source, webhooks, mailer, clock,
        RetryPolicy(settings.retry_base_seconds, settings.retry_max_delay_seconds, settings.max_attempts),
        PausePolicy(settings.pause_after_failures, settings.pause_after_failing_for),
        timedelta(seconds=settings.delivery_lease_seconds), settings.delivery_concurrency,
        settings.delivery_poll_seconds, (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/"),
        zone)
    # Both parts given or neither (checked by NotifySettings).
    kpis = KpiSource(settings.metrics_url, settings.metrics_api_key.get_secret_value(),
                     settings.metrics_timeout_seconds) if settings.metrics_url and settings.metrics_api_key else None
    scheduler = Scheduler(store, deliverer, kpis, clock, zone, settings.digest_send_after)
    subscribe_all(runtime.broker, settings.kafka, NAME,
                  Notifier(store, deliverer, clock, settings.reminder_lead_times))
    runtime.lag.follow(settings.kafka.group(NAME), TOPICS)

    async def start(_: Runtime) -> None:
        await store.setup()
        deliverer.unsubscribe_key = await store.unsubscribe_key()

    async def stop(_: Runtime) -> None:  # after the workers: in-flight sends finished or cut off (sent again later)
        await webhooks.close()
        if kpis:
            await kpis.close()

    return create_service_app(
        runtime,
        title="Backbone notify service",
        description="Continuous communication: webhooks, e-mail, reminders, digests and milestones.",
        publishes=(SIGNALS,),
        routers=[routes(Subscriptions(store, clock, lambda: deliverer.unsubscribe_key, mailer is not None,
                                      targets.refusal))],
        on_startup=[start],
        on_shutdown=[stop],
        workers=notify_workers(deliverer, scheduler, settings.tick_seconds),
    )


SERVICE = ServiceSpec(NAME, NotifySettings, create_app)


def main() -> None:
    settings = NotifySettings()
    serve(create_app(settings), settings, NAME)


if __name__ == "__main__":
    main()
