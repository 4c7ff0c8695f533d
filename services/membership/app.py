"""Membership service: the roster and common agenda: partnerships, organisations, members, action teams, targets
and access keys.

It consumes no domain events (only the key ring's access events, wired by the shared runtime), so
it has no handlers.py; what it publishes leaves through the transactional outbox (outbox.py)."""

from datetime import timedelta
from typing import Literal

from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from services.membership.api import router
from services.membership.outbox import membership_relay
from services.membership.service import MembershipService
from services.membership.store import MembershipStore
from services.membership.workers import relay_worker
from shared.catalog import ACCESS, MEMBERSHIP
from shared.service import Runtime, ServiceSpec, create_service_app, serve
from shared.settings import ServiceSettings

NAME = "membership"


class MembershipSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MEMBERSHIP_")

    port: int = 8101
    outbox_batch: int = 500
    outbox_poll_seconds: float = 1.0
    # Renewed before every batch, so only a dead relay's lease runs out, within this time.
    outbox_lease_seconds: float = 5.0
    # Tests only: SIGKILL this process at that point of the relay, to prove nothing is lost or doubled.
    fault_injection: Literal["before_publish", "after_publish"] | None = None


def create_app(settings: MembershipSettings | None = None) -> FastAPI:
    settings = settings or MembershipSettings()
    runtime = Runtime(NAME, settings)
    store = MembershipStore(runtime.db, settings.kafka, timedelta(seconds=settings.outbox_lease_seconds))
    relay = membership_relay(store, runtime.broker, settings.kafka, batch=settings.outbox_batch,
                             fault_point=settings.fault_injection)

    async def start(_: Runtime) -> None:
        await store.create_indexes()

    async def release_lease(_: Runtime) -> None:  # a restarted relay waits for nothing
        await relay.release()

    app = create_service_app(
        runtime,
        title="Backbone membership service",
        description="The roster and common agenda: partnerships, organisations, members, action teams, targets"
                    " and access keys.",
        publishes=(MEMBERSHIP, ACCESS),
        routers=[router],
        on_startup=[start],
        on_shutdown=[release_lease],
        workers=[relay_worker(relay, store, settings.outbox_poll_seconds)],
    )
    app.state.membership = MembershipService(store, runtime.source)  # what the routes call
    return app


SERVICE = ServiceSpec(NAME, MembershipSettings, create_app)


def main() -> None:
    settings = MembershipSettings()
    serve(create_app(settings), settings, NAME)


if __name__ == "__main__":
    main()
