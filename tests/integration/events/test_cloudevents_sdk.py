"""Partner systems using the official CloudEvents SDK (`cloudevents` 2.2.0 from PyPI) as the
client, against the real events service: binary and structured content mode over HTTP and on a
partner's inbound topic, as the protocol bindings define them, each event counted once; a binary
event missing a required attribute refused naming it (422 over HTTP, one dead letter on Kafka)."""

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

from shared.catalog import DEAD_LETTER, OUTCOMES, event_type_of, inbound_of
from shared.contracts import outcomes as out
from tests.examples import P
from tests.integration.events.conftest import example, issue_partner_key
from tests.integration.topics import header, read_topic

pytestmark = pytest.mark.integration

SUBJECT = "hire at Café Nord, 100% \"local\""  # non-ASCII, space, quote and percent: percent-encoded in ce- headers


def hire(id: str, hire_id: str, person_id: str) -> CloudEvent:
    data = example(out.HireRecorded, hire_id=hire_id, person_id=person_id)
    return CloudEvent(attributes={"type": event_type_of(data).type, "source": "/ats/sw", "id": id,
                                  "subject": SUBJECT, "datacontenttype": "application/json", "partitionkey": P},
                      data=data.model_dump(mode="json"))


def without(headers: dict, name: str) -> dict:
    return {key: value for key, value in headers.items() if key != name}


async def test_binary_and_structured_mode_over_http(operator, roster, kafka_settings):
    binary = ce_http.to_binary_event(hire("sdk-binary", "h-1", "p-81"))
    assert binary.headers["ce-subject"] != SUBJECT and "content-type" in {k.lower() for k in binary.headers}
    structured = ce_http.to_structured_event(hire("sdk-structured", "h-2", "p-82"))

    answers = [await operator.post("/events", content=m.body, headers=m.headers) for m in (binary, structured, binary)]
    assert [(a.status_code, a.json()["status"]) for a in answers] == \
        [(202, "accepted"), (202, "accepted"), (200, "duplicate")], [a.text for a in answers]

    missing = ce_http.to_binary_event(hire("sdk-no-source", "h-3", "p-83"))
    refused = await operator.post("/events", content=missing.body, headers=without(missing.headers, "ce-source"))
    assert refused.status_code == 422 and [e["field"] for e in refused.json()["errors"]] == ["source"]

    records = await read_topic(kafka_settings, OUTCOMES, until=lambda records: len(records) >= 2)
    assert sorted(header(r, "ce_id") for r in records) == ["sdk-binary", "sdk-structured"]
    assert {orjson.loads(r.value)["subject"] for r in records} == {SUBJECT}  # percent-decoded as sent


async def test_binary_and_structured_mode_on_the_inbound_topic(events_service, roster, membership_broker,
                                                                kafka_settings):
    key_id, _ = await issue_partner_key(membership_broker, kafka_settings, [P], sources=["/ats/sw"])
    binary = ce_kafka.to_binary_event(hire("sdk-binary", "h-1", "p-81"))
    assert binary.key == P and "ce_id" in binary.headers
    structured = ce_kafka.to_structured_event(hire("sdk-structured", "h-2", "p-82"))
    missing = ce_kafka.to_binary_event(hire("sdk-no-source", "h-3", "p-83"))
    missing = ce_kafka.KafkaMessage(headers=without(missing.headers, "ce_source"), key=missing.key, value=missing.value)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for message in (binary, structured, binary, missing):
            await producer.send_and_wait(kafka_settings.topic(inbound_of(key_id).name), message.value,
                                         key=message.key.encode(), headers=list(message.headers.items()))
    finally:
        await producer.stop()

    letters = await read_topic(kafka_settings, DEAD_LETTER, until=lambda records: len(records) >= 1)
    assert [(header(r, "dl_reason"), header(r, "dl_detail").split(":")[0]) for r in letters] == \
        [("invalid_event", "source")]
    records = await read_topic(kafka_settings, OUTCOMES, until=lambda records: len(records) >= 2)
    assert sorted(header(r, "ce_id") for r in records) == ["sdk-binary", "sdk-structured"]  # the repeat counted once
    assert {orjson.loads(r.value)["subject"] for r in records} == {SUBJECT}
