"""The one envelope every event travels in: CloudEvents 1.0 with a typed, versioned payload from
the catalogue. Backbone writes structured JSON mode; it reads structured, batched and binary mode
(attributes in `ce-` HTTP or `ce_` Kafka headers, the data as the body), as the CloudEvents HTTP
and Kafka protocol bindings define them."""

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote
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

from shared.catalog import EVENT_TYPES, WEBHOOK_TYPES, type_name
from shared.contracts.base import EventData, Timestamp

MAX_EVENT_BYTES = 256 * 1024  # far above any real payload; bigger is a partner bug, not data
STRUCTURED_MEDIA = "application/cloudevents"  # +json: structured mode (the batch type starts with it too)
DATA_MEDIA = "application/json"  # the one data content type of the catalogue's events


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

    data: dict[str, Any]  # type: ignore[assignment]  # narrowing on purpose: any JSON object, whatever the type


class WebhookEvent(CloudEvent):
    """An event of a webhook-only type (notify's own): its payload's nulls are sent, not left out."""

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude={"subject"} if self.subject is None else None).encode()


_TYPED: dict[str, type[CloudEvent]] = {
    t.type: create_model(f"{t.model.__name__}Event", __base__=CloudEvent, __module__=__name__, data=(t.model, ...))
    for t in EVENT_TYPES
}
# Not in _TYPED: no one submits these to Backbone, so parse_event refuses them as unknown types.
_WEBHOOK_TYPED: dict[str, type[CloudEvent]] = {
    t.type: create_model(f"{t.model.__name__}Event", __base__=WebhookEvent, __module__=__name__, data=(t.model, ...))
    for t in WEBHOOK_TYPES
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


def identity(source: str, event_id: str) -> str:
    """An event's identity as CloudEvents defines it: its id is unique within its source only, so
    two senders' equal ids are two events. The source's length first keeps the joined string
    unambiguous whatever either contains; a string is an exact index lookup as a Mongo _id."""
    return f"{len(source)}:{source} {event_id}"


def new_event(
    data: EventData,
    *,
    source: str,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """Wrap a payload in its envelope; the type name comes from the catalogue."""
    event_type = type_name(type(data))
    return (_TYPED.get(event_type) or _WEBHOOK_TYPED[event_type])(
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
            value = json.loads(raw)
            orjson.dumps(value)  # what orjson refuses for other reasons (lone surrogates) stays refused
            return value
        except (ValueError, RecursionError, orjson.JSONEncodeError):
            raise EventError([{"field": "(event)", "message": f"not valid JSON: {exc}"}], "invalid_json") from None


def parse_event(raw: object) -> CloudEvent:  # any JSON value or its text (None: a Kafka tombstone)
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


def media_type(content_type: str | None) -> str:
    """`application/json` of `Application/JSON; charset=utf-8`."""
    return (content_type or "").split(";")[0].strip().lower()


def from_binary(attributes: Mapping[str, str], content_type: str | None, data: bytes | None) -> dict[str, Any]:
    """A binary-mode event (context attributes already taken from their headers, the data
    content type from Content-Type) as its structured form, for `parse_event`. A missing
    attribute is then reported by name (`specversion: Field required`)."""
    if data is not None and len(data) > MAX_EVENT_BYTES:
        raise EventError([{"field": "data", "message": f"larger than {MAX_EVENT_BYTES} bytes"}], "oversized")
    media = media_type(content_type) or DATA_MEDIA
    if media != DATA_MEDIA:
        raise EventError([{"field": "datacontenttype", "message": f"data must be {DATA_MEDIA}, not {media!r}"}])
    try:
        payload = loads(data) if data else None
    except EventError as exc:
        raise EventError([{"field": "data", "message": exc.errors[0]["message"]}], exc.reason) from None
    return {**attributes, "datacontenttype": media, "data": payload}


def http_attributes(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The context attributes of HTTP binary mode: `ce-<name>` headers, percent-decoded (UTF-8)."""
    return {name.lower()[3:]: unquote(value) for name, value in headers if name.lower().startswith("ce-")}


def parse_record(value: bytes | None, headers: Iterable[tuple[str, bytes]] = ()) -> CloudEvent:
    """A Kafka record's event, by the Kafka binding: structured mode when its `content-type`
    header is a CloudEvents one or it carries no `ce_` header at all (a plain JSON record);
    otherwise binary mode, the attributes in `ce_<name>` headers (UTF-8), the data as the value.
    (The record key is the `partitionkey` extension; Backbone's key is the partnership id.)"""
    headers = [(name.lower(), raw) for name, raw in headers or ()]
    content_type = next((raw for name, raw in headers if name == "content-type"), b"").decode("utf-8", "replace")
    attributes = [(name[3:], raw) for name, raw in headers if name.startswith("ce_")]
    if media_type(content_type).startswith(STRUCTURED_MEDIA) or not attributes:
        return parse_event(value)
    try:
        decoded = {name: raw.decode("utf-8") for name, raw in attributes}
    except UnicodeDecodeError:
        raise EventError([{"field": "(headers)", "message": "ce_ headers must be UTF-8"}]) from None
    return parse_event(from_binary(decoded, content_type or None, value))
