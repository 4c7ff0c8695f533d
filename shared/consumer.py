"""Consuming catalogue events with deliberate retry and dead-letter behaviour.

FastStream's ack policies either commit a failed message (losing it) or redeliver it forever
(blocking the partition). Here each failure is sorted by what it means:
- the message itself is bad (not JSON, unknown type, invalid payload): dead letter, go on;
- the event is valid but breaks a domain rule (RuleViolation): dead letter, go on;
- the infrastructure is away (database, broker) or busy (a write conflict between
  transactions): wait and redeliver, as long as it takes (counted in backbone_retries_total);
- anything else (a bug): redeliver a few times with backoff, then dead letter, go on.
The offset is committed only after the handler's effect is stored or the message dead-lettered.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import cast

from aiokafka import ConsumerRecord
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import Counter
from pymongo.errors import ConnectionFailure, PyMongoError

from shared.catalog import Topic
from shared.contracts.base import EventData
from shared.envelope import CloudEvent, EventError, parse_record
from shared.kafka import count_dead_letters_from, dead_letter, label_of
from shared.observability import RETRIES, count_retries_of
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

EVENTS_CONSUMED = Counter(
    "backbone_events_consumed_total",
    "Events taken from Kafka, by what became of them",
    ["topic", "outcome"],
)
OUTCOMES = ("processed", "ignored", "duplicate", "dead_lettered", "retried")


def count_consumed_from(settings: KafkaSettings, topics: Iterable[str]) -> None:
    """Start the consumed and dead-letter series of `topics` (full names) at 0."""
    topics = list(topics)
    count_dead_letters_from(settings, topics)
    count_retries_of("consumer", "infrastructure", "error")
    for topic in topics:
        for outcome in OUTCOMES:
            EVENTS_CONSUMED.labels(label_of(settings, topic), outcome)


Handler = Callable[[CloudEvent], Awaitable[None]]
# Decides a batch of events at once: per event, why it breaks a domain rule (or the violation
# itself, to dead-letter it under its own reason), or None.
BatchHandler = Callable[[list[CloudEvent]], Awaitable[list["str | RuleViolation | None"]]]
TRANSIENT = (ConnectionFailure, KafkaError, OSError, asyncio.TimeoutError)
# Kafka errors the record itself causes (publishing something too large): no wait makes them pass.
RECORD_FAULTS = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


def is_transient(exc: BaseException) -> bool:
    """The infrastructure is away or busy: the same message will go through later. A write
    conflict between two transactions is such a case, however often it happens in a row."""
    if isinstance(exc, RECORD_FAULTS):
        return False
    return isinstance(exc, TRANSIENT) or (isinstance(exc, PyMongoError)
                                          and exc.has_error_label("TransientTransactionError"))


class RuleViolation(Exception):
    """A well-formed event that breaks a domain rule, e.g. a tour hosted by a non-member, or that
    its sender may not send (`reason`: the dead letter's bounded category)."""

    def __init__(self, detail: str, reason: str = "rule_violation"):
        super().__init__(detail)
        self.reason = reason


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
        self._waits = 0  # transient failures in a row: the wait before redelivery grows with them

    async def handle(self, message: KafkaMessage) -> None:
        record = cast(ConsumerRecord, message.raw_message)  # a single record: these subscribers are not batch ones
        try:
            event = parse_record(record.value, record.headers)
        except EventError as exc:
            await self._dead_letter(record, exc.reason, str(exc))
            return
        await self._handle_event(record, event)

    async def handle_batch(self, message: KafkaMessage, decide: BatchHandler) -> None:
        await self.decide_records(message.raw_message, decide)

    async def decide_records(self, records, decide: BatchHandler, handler: Handler | None = None) -> None:
        """Fetched records through `decide` at once. A transient failure redelivers the batch (its
        accepted events come back as duplicates); any other failure goes through the records one
        at a time (through `handler`, default: the one of each event's type), so only the message
        at fault is retried and dead-lettered. Dead letters keep the order of the messages."""
        refusals: list[tuple[str, str] | None] = []  # per record: (reason, detail) if not parseable
        events: list[CloudEvent] = []
        for record in records:
            try:
                events.append(parse_record(record.value, record.headers))
                refusals.append(None)
            except EventError as exc:
                refusals.append((exc.reason, str(exc)))
        try:
            violations = await decide(events) if events else []
        except Exception as exc:
            if is_transient(exc):
                log.warning("infrastructure unavailable, will redeliver the batch", exc_info=True)
                for record, refusal in zip(records, refusals, strict=True):
                    if refusal is None:
                        self._count(record, "retried")
                await self._wait_out()
                raise
            log.warning("batch failed, going through it one by one", exc_info=True)
            parsed = iter(events)
            for record, refusal in zip(records, refusals, strict=True):
                if refusal is None:
                    await self._handle_event(record, next(parsed), handler)  # counts, retries or dead-letters it
                else:
                    await self._dead_letter(record, *refusal)
            return
        self._waits = 0
        decided = iter(violations)
        for record, refusal in zip(records, refusals, strict=True):
            if refusal is None:
                violation = next(decided)
                if violation is None:
                    self._count(record, "processed")
                    continue
                refusal = ((violation.reason, str(violation)) if isinstance(violation, RuleViolation)
                           else ("rule_violation", violation))
            await self._dead_letter(record, *refusal)

    async def _handle_event(self, record, event: CloudEvent, handler: Handler | None = None) -> None:
        handler = handler or self.handlers.get(type(event.data))
        if handler is None:
            self._count(record, "ignored")
            return
        position = (record.topic, record.partition, record.offset)
        try:
            await handler(event)
        except RuleViolation as exc:
            await self._dead_letter(record, exc.reason, str(exc))
            return
        except Exception as exc:
            if is_transient(exc):
                log.warning("infrastructure unavailable, will redeliver", exc_info=True, extra={"event_id": event.id})
                self._count(record, "retried")
                await self._wait_out()
                raise
            attempt = self._attempts.get(position, 0) + 1
            if attempt >= self.max_attempts:
                self._attempts.pop(position, None)
                log.exception("handler keeps failing, dead-lettering", extra={"event_id": event.id})
                await self._dead_letter(record, "handler_error", f"{type(exc).__name__}: {exc}")
                return
            self._attempts[position] = attempt
            self._count(record, "retried")
            RETRIES.labels("consumer", "error").inc()
            log.warning(
                "handler failed, will redeliver", exc_info=True, extra={"event_id": event.id, "attempt": attempt}
            )
            await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            raise
        self._attempts.pop(position, None)
        self._waits = 0
        self._count(record, "processed")

    async def _wait_out(self) -> None:
        """Back off while the infrastructure is away, longer each time in a row (1, 2, 4, then 8 s)."""
        RETRIES.labels("consumer", "infrastructure").inc()
        self._waits += 1
        await asyncio.sleep(self.backoff_seconds * 2 ** min(self._waits, 4))

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
            headers=record.headers,
        )
        self._count(record, "dead_lettered")

    def _count(self, record, outcome: str) -> None:
        EVENTS_CONSUMED.labels(label_of(self.settings, record.topic), outcome).inc()


