"""The recording forms as pure data: the fields of each kind of record a partnership keeps
(activities, outcomes, demand survey responses), how what was typed becomes the record's data, and
which field a refusal names. Derived from the event contracts in shared/contracts, so a field added
to a contract shows on its form without a template change."""

import enum
import re
import types
import typing
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo

from pydantic import BaseModel

from services.metrics.views import local_time
from shared.catalog import ACTIVITIES, DEMAND, EVENT_TYPES, OUTCOMES, VOIDABLE_TYPES, EventType
from shared.contracts.outcomes import OutcomeVoided

# What each form is called, in the order the workspace lists them.
TITLES = {
    "activity.scheduled": "Schedule an activity",
    "activity.rescheduled": "Reschedule an activity",
    "activity.cancelled": "Cancel an activity",
    "activity.completed": "Complete an activity",
    "attendance.recorded": "Record attendance",
    "hire.recorded": "Record a hire",
    "placement.recorded": "Record a placement",
    "training.enrolled": "Record a training enrolment",
    "training.completed": "Record a completed training",
    "credential.earned": "Record a credential",
    "apprenticeship.started": "Record an apprenticeship",
    "retention.checked": "Record a retention check",
    "separation.recorded": "Record a separation",
    "demand.survey_responded": "Record a demand survey response",
}


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    input: str  # text, textarea, date, datetime-local, number, checkbox, select, multiple, list, counts, rows
    required: bool
    options: tuple[str, ...] = ()
    step: str = "1"  # for numbers: "any" for amounts
    parts: tuple["FormField", ...] = ()  # rows: the fields of each row, typed in this order between "|"


@dataclass(frozen=True)
class RecordKind:
    slug: str  # in the address: hire-recorded
    title: str
    event_type: EventType
    fields: tuple[FormField, ...]


def label(name: str) -> str:
    """A field's name in words: `host_ids` is "Hosts", `employer_id` "Employer"."""
    words = name.removesuffix("_ids").removesuffix("_id").replace("_", " ") + ("s" if name.endswith("_ids") else "")
    return words[:1].upper() + words[1:]


