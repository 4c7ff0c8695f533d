"""Kafka wiring: the broker factory, topic creation, durable publishing and dead letters."""

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from prometheus_client import REGISTRY, Counter

from shared.catalog import DEAD_LETTER, TOPICS, Topic, event_type_of
from shared.envelope import CloudEvent
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

EVENTS_PUBLISHED = Counter("backbone_events_published_total", "Events acknowledged by Kafka (acks=all)", ["topic", "type"])
DEAD_LETTERS = Counter(
    "backbone_dead_letters_total", "Messages sent to the dead-letter topic", ["topic", "reason"]
)


def client_options(settings: KafkaSettings) -> dict:
    """Where and how every plain aiokafka client of a service connects (its own SCRAM user on
    genuine Kafka)."""
    options = {"bootstrap_servers": settings.bootstrap_servers, "security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context()
    if settings.sasl_mechanism:
        options |= {"sasl_mechanism": settings.sasl_mechanism, "sasl_plain_username": settings.sasl_username,
                    "sasl_plain_password": settings.sasl_password.get_secret_value() if settings.sasl_password else None}
    return options


def _security(settings: KafkaSettings) -> BaseSecurity | None:
    """The same, as FastStream spells it."""
    if not settings.sasl_mechanism:
        return None
    scram = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256}[settings.sasl_mechanism]
    return scram(settings.sasl_username or "", settings.sasl_password.get_secret_value() if settings.sasl_password else "",
                 use_ssl=settings.security_protocol == "SASL_SSL")


def make_broker(settings: KafkaSettings, service: str) -> KafkaBroker:
    return KafkaBroker(
        settings.bootstrap_servers,
        security=_security(settings),
        client_id=f"backbone-{service}",
        acks="all",  # accepted means on every in-sync replica
        enable_idempotence=settings.enable_idempotence,
        request_timeout_ms=settings.request_timeout_ms,
        logger=logging.getLogger(f"backbone.{service}.broker"),
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service)],
    )


def make_producer(settings: KafkaSettings, service: str) -> AIOKafkaProducer:
    """A plain aiokafka producer for batches of events, beside the service's FastStream broker:
    FastStream's publish path costs about three times aiokafka's per record (bench/README.md,
    "Ingest"), and an entry point publishes hundreds of events per request. Create it in the
    running event loop, as every aiokafka client."""
    return AIOKafkaProducer(
        **client_options(settings),
        client_id=f"backbone-{service}",
        acks="all",
        enable_idempotence=settings.enable_idempotence,
        request_timeout_ms=settings.request_timeout_ms,
    )


async def ensure_topics(settings: KafkaSettings, attempts: int = 30, topics: Iterable[Topic] = TOPICS) -> None:
    """Create the topics that are missing (default: the catalogue's); waits for the broker to come up."""
    admin = AIOKafkaAdminClient(**client_options(settings), client_id="backbone-admin")
    for attempt in range(attempts):
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if attempt == attempts - 1:
                raise
            log.warning("kafka not reachable yet, retrying", extra={"attempt": attempt + 1})
            await asyncio.sleep(1)
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(settings.topic(t.name), t.partitions, settings.replication_factor)
            for t in topics
            if settings.topic(t.name) not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another service created them first
            log.info("topics created", extra={"topics": [t.name for t in missing]})
    finally:
        await admin.close()


def _headers(event: CloudEvent) -> dict[str, str]:
    # Binary-mode attributes as headers too, so routers and tools can filter without parsing.
    return {"ce_type": event.type, "ce_id": event.id, "content-type": "application/cloudevents+json"}


async def publish(broker: KafkaBroker, settings: KafkaSettings, event: CloudEvent) -> None:
    """Return only once Kafka has acknowledged the event with acks=all."""
    event_type = event_type_of(event.data)
    topic = settings.topic(event_type.topic.name)
    await broker.publish(
        event.to_json(), topic, key=event_type.partition_key(event.data), headers=_headers(event)
    )
    EVENTS_PUBLISHED.labels(event_type.topic.name, event.type).inc()


async def publish_many(producer: AIOKafkaProducer, settings: KafkaSettings, events: list[CloudEvent]) -> None:
    """Send a batch without waiting between records, then wait for every acknowledgement."""
    pending, published = [], Tally()
    for event in events:
        event_type = event_type_of(event.data)
        headers = [(name, value.encode()) for name, value in _headers(event).items()]
        pending.append(await producer.send(settings.topic(event_type.topic.name), event.to_json(),
                                           key=event_type.partition_key(event.data), headers=headers))
        published[(event_type.topic.name, event.type)] += 1
    await asyncio.gather(*pending)
    for (topic, type_name), n in published.items():
        EVENTS_PUBLISHED.labels(topic, type_name).inc(n)


async def dead_letter(
    broker: KafkaBroker,
    settings: KafkaSettings,
    *,
    body: bytes,
    key: bytes | None,
    source_topic: str,
    partition: int,
    offset: int,
    service: str,
    reason: str,
    detail: str,
) -> None:
    """Keep a message nobody can accept, with why, where it came from and who refused it."""
    await broker.publish(
        body,
        settings.topic(DEAD_LETTER.name),
        key=key,
        headers={
            "dl_reason": reason,
            "dl_detail": detail[:2000],
            "dl_topic": source_topic,
            "dl_partition": str(partition),
            "dl_offset": str(offset),
            "dl_service": service,
        },
    )
    DEAD_LETTERS.labels(source_topic.removeprefix(settings.namespace), reason).inc()
    log.warning(
        "message dead-lettered",
        extra={"reason": reason, "detail": detail[:500], "topic": source_topic, "partition": partition, "offset": offset},
    )