def subscribe(
    broker: KafkaBroker,
    settings: KafkaSettings,
    service: str,
    topics: Iterable[Topic],
    handlers: dict[type[EventData], Handler],
    group_suffix: str = "",
    batches: BatchHandler | None = None,
    max_batch_events: int = 500,
    **consumer_options,
) -> EventConsumer:
    """Attach a consumer group `backbone-<service><group_suffix>` reading `topics` from the beginning,
    one message at a time through `handlers`, or whole fetched batches through `batches`."""
    consumer = EventConsumer(service, broker, settings, handlers, **consumer_options)
    count_consumed_from(settings, [settings.topic(t.name) for t in topics])
    subscriber = group_subscriber(
        broker, settings, service, *[settings.topic(t.name) for t in topics], group_suffix=group_suffix,
        title=f"{service}:{','.join(t.name for t in topics)}",
        **({"batch": True, "max_records": max_batch_events} if batches else {}),
    )
    if batches:
        @subscriber
        async def on_batch(message: KafkaMessage) -> None:
            await consumer.handle_batch(message, batches)
    else:
        @subscriber
        async def on_event(message: KafkaMessage) -> None:
            await consumer.handle(message)

    return consumer


def group_subscriber(broker: KafkaBroker, settings: KafkaSettings, service: str, *topics: str, group_suffix: str = "",
                     **options):
    """A FastStream subscriber of consumer group `backbone-<service><group_suffix>` reading from the
    beginning and committing only after success (`options`: batch, pattern, title, ...)."""
    return broker.subscriber(
        *topics,
        group_id=settings.group(service) + group_suffix,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,  # commit after success; seek back on a raised error
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        **options,
    )
