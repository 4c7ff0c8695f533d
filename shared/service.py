"""The runtime every service shares: broker and database clients, the HTTP app with operations
endpoints, start-up and graceful shutdown. A service's app.py only wires its own parts in."""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.asyncapi import asyncapi_router, declare_publishers
from shared.auth import KeyRing, whoami_router
from shared.catalog import ACCESS, Topic
from shared.consumer import subscribe
from shared.envelope import CloudEvent
from shared.errors import install_error_handlers
from shared.kafka import ensure_topics, make_broker, make_producer, publish, publish_many
from shared.lag import ConsumerLag
from shared.logs import configure_logging
from shared.mongo import make_client
from shared.observability import instrument, observability_router, secure_headers
from shared.settings import ServiceSettings
from shared.shutdown import Shutdown
from shared.startup import watched
from shared.worker import Worker

log = logging.getLogger(__name__)

Hook = Callable[["Runtime"], Awaitable[None]]
LAG_SECONDS = 5.0  # how often every consumer group's lag is measured


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("consumer groups could not start", exc_info=task.exception())


class Runtime:
    """One service's connections. Handlers and API routes reach it through `app.state.runtime`."""

    def __init__(self, name: str, settings: ServiceSettings):
        self.name = name
        self.settings = settings
        self.broker: KafkaBroker = make_broker(settings.kafka, name)
        self.producer: AIOKafkaProducer | None = None  # for batches; made by start(), in the event loop
        self._joining: asyncio.Task | None = None
        self.mongo: AsyncMongoClient = make_client(settings.mongo)
        self.db: AsyncDatabase = self.mongo[settings.mongo.database_prefix + name]
        self.source = f"/backbone/{name}"  # CloudEvents `source` of what this service emits
        self.keys = KeyRing(self.db)
        # Its own consumer group, so the key ring never waits on the service's main consumers.
        subscribe(self.broker, settings.kafka, name, [ACCESS], self.keys.handlers(), group_suffix="-access")
        self.lag = ConsumerLag(settings.kafka, f"backbone-{name}-lag")  # every group the service runs follows
        self.lag.follow(settings.kafka.group(name) + "-access", [ACCESS])

    async def start(self) -> None:
        self.producer = make_producer(self.settings.kafka, self.name)
        await self.producer.start()
        try:
            await self.broker.connect()
        except BaseException:
            await self.producer.stop()
            raise
        # A subscriber's start waits until its group has assigned it partitions, which after a
        # restart can wait for a rebalance (a killed replica's session to run out) once per group.
        # They join in the background: the service serves and publishes meanwhile, and /readyz
        # shows each group's lag until it has caught up.
        self._joining = asyncio.create_task(self.broker.start(), name="consumer-groups-join")
        self._joining.add_done_callback(_log_failure)

    async def stop(self, shutdown: Shutdown) -> None:
        if self._joining and not self._joining.done():
            self._joining.cancel()
            await asyncio.gather(self._joining, return_exceptions=True)
        await shutdown.step("consumer groups", self.broker.stop())  # handlers in flight finish, then it leaves
        if self.producer is not None:  # never started when the start failed early
            # after the handlers, which may still publish; flushes what is pending
            await shutdown.step("producer", self.producer.stop())
        await shutdown.step("consumer lag", self.lag.close())

    async def publish(self, event: CloudEvent) -> None:
        await publish(self.broker, self.settings.kafka, event)

    async def publish_many(self, events: list[CloudEvent]) -> None:
        """Return only once Kafka has acknowledged every event with acks=all."""
        await publish_many(self.producer, self.settings.kafka, events)

    async def broker_ready(self) -> bool:
        """The broker answers and the consumer groups did not fail to start (a failed start stays
        not ready, and the error is logged)."""
        failed = self._joining is not None and self._joining.done() and not self._joining.cancelled() \
            and self._joining.exception() is not None
        return not failed and await self.broker.ping(timeout=2.0)

    async def database_ready(self) -> bool:
        await self.db.command("ping")
        return True


def create_service_app(
    runtime: Runtime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    publishes: Sequence[Topic] = (),
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    workers: Sequence[Worker] = (),
) -> FastAPI:
    """The service's HTTP app; its lifespan starts the broker (the subscribers join their groups
    in the background) and stops everything in reverse on SIGTERM, after in-flight work has finished. Background
    `workers` start once the broker's producer is up and stop first, each finishing its step;
    the consumer lag of every group the runtime follows is measured by one more."""
    workers = [*workers, Worker("consumer_lag", runtime.lag.step, interval=LAG_SECONDS)]

    async def start() -> None:
        await ensure_topics(runtime.settings.kafka)
        await runtime.keys.create_indexes()
        for hook in on_startup:
            await hook(runtime)
        await runtime.start()
        for worker in workers:
            worker.start()
        log.info("service started", extra={"port": runtime.settings.port})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await watched(start())
        try:
            yield
        finally:
            log.info("service stopping")
            shutdown = Shutdown(runtime.settings.shutdown_grace_seconds)
            for worker in reversed(workers):
                await worker.stop(shutdown.left())
            await runtime.stop(shutdown)
            for hook in on_shutdown:
                await shutdown.step(getattr(hook, "__name__", "hook"), hook(runtime))
            await shutdown.step("database client", runtime.mongo.close())
            log.info("service stopped")

    app = FastAPI(title=title, description=description, version="1.0", lifespan=lifespan,
                  max_body_size=runtime.settings.max_body_bytes)
    app.state.runtime = runtime
    install_error_handlers(app)
    instrument(app)
    secure_headers(app)
    app.include_router(
        observability_router({"kafka": runtime.broker_ready, "mongodb": runtime.database_ready},
                             details={"workers": lambda: {w.name: w.healthy() for w in workers},
                                      "consumer_lag": runtime.lag.behind})
    )
    app.include_router(whoami_router())
    declare_publishers(runtime.broker, runtime.settings.kafka, runtime.name, tuple(publishes))
    app.include_router(asyncapi_router(runtime.broker, runtime.name, description))
    for router in routers:
        app.include_router(router)
    return app


@dataclass(frozen=True)
class ServiceSpec:
    """What the CLI needs to know of a service: its name, settings class, app factory, default port."""

    name: str
    settings: type[ServiceSettings]
    create_app: Callable[..., FastAPI]

    @property
    def port(self) -> int:
        return self.settings.model_fields["port"].default

    @property
    def module(self) -> str:
        """The module `python -m` runs to serve it."""
        return self.create_app.__module__


class _Server(uvicorn.Server):
    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after its graceful shutdown, so the process would die
        # "killed by SIGTERM"; a completed graceful stop is a success and exits 0 instead.
        self._captured_signals.clear()


def serve(app: FastAPI, settings: ServiceSettings, name: str) -> None:
    """Run until SIGTERM/SIGINT; uvicorn then drains requests and runs the lifespan's shutdown."""
    configure_logging(name, settings.log_level)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        # uvicorn annotates int but hands it to asyncio.wait_for, where fractions of a second work
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,  # type: ignore[arg-type]
    )
    # What start-up made lives as long as the process: keep the collector from rescanning it
    # on every full collection (the rollup allocates a lot per batch).
    gc.collect()
    gc.freeze()
    asyncio.run(_Server(config).serve())
