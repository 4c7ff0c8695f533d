"""Reading both CloudEvents content modes as the HTTP and Kafka bindings write them (the
official SDK writes the messages), without servers."""

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from shared.catalog import event_type_of
from shared.contracts import outcomes as out
from shared.envelope import (
    EventError,
    from_binary,
    http_attributes,
    new_event,
    parse_event,
    parse_record,
)
from tests.examples import EXAMPLES, P

HIRE = EXAMPLES[out.HireRecorded]
SUBJECT = 'Café Nord, 100% "local"'


def sdk_event() -> SdkEvent:
    return SdkEvent(attributes={"type": event_type_of(HIRE).type, "source": "/ats/sw", "id": "e-1", "subject": SUBJECT,
                                "datacontenttype": "application/json", "partitionkey": P},
                    data=HIRE.model_dump(mode="json"))


def test_http_binary_mode_is_read_percent_decoded():
    message = ce_http.to_binary_event(sdk_event())
    event = parse_event(from_binary(http_attributes(message.headers.items()), message.headers["content-type"],
                                    message.body))
    assert (event.id, event.subject, event.data) == ("e-1", SUBJECT, HIRE)


@pytest.mark.parametrize("write", [ce_kafka.to_binary_event, ce_kafka.to_structured_event])
def test_kafka_records_in_either_mode(write):
    message = write(sdk_event())
    event = parse_record(message.value, list(message.headers.items()))
    assert (event.id, event.subject, event.data) == ("e-1", SUBJECT, HIRE)


def test_backbones_own_records_and_plain_json_records_are_structured():
    event = new_event(HIRE, source="/ats/sw")
    own = [("ce_type", event.type.encode()), ("ce_id", event.id.encode()),
           ("content-type", b"application/cloudevents+json")]
    assert parse_record(event.to_json(), own) == parse_record(event.to_json()) == event


def test_a_missing_attribute_or_other_data_type_is_named():
    message = ce_kafka.to_binary_event(sdk_event())
    with pytest.raises(EventError) as missing:
        parse_record(message.value, [(k, v) for k, v in message.headers.items() if k != "ce_specversion"])
    assert [e["field"] for e in missing.value.errors] == ["specversion"]
    with pytest.raises(EventError) as xml:
        parse_record(b"<hire/>", list((message.headers | {"content-type": b"application/xml"}).items()))
    assert [e["field"] for e in xml.value.errors] == ["datacontenttype"]