def _bare(annotation) -> tuple[object, bool]:
    """The annotation without `| None` and constraints (Annotated, at any depth), and whether None was allowed."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            if len(args) != 1:
                return annotation, optional
            annotation = args[0]
        else:
            return annotation, optional


def _field(name: str, info) -> FormField | None:
    """The form field of a contract field; None for what a form cannot ask (nested records)."""
    annotation, optional = _bare(info.annotation)
    required = info.is_required() and not optional
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list:
        item = args[0] if args else str
        if isinstance(item, type) and issubclass(item, BaseModel):  # e.g. follow-ups, a survey's openings
            parts = fields_of(item)
            return FormField(name, label(name), "rows", required, parts=parts) if parts else None
        if isinstance(item, type) and issubclass(item, enum.Enum):
            return FormField(name, label(name), "multiple", required, tuple(m.value for m in item))
        return FormField(name, label(name), "list", required)
    if origin is dict:
        key = args[0] if args else str
        audiences = tuple(m.value for m in key) if isinstance(key, type) and issubclass(key, enum.Enum) else ()
        return FormField(name, label(name), "counts", required, audiences)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return FormField(name, label(name), "select", required, tuple(m.value for m in annotation))
    if annotation is bool:
        return FormField(name, label(name), "checkbox", False)
    if annotation is datetime:
        return FormField(name, label(name), "datetime-local", required)
    if annotation is date:
        return FormField(name, label(name), "date", required)
    if annotation in (int, float):
        return FormField(name, label(name), "number", required, step="1" if annotation is int else "any")
    return FormField(name, label(name), "textarea" if _long(info.annotation) else "text", required)


def _long(annotation) -> bool:
    """Text longer than a line fits (minutes, an objective): a string allowing over 500 characters."""
    found = [annotation]
    while found:
        current = found.pop()
        if typing.get_origin(current) is typing.Annotated:
            found.append(typing.get_args(current)[0])
            if any((getattr(m, "max_length", None) or 0) > 500 for m in current.__metadata__):
                return True
        elif typing.get_origin(current) in (typing.Union, types.UnionType):
            found += typing.get_args(current)
    return False


def fields_of(model: type[BaseModel], skip: tuple[str, ...] = ()) -> tuple[FormField, ...] | None:
    """The form fields of a model; None if a field it requires cannot be typed into a form."""
    fields = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        if (form_field := _field(name, info)) is None:
            if info.is_required():
                return None  # e.g. a demand survey's openings: the API and CSV import take them
            continue
        fields.append(form_field)
    return tuple(fields)


def _kind(event_type: EventType) -> RecordKind | None:
    """The form of an event type; None if a field it requires cannot be typed into a form."""
    short = event_type.type.removeprefix("org.backbone.").rsplit(".v", 1)[0]
    fields = fields_of(event_type.model, skip=("partnership_id",))
    if fields is None:
        return None
    return RecordKind(short.replace(".", "-").replace("_", "-"), TITLES[short], event_type, fields)


# A void has no form of its own: it is sent from the record it takes back (the records page).
_FORMS = [_kind(t) for t in EVENT_TYPES if t.topic in (ACTIVITIES, OUTCOMES, DEMAND) and t.model is not OutcomeVoided]
RECORDS: dict[str, RecordKind] = {
    kind.slug: kind for kind in sorted((k for k in _FORMS if k is not None),
                                       key=lambda kind: list(TITLES.values()).index(kind.title))
}


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # the events service says what is wrong with it


def data_of(kind: RecordKind, form: dict[str, list[str]], partnership_id: str, zone: tzinfo = UTC) -> dict:
    """The record's data from what was typed (parse_qs form), in the page's partnership."""
    return {"partnership_id": partnership_id, **values_of(kind.fields, form, zone)}


def values_of(fields: tuple[FormField, ...], form: dict[str, list[str]], zone: tzinfo = UTC) -> dict:
    """What was typed into `fields` (parse_qs form) as data: empty fields left out, so the
    contract's defaults and its refusals apply exactly as for any other client. Times are typed
    in the installation's time zone `zone`."""
    data: dict = {}
    for f in fields:
        values = [v.strip() for v in form.get(f.name, []) if v.strip()]
        if f.input == "checkbox":
            data[f.name] = bool(values)
        elif f.input == "multiple":
            if values:
                data[f.name] = values
        elif f.input == "list":
            if values:
                data[f.name] = [item.strip() for v in values for item in v.replace(",", "\n").splitlines()
                                if item.strip()]
        elif f.input == "counts":
            counts = {option: _number(v) for option in f.options
                      if (v := form.get(f"{f.name}.{option}", [""])[0].strip())}
            if counts:
                data[f.name] = counts
        elif f.input == "rows":
            rows = [_row(f.parts, line, zone) for v in values for line in v.splitlines() if line.strip()]
            if rows:
                data[f.name] = rows
        elif values:
            text = values[0]
            if f.input == "number":
                data[f.name] = _number(text)
            elif f.input == "datetime-local":
                data[f.name] = _moment(text, zone)
            else:
                data[f.name] = text
    return data


YES = frozenset({"yes", "y", "true", "1", "x", "done"})


def _row(parts: tuple[FormField, ...], line: str, zone: tzinfo) -> dict:
    """One typed row ("51-4041 | 6 | CNC setup, blueprint reading") as its item's data."""
    texts = [text.strip() for text in line.split("|")]
    typed = {part.name: [text] for part, text in zip(parts, texts, strict=False) if text}
    row = values_of(tuple(p for p in parts if p.input != "checkbox"), typed, zone)
    return row | {p.name: typed.get(p.name, [""])[0].lower() in YES for p in parts if p.input == "checkbox"}


