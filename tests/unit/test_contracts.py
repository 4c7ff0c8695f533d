"""The envelope and the catalogue, as pure code."""

import re
from datetime import datetime

import orjson
import pytest

from shared import envelope
from shared.catalog import BY_TYPE, EVENT_TYPES, TOPICS, WEBHOOK_TYPES
from shared.envelope import (
    MAX_EVENT_BYTES,
    EventError,
    new_event,
    parse_event,
    parse_plain,
)
from tests.examples import EXAMPLES, WEBHOOK_EXAMPLES

TYPE_NAME = re.compile(r"^org\.backbone\.[a-z_]+\.[a-z_]+\.v\d+$")


def test_catalogue_is_consistent():
    assert len(BY_TYPE) == len(EVENT_TYPES), "a type name is declared twice"
    assert len({e.model for e in EVENT_TYPES}) == len(EVENT_TYPES), "a payload model serves two types"
    for entry in EVENT_TYPES:
        assert TYPE_NAME.match(entry.type), entry.type
        assert entry.topic in TOPICS
        assert entry.key in entry.model.model_fields, f"{entry.type}: key {entry.key} is not a payload field"
    assert set(EXAMPLES) == {e.model for e in EVENT_TYPES}, "every catalogue type needs an example"
    assert set(WEBHOOK_EXAMPLES) == {e.model for e in WEBHOOK_TYPES}, "every webhook type needs an example"
    names = [e.type for e in EVENT_TYPES + WEBHOOK_TYPES]
    assert len(set(names)) == len(names), "a type name is declared twice"
    assert all(TYPE_NAME.match(e.type) for e in WEBHOOK_TYPES)


@pytest.mark.parametrize("entry", WEBHOOK_TYPES, ids=lambda e: e.type)
def test_webhook_types_are_built_but_never_taken_in(entry):
    """notify builds them with the envelope, nulls included; no one may submit one to Backbone."""
    event = new_event(WEBHOOK_EXAMPLES[entry.model], source="/backbone/notify", subject="s-1")
    raw = orjson.loads(event.to_json())
    assert raw["type"] == entry.type
    assert entry.model.model_validate(raw["data"]) == event.data
    assert raw["data"] == event.data.model_dump(mode="json")  # None fields are sent as null
    assert _error(event.to_json()).reason == "unknown_type"


@pytest.mark.parametrize("entry", EVENT_TYPES, ids=lambda e: e.type)
def test_every_event_type_round_trips(entry):
    event = new_event(EXAMPLES[entry.model], source="/test", subject="s-1")
    parsed = parse_event(event.to_json())
    assert parsed == event
    assert parsed.type == entry.type
    assert type(parsed.data) is entry.model
    assert entry.partition_key(parsed.data).decode() == getattr(parsed.data, entry.key)


def _hire_json() -> dict:
    return orjson.loads(
        new_event(
            EXAMPLES[next(e.model for e in EVENT_TYPES if e.type.startswith("org.backbone.hire"))], source="/ats"
        ).to_json()
    )


def _error(raw) -> EventError:
    with pytest.raises(EventError) as caught:
        parse_event(raw)
    return caught.value


def test_missing_id_names_the_field():
    raw = _hire_json()
    del raw["id"]
    assert _error(raw).errors == [{"field": "id", "message": "Field required"}]


def test_unknown_type_is_named():
    raw = _hire_json() | {"type": "org.backbone.hire.recorded.v9"}
    error = _error(raw)
    assert error.reason == "unknown_type"
    assert error.errors[0]["field"] == "type"
    assert "org.backbone.hire.recorded.v9" in error.errors[0]["message"]


def test_bad_payload_names_each_field_under_data():
    raw = _hire_json()
    raw["data"]["soc_code"] = "welder"
    del raw["data"]["employer_id"]
    raw["data"]["nickname"] = "Al"
    fields = {e["field"] for e in _error(raw).errors}
    assert fields == {"data.soc_code", "data.employer_id", "data.nickname"}


def test_error_messages_do_not_echo_input_values():
    raw = _hire_json()
    raw["data"]["person_id"] = "Jane Doe <jane@example.org>"  # a partner mistake: a name instead of an id
    error = _error(raw)
    assert error.errors[0]["field"] == "data.person_id"
    assert "jane" not in str(error).lower()


def test_timestamps_must_carry_an_offset():
    raw = _hire_json() | {"time": datetime(2026, 1, 1, 12, 0).isoformat()}
    assert _error(raw).errors[0]["field"] == "time"


def test_not_json_and_not_an_object_and_oversized():
    assert _error(b"{not json").reason == "invalid_json"
    assert _error(b"[1, 2]").errors[0]["field"] == "(event)"
    assert _error(b" " * (MAX_EVENT_BYTES + 1)).reason == "oversized"


def test_wrong_specversion_is_rejected():
    assert _error(_hire_json() | {"specversion": "0.3"}).errors[0]["field"] == "specversion"


def test_missing_specversion_is_rejected():
    hire = _hire_json()
    del hire["specversion"]
    assert _error(hire).errors[0]["field"] == "specversion"


def test_extension_attributes_are_accepted():
    raw = _hire_json() | {"partnerref": "batch-7"}
    assert parse_event(raw).id == raw["id"]


@pytest.mark.parametrize("entry", EVENT_TYPES, ids=lambda e: e.type)
def test_plain_parsing_gives_what_the_models_hold(entry, monkeypatch):
    raw = new_event(EXAMPLES[entry.model], source="/test", subject="s-1").to_json()
    expected = parse_event(raw).model_dump()
    monkeypatch.setattr(envelope, "parse_event", None)  # the quick path alone must accept it
    assert parse_plain(raw) == expected


def _scheduled_backwards() -> dict:
    raw = orjson.loads(
        new_event(
            EXAMPLES[next(e.model for e in EVENT_TYPES if e.type.endswith("activity.scheduled.v1"))], source="/test"
        ).to_json()
    )
    raw["data"]["ends_at"] = "2020-01-01T00:00:00Z"  # before it starts: the model's own validator refuses it
    return raw


@pytest.mark.parametrize("raw", [
    b"{not json", b"[1, 2]", b" " * (MAX_EVENT_BYTES + 1), {"type": "org.backbone.hire.recorded.v9"},
    {"specversion": "0.3"}, {"time": "2026-01-01T12:00:00"}, {"data": {"soc_code": "welder", "nickname": "Al"}},
    {"id": ""}, "scheduled backwards",
], ids=["not json", "array", "oversized", "unknown type", "specversion", "naive time", "bad payload", "empty id",
        "model validator"])
def test_plain_parsing_refuses_what_parse_event_refuses_with_the_same_error(raw):
    if raw == "scheduled backwards":
        raw = _scheduled_backwards()
    elif isinstance(raw, dict):
        hire = _hire_json()
        raw = hire | {k: v for k, v in raw.items() if k != "data"} | {"data": hire["data"] | raw.get("data", {})}
    raw = raw if isinstance(raw, bytes) else orjson.dumps(raw)
    expected = _error(raw)
    with pytest.raises(EventError) as caught:
        parse_plain(raw)
    assert (caught.value.reason, caught.value.errors) == (expected.reason, expected.errors)
