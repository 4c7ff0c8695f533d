"""Consuming catalogue events with deliberate retry and dead-letter behaviour.

FastStream's ack policies either commit a failed message (losing it) or redeliver it forever
(blocking the partition). Here each failure is sorted by what it means:
- the message itself is bad (not JSON, unknown type, invalid payload): dead letter, go on;
- the event is valid but breaks a domain rule (RuleViolation): dead letter, go on;
- the infrastructure is away (database, broker) or busy (a write conflict between
  transactions): wait and redeliver, as long as it takes;
- anything else (a bug): redeliver a few times with backoff, then dead letter, go on.
The offset is committed only after the handler's effect is stored or the message dead-lettered.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import Counter
from pymongo.errors import ConnectionFailure, PyMongoError

from shared.catalog import Topic
from shared.contracts.base import EventData
from shared.envelope import CloudEvent, EventError, parse_event
from shared.kafka import dead_letter
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

EVENTS_CONSUMED = Counter(
    "backbone_events_consumed_total",
    "Events taken from Kafka, by what became of them",
    ["topic", "outcome"],  # outcome: processed, ignored, dead_lettered, retried
)

Handler = Callable[[CloudEvent], Awaitable[None]]
TRANSIENT = (ConnectionFailure, KafkaError, OSError, asyncio.TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """The infrastructure is away or busy: the same message will go through later. A write
    conflict between two transactions is such a case, however often it happens in a row."""
    return isinstance(exc, TRANSIENT) or (isinstance(exc, PyMongoError)
                                          and exc.has_error_label("TransientTransactionError"))


class RuleViolation(Exception):
    """A well-formed event that breaks a domain rule, e.g. a tour hosted by a non-member."""


class EventConsumer:
    def __init__(
        self,
        service: str,
        broker: KafkaBroker,
        settings: KafkaSettings,
        handlers: dict[type[EventData], Handler],
        max_attempts: int = 5,
        backoff_seconds: float = 0.5,
    ):
        self.service = service
        self.broker = broker
        self.settings = settings
        self.handlers = handlers
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._attempts: dict[tuple[str, int, int], int] = {}

    async def handle(self, message: KafkaMessage) -> None:
        record = message.raw_message
        topic = record.topic.removeprefix(self.settings.namespace)
        try:
            event = parse_event(record.value)
        except EventError as exc:
            await self._dead_letter(record, exc.reason, str(exc))
            return
        handler = self.handlers.get(type(event.data))
        if handler is None:
            EVENTS_CONSUMED.labels(topic, "ignored").inc()
            return
        position = (record.topic, record.partition, record.offset)
        try:
            await handler(event)
        except RuleViolation as exc:
            await self._dead_letter(record, "rule_violation", str(exc))
            return
        except Exception as exc:
            if is_transient(exc):
                log.warning("infrastructure unavailable, will redeliver", exc_info=True, extra={"event_id": event.id})
                EVENTS_CONSUMED.labels(topic, "retried").inc()
                await asyncio.sleep(self.backoff_seconds * 4)
                raise
            attempt = self._attempts.get(position, 0) + 1
            if attempt >= self.max_attempts:
                self._attempts.pop(position, None)
                log.exception("handler keeps failing, dead-lettering", extra={"event_id": event.id})
                await self._dead_letter(record, "handler_error", f"{type(exc).__name__}: {exc}")
                return
            self._attempts[position] = attempt
            EVENTS_CONSUMED.labels(topic, "retried").inc()
            log.warning("handler failed, will redeliver", exc_info=True, extra={"event_id": event.id, "attempt": attempt})
            await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            raise
        self._attempts.pop(position, None)
        EVENTS_CONSUMED.labels(topic, "processed").inc()

    async def _dead_letter(self, record, reason: str, detail: str) -> None:
        await dead_letter(
            self.broker,
            self.settings,
            body=record.value or b"",
            key=record.key,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            service=self.service,
            reason=reason,
            detail=detail,
        )
        EVENTS_CONSUMED.labels(record.topic.removeprefix(self.settings.namespace), "dead_lettered").inc()


def subscribe(
    broker: KafkaBroker,
    settings: KafkaSettings,
    service: str,
    topics: Iterable[Topic],
    handlers: dict[type[EventData], Handler],
    group_suffix: str = "",
    **consumer_options,
) -> EventConsumer:
    """Attach a consumer group `backbone-<service><group_suffix>` reading `topics` from the beginning."""
    consumer = EventConsumer(service, broker, settings, handlers, **consumer_options)
    names = [settings.topic(t.name) for t in topics]

    @broker.subscriber(
        *names,
        group_id=settings.group(service) + group_suffix,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,  # commit after success; seek back on a raised error
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        title=f"{service}:{','.join(t.name for t in topics)}",
    )
    async def on_event(message: KafkaMessage) -> None:
        await consumer.handle(message)

    return consumer