def _moment(text: str, zone: tzinfo) -> str:
    """A typed time as the contracts take it, with its offset: wall-clock time in `zone` unless it
    says its own offset. Unreadable text goes as typed: the API says what is wrong with it."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return (when if when.tzinfo else when.replace(tzinfo=zone)).isoformat()


def field_errors(fields: tuple[FormField, ...], errors: list[dict]) -> tuple[dict[str, str], list[str]]:
    """An API refusal's errors by the form field they name, and those naming none of them."""
    names = {f.name for f in fields}
    by_field: dict[str, str] = {}
    other: list[str] = []
    for error in errors:
        path = error.get("field", "").removeprefix("data.").split(".")
        message = error.get("message", "not valid")
        if path[0] in names:
            by_field.setdefault(path[0], message)
        else:
            other.append(message)
    return by_field, other


def typed_of(kind: RecordKind, data: dict, zone: tzinfo = UTC) -> dict[str, list[str]]:
    """A record's data as its form's fields (what `data_of` reads back): to correct it, the form
    starts from what it said."""
    typed: dict[str, list[str]] = {}
    for f in kind.fields:
        value = data.get(f.name)
        if value is None:
            continue
        if f.input == "checkbox":
            typed[f.name] = ["yes"] if value else []
        elif f.input == "multiple":
            typed[f.name] = [str(v) for v in value]
        elif f.input == "list":
            typed[f.name] = ["\n".join(str(v) for v in value)]
        elif f.input == "rows":
            typed[f.name] = ["\n".join(" | ".join(_part_text(p, item.get(p.name)) for p in f.parts) for item in value)]
        elif f.input == "counts":
            typed |= {f"{f.name}.{option}": [str(n)] for option, n in value.items()}
        elif f.input == "datetime-local":  # wall-clock time in `zone`, to the minute, as it is typed
            typed[f.name] = [datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(zone)
                             .strftime("%Y-%m-%dT%H:%M")]
        else:
            typed[f.name] = [str(value)]
    return typed


def _part_text(part: FormField, value) -> str:
    if value is None:
        return ""
    if part.input == "checkbox":
        return "yes" if value else "no"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


_BY_TYPE = {kind.event_type.type: kind for kind in RECORDS.values()}


_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


@dataclass(frozen=True)
class RecordRow:
    """An accepted event as a person reads it (records page, lineage)."""

    source: str
    id: str
    what: str  # "Hire recorded"
    when: str  # "2026-03-04 14:05 UTC"
    who: str  # "key ab12cd" or the partner system's source
    details: str  # its fields, in words
    voided_by: str | None
    voidable: bool  # may still be voided
    correct_slug: str | None  # the form that corrects it, if any


def row_of(record: dict, zone: tzinfo = UTC) -> RecordRow:
    """A row of the events service's records (`GET /partnerships/{id}/records`), times in `zone`."""
    short = record["type"].removeprefix("org.backbone.").rsplit(".v", 1)[0]
    what = short.replace(".", " ").replace("_", " ")
    source = record["source"]
    details = " · ".join(f"{label(name).lower()} {_shown(value, zone)}"
                         for name, value in record.get("data", {}).items()
                         if name not in ("partnership_id", "voided") and value not in (None, [], {}))
    voidable = record["type"] in VOIDABLE_TYPES and not record.get("voided_by")
    kind = _BY_TYPE.get(record["type"])
    return RecordRow(source, record["id"], what[:1].upper() + what[1:], local_time(record["time"], zone),
                     "key " + source.removeprefix("/keys/") if source.startswith("/keys/") else source,
                     details, record.get("voided_by"), voidable, kind.slug if kind and voidable else None)


def _shown(value, zone: tzinfo) -> str:
    if isinstance(value, str) and _MOMENT.match(value):
        return local_time(value, zone)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items())
    return str(value)
