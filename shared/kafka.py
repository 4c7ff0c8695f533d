"""Kafka wiring: the broker factory, topic creation, durable publishing and dead letters."""

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)
from aiokafka.helpers import create_ssl_context
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from prometheus_client import REGISTRY, Counter

from shared.catalog import DEAD_LETTER, TOPICS, Topic, event_type_of, topic_label
from shared.envelope import CloudEvent
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

EVENTS_PUBLISHED = Counter(
    "backbone_events_published_total", "Events acknowledged by Kafka (acks=all)", ["topic", "type"]
)
DEAD_LETTERS = Counter(
    "backbone_dead_letters_total", "Messages sent to the dead-letter topic", ["topic", "reason"]
)
DEAD_LETTERS_LOST = Counter(
    "backbone_dead_letters_failed_total",
    "Messages refused for good whose dead letter could not be published either (logged, then skipped)", ["topic"]
)
# Every reason a consumer dead-letters for, so each (topic, reason) series exists at 0 from the
# start and the first dead letter is an increase (deploy/prometheus/alerts.yml).
DEAD_LETTER_REASONS = ("invalid_json", "invalid_event", "unknown_type", "oversized", "rule_violation",
                       "handler_error", "unknown_key", "not_allowed")
# A dead letter keeps this much of the refused record (its size in dl_size), so it always fits
# the producer's and the broker's message limits, whatever the record's size.
DEAD_LETTER_BODY_BYTES = 64 * 1024
_HEADERS_KEPT, _HEADER_BYTES = 32, 1024  # of the record's own headers, as dl_header.<name>


def client_options(settings: KafkaSettings) -> dict:
    """Where and how every plain aiokafka client of a service connects (its own SCRAM user on
    genuine Kafka)."""
    options: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers,
                               "security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context()
    if settings.sasl_mechanism:
        options |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.sasl_password.get_secret_value() if settings.sasl_password else None,
        }
    return options


def _security(settings: KafkaSettings) -> BaseSecurity | None:
    """The same, as FastStream spells it."""
    if not settings.sasl_mechanism:
        return None
    scram = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256}[settings.sasl_mechanism]
    return scram(
        settings.sasl_username or "",
        settings.sasl_password.get_secret_value() if settings.sasl_password else "",
        use_ssl=settings.security_protocol == "SASL_SSL",
    )


def make_broker(settings: KafkaSettings, service: str) -> KafkaBroker:
    return KafkaBroker(
        settings.bootstrap_servers,
        security=_security(settings),
        client_id=f"backbone-{service}",
        acks="all",  # accepted means on every in-sync replica
        enable_idempotence=settings.enable_idempotence,
        request_timeout_ms=settings.request_timeout_ms,
        logger=logging.getLogger(f"backbone.{service}.broker"),
        log_level=logging.DEBUG,  # FastStream's two lines per message; dead letters log their own warning
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


async def log_ends(settings: KafkaSettings, partitions: list[TopicPartition],
                   client_id: str = "backbone-log-ends") -> dict[TopicPartition, int]:
    """The offset after each partition's last record. Tansu answers end-offset requests with its
    last batch's base offset + 1 (on its S3 storage with older figures still, down to 1), so their
    answer is only a floor; a fetch from there carries the log's true end, the high watermark. The
    floor spares reading the partition; where it is the end, the fetch returns nothing after the
    fetch wait. A consumer of its own: one whose assignment changes and is stopped before it
    fetches again waits out its request timeout in stop(). Raises KafkaTimeoutError when no fetch
    answers within the request timeout."""
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(**client_options(settings), client_id=client_id, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        floors = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for tp, floor in floors.items():
            consumer.seek(tp, floor)
        deadline = asyncio.get_running_loop().time() + settings.request_timeout_ms / 1000
        while unknown := [tp for tp in partitions if consumer.highwater(tp) is None]:
            if asyncio.get_running_loop().time() > deadline:
                raise KafkaTimeoutError(f"no fetch answered for {', '.join(map(str, unknown))}")
            await consumer.getmany(*unknown, timeout_ms=100)
        return {tp: consumer.highwater(tp) or 0 for tp in partitions}
    finally:
        await consumer.stop()


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
    pending: list[asyncio.Future] = []
    published: Tally[tuple[str, str]] = Tally()
    for event in events:
        event_type = event_type_of(event.data)
        headers = [(name, value.encode()) for name, value in _headers(event).items()]
        pending.append(await producer.send(settings.topic(event_type.topic.name), event.to_json(),
                                           key=event_type.partition_key(event.data), headers=headers))
        published[(event_type.topic.name, event.type)] += 1
    await asyncio.gather(*pending)
    for (topic, type_name), n in published.items():
        EVENTS_PUBLISHED.labels(topic, type_name).inc(n)


def label_of(settings: KafkaSettings, topic: str) -> str:
    """A full topic name as a bounded metric label."""
    return topic_label(topic.removeprefix(settings.namespace))


def count_dead_letters_from(settings: KafkaSettings, topics: Iterable[str]) -> None:
    """Start the dead-letter series of `topics` (full names) at 0."""
    for topic in topics:
        name = label_of(settings, topic)
        DEAD_LETTERS_LOST.labels(name)
        for reason in DEAD_LETTER_REASONS:
            DEAD_LETTERS.labels(name, reason)


def _kept_headers(headers) -> dict[str, str]:
    """The record's own headers, bounded; as text, which is how FastStream publishes headers."""
    return {f"dl_header.{name[:200]}": (value or b"")[:_HEADER_BYTES].decode(errors="replace")
            for name, value in list(headers or ())[:_HEADERS_KEPT]}


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
    headers=(),
) -> None:
    """Keep a message nobody can accept, with why, where it came from and who refused it: its
    first DEAD_LETTER_BODY_BYTES and its own headers (bounded). A dead letter the broker refuses
    for its size is logged and counted, never retried: the partition must go on. Raises only while
    the broker is away (the caller waits and tries again)."""
    topic = label_of(settings, source_topic)
    coordinates = {"topic": source_topic, "partition": partition, "offset": offset}
    try:
        await broker.publish(
            body[:DEAD_LETTER_BODY_BYTES],
            settings.topic(DEAD_LETTER.name),
            key=key[:_HEADER_BYTES] if key else key,
            headers=_kept_headers(headers) | {
                "dl_reason": reason,
                "dl_detail": detail[:2000],
                "dl_topic": source_topic,
                "dl_partition": str(partition),
                "dl_offset": str(offset),
                "dl_service": service,
                "dl_size": str(len(body)),
                "dl_truncated": "true" if len(body) > DEAD_LETTER_BODY_BYTES else "false",
            },
        )
    except (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError) as exc:
        # Only what this record itself causes; an absent or misconfigured broker is waited out.
        DEAD_LETTERS_LOST.labels(topic).inc()
        log.error("dead letter refused by the broker; record skipped",
                  extra={"reason": reason, "error": type(exc).__name__, **coordinates})
        return
    DEAD_LETTERS.labels(topic, reason).inc()
    # The detail stays in the dead letter: it may quote the refused record.
    log.warning("message dead-lettered", extra={"reason": reason, **coordinates})
