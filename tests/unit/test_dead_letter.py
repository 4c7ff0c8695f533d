"""shared.kafka.dead_letter without a broker: what a dead letter keeps of a huge record, and
that a dead letter the broker refuses for its size is counted and skipped, never retried
(nor is a record the consumer cannot publish for its size waited for as if the broker were away)."""

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)

from shared.consumer import is_transient
from shared.kafka import (
    DEAD_LETTER_BODY_BYTES,
    DEAD_LETTERS,
    DEAD_LETTERS_LOST,
    dead_letter,
)
from shared.settings import KafkaSettings

SETTINGS = KafkaSettings(namespace="unit.")


class Broker:
    def __init__(self, failure: Exception | None = None):
        self.failure = failure
        self.published = []

    async def publish(self, body, topic, *, key, headers):
        if self.failure:
            raise self.failure
        self.published.append((body, topic, key, headers))


async def refuse(broker, body: bytes, headers=()):
    await dead_letter(broker, SETTINGS, body=body, key=b"p-1", source_topic="unit.backbone.outcomes", partition=2,
                      offset=41, service="metrics", reason="oversized", detail="(event): larger than 262144 bytes",
                      headers=headers)


async def test_a_huge_record_is_kept_truncated_with_its_size_coordinates_and_headers():
    broker, body = Broker(), b"x" * (20 * 1024 * 1024)
    before = DEAD_LETTERS.labels("backbone.outcomes", "oversized")._value.get()
    await refuse(broker, body, headers=[("ce_id", b"e-1")] + [(f"h{i}", b"v" * 5000) for i in range(100)])
    [(kept, topic, _, headers)] = broker.published
    assert topic == "unit.backbone.deadletter" and kept == body[:DEAD_LETTER_BODY_BYTES]
    assert headers["dl_size"] == str(len(body)) and headers["dl_truncated"] == "true"
    assert (headers["dl_topic"], headers["dl_partition"], headers["dl_offset"]) == ("unit.backbone.outcomes", "2", "41")
    assert headers["dl_header.ce_id"] == "e-1"
    kept_headers = [v for k, v in headers.items() if k.startswith("dl_header.")]
    assert len(kept_headers) == 32 and max(map(len, kept_headers)) == 1024
    assert DEAD_LETTERS.labels("backbone.outcomes", "oversized")._value.get() == before + 1


async def test_a_dead_letter_refused_for_its_size_is_counted_and_skipped():
    before = DEAD_LETTERS_LOST.labels("backbone.outcomes")._value.get()
    await refuse(Broker(MessageSizeTooLargeError()), b"{}")
    assert DEAD_LETTERS_LOST.labels("backbone.outcomes")._value.get() == before + 1


async def test_an_absent_broker_is_raised_for_the_caller_to_wait_out():
    with pytest.raises(KafkaConnectionError):
        await refuse(Broker(KafkaConnectionError()), b"{}")


def test_a_record_too_large_to_publish_is_not_waited_for_as_if_the_broker_were_away():
    assert not is_transient(MessageSizeTooLargeError())
    assert is_transient(KafkaConnectionError()) and is_transient(KafkaTimeoutError())
