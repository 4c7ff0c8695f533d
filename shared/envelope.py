"""The one envelope every event travels in: CloudEvents 1.0 (structured JSON mode) with a typed,
versioned payload from the catalogue."""

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import uuid4

import orjson
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from shared.catalog import BY_TYPE, event_type_of
from shared.contracts.base import EventData, Timestamp

MAX_EVENT_BYTES = 256 * 1024  # far above any real payload; bigger is a partner bug, not data


class EventError(ValueError):
    """An event that cannot be accepted. `errors` name each bad field, e.g. `data.employer_id`."""

    def __init__(self, errors: list[dict[str, str]], reason: str = "invalid_event"):
        self.errors = errors
        self.reason = reason  # a bounded category, safe as a metric label
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def _field_errors(exc: ValidationError, prefix: tuple = ()) -> list[dict[str, str]]:
    # Only location and message: pydantic's "input" could carry personal data into logs.
    return [
        {"field": ".".join(str(p) for p in (*prefix, *e["loc"])) or "(event)", "message": e["msg"]}
        for e in exc.errors(include_url=False)
    ]


class _Attributes(BaseModel):
    """The CloudEvents context attributes, validated before the payload's type is known."""

    model_config = ConfigDict(extra="ignore")  # extension attributes are allowed and ignored

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1)
    time: Timestamp
    subject: str | None = Field(default=None, max_length=500)
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]


class CloudEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    data: SerializeAsAny[EventData]

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def new_event(
    data: EventData,
    *,
    source: str,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """Wrap a payload in its envelope; the type name comes from the catalogue."""
    return CloudEvent(
        id=id or str(uuid4()),
        source=source,
        type=event_type_of(data).type,
        time=time or datetime.now(UTC),
        subject=subject,
        data=data,
    )


def parse_event(raw: bytes | str | dict[str, Any]) -> CloudEvent:
    """Validate an incoming event completely or raise EventError naming every bad field."""
    if isinstance(raw, (bytes, str)):
        if len(raw) > MAX_EVENT_BYTES:
            raise EventError([{"field": "(event)", "message": f"larger than {MAX_EVENT_BYTES} bytes"}], "oversized")
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EventError([{"field": "(event)", "message": f"not valid JSON: {exc}"}], "invalid_json") from None
    if not isinstance(raw, dict):
        raise EventError([{"field": "(event)", "message": "a CloudEvent must be a JSON object"}])
    try:
        attributes = _Attributes.model_validate(raw)
    except ValidationError as exc:
        raise EventError(_field_errors(exc)) from None
    event_type = BY_TYPE.get(attributes.type)
    if event_type is None:
        raise EventError([{"field": "type", "message": f"unknown event type {attributes.type!r}"}], "unknown_type")
    try:
        data = event_type.model.model_validate(attributes.data)
    except ValidationError as exc:
        raise EventError(_field_errors(exc, ("data",))) from None
    return CloudEvent(**attributes.model_dump(exclude={"data", "specversion", "datacontenttype"}), data=data)
