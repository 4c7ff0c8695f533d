"""The one envelope every event travels in: CloudEvents 1.0 (structured JSON mode) with a typed,
versioned payload from the catalogue."""

import json
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import uuid4

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    create_model,
)
from pydantic_core import CoreSchema, SchemaValidator

from shared.catalog import EVENT_TYPES, event_type_of
from shared.contracts.base import EventData, Timestamp

MAX_EVENT_BYTES = 256 * 1024  # far above any real payload; bigger is a partner bug, not data


class EventError(ValueError):
    """An event that cannot be accepted. `errors` name each bad field, e.g. `data.employer_id`."""

    def __init__(self, errors: list[dict[str, str]], reason: str = "invalid_event"):
        self.errors = errors
        self.reason = reason  # a bounded category, safe as a metric label
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    # Only location and message: pydantic's "input" could carry personal data into logs.
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "(event)", "message": e["msg"]}
        for e in exc.errors(include_url=False)
    ]


class CloudEvent(BaseModel):
    """An event in its envelope. Each event type has its own subclass (see `_TYPED`), whose
    `data` is that type's payload model, so one validation pass checks the whole event."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # extension attributes are allowed and ignored

    specversion: Literal["1.0"]  # required by CloudEvents: an event without it is refused
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1)
    time: Timestamp
    subject: str | None = Field(default=None, max_length=500)
    datacontenttype: Literal["application/json"] = "application/json"
    data: SerializeAsAny[EventData]

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class _Attributes(CloudEvent):
    """The context attributes alone: what can be said about an event of an unknown type."""

    data: dict[str, Any]


_TYPED: dict[str, type[CloudEvent]] = {
    t.type: create_model(f"{t.model.__name__}Event", __base__=CloudEvent, __module__=__name__, data=(t.model, ...))
    for t in EVENT_TYPES
}


# An event as plain data: the envelope's attributes, `data` a dict of the payload's fields, with
# dates, times and enums as the models hold them (what `CloudEvent.model_dump()` gives).
PlainEvent = dict[str, Any]


def _as_plain(schema: CoreSchema) -> CoreSchema:
    """The core schema of a model with the same checks, building dicts instead of instances.

    Derived from the models, so the contracts are written once. A model with validators of its
    own (they expect an instance) is validated as itself, then dumped."""
    if isinstance(schema, list):
        return [_as_plain(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") == "model" and schema["schema"]["type"] == "model-fields":
        fields = schema["schema"]["fields"]
        return {
            "type": "typed-dict",
            "fields": {name: {"type": "typed-dict-field", "schema": _as_plain(f["schema"]),
                              "required": f["schema"]["type"] != "default"} for name, f in fields.items()},
            "extra_behavior": schema.get("config", {}).get("extra_fields_behavior", "ignore"),
        }
    if schema.get("type", "").startswith("function-") and schema.get("schema", {}).get("type") == "model":
        return {"type": "function-after", "schema": schema,
                "function": {"type": "no-info", "function": lambda model: model.model_dump()}}
    return {key: value if key in ("cls", "function", "metadata", "serialization") else _as_plain(value)
            for key, value in schema.items()}


_PLAIN = SchemaValidator({
    "type": "tagged-union", "discriminator": "type",
    "choices": {event_type: _as_plain(model.__pydantic_core_schema__) for event_type, model in _TYPED.items()},
})


def new_event(
    data: EventData,
    *,
    source: str,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """Wrap a payload in its envelope; the type name comes from the catalogue."""
    event_type = event_type_of(data).type
    return _TYPED[event_type](
        specversion="1.0",
        id=id or str(uuid4()),
        source=source,
        type=event_type,
        time=time or datetime.now(UTC),
        subject=subject,
        data=data,
    )


def loads(raw: bytes | str) -> Any:
    """JSON as orjson reads it. NaN, Infinity and numbers beyond a double (1e999) are not JSON,
    but some clients write them: read leniently, the payload's bounds then name the field."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise EventError([{"field": "(event)", "message": f"not valid JSON: {exc}"}], "invalid_json") from None


def parse_event(raw: bytes | str | dict[str, Any]) -> CloudEvent:
    """Validate an incoming event completely or raise EventError naming every bad field."""
    if isinstance(raw, (bytes, str)):
        if len(raw) > MAX_EVENT_BYTES:
            raise EventError([{"field": "(event)", "message": f"larger than {MAX_EVENT_BYTES} bytes"}], "oversized")
        raw = loads(raw)
    if not isinstance(raw, dict):
        raise EventError([{"field": "(event)", "message": "a CloudEvent must be a JSON object"}])
    event_type = raw.get("type")
    typed = _TYPED.get(event_type) if isinstance(event_type, str) else None
    try:
        if typed is not None:
            return typed.model_validate(raw)
        _Attributes.model_validate(raw)  # a malformed envelope is reported before the type
    except ValidationError as exc:
        raise EventError(_field_errors(exc)) from None
    raise EventError([{"field": "type", "message": f"unknown event type {event_type!r}"}], "unknown_type")


def parse_plain(raw: bytes | str) -> PlainEvent:
    """`parse_event`'s checks into plain data: about twice as quick, for consumers that only
    read events (the metrics rollup runs this per record). Refused events raise the same
    EventError as `parse_event`, which also decides anything the quick path does not accept."""
    if len(raw) <= MAX_EVENT_BYTES:
        try:
            # orjson first, as in parse_event, so that both read exactly the same JSON.
            return _PLAIN.validate_python(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValidationError):
            pass
    return parse_event(raw).model_dump()
