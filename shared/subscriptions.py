"""What a subscription to notify is, as its clients send it: which event types it may select,
its channels and modes, and the request body notify validates (the KPI pages derive their
subscription form from it). Here, beside the catalogue it selects from, since notify and the
pages both read it."""

import re
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationInfo, field_validator

from shared.catalog import EVENT_TYPES, type_name
from shared.contracts.base import Id, Name, PartnershipEvent
from shared.contracts.notifications import ActivityReminder, MeetingFollowUp

# Every partnership event can be subscribed to, except notify's own delivery results: a
# subscription to "*" would otherwise be notified of its own notifications, without end.
SUBSCRIBABLE: tuple[str, ...] = tuple(
    e.type for e in EVENT_TYPES
    if issubclass(e.model, PartnershipEvent) and not e.type.startswith("org.backbone.notification.")
) + (type_name(ActivityReminder), type_name(MeetingFollowUp))

_EMAIL = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}\.)+[A-Za-z]{2,63}$")


class Channel(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


class Mode(StrEnum):
    IMMEDIATE = "immediate"  # each matching event, reminder and follow-up as it happens
    DIGEST = "digest"  # one summary per partnership and week instead


def unmatched_patterns(patterns: list[str]) -> list[str]:
    """Patterns (with * and ? wildcards) that select no event type: surely a typo."""
    return [p for p in patterns if not any(fnmatchcase(t, p) for t in SUBSCRIBABLE)]


def valid_email(address: str) -> bool:
    return bool(_EMAIL.match(address))



class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partnership_ids: list[Id] = Field(min_length=1, max_length=100)
    event_types: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default=["*"], min_length=1, max_length=100,
        description="CloudEvent types, * and ? as wildcards, e.g. org.backbone.member.* or "
                    "org.backbone.notify.reminder.v1. Digest subscriptions get the whole partnership's week.")
    channel: Channel
    webhook_url: HttpUrl | None = Field(default=None, validate_default=True, description="for the webhook channel")
    email: str | None = Field(default=None, max_length=254, validate_default=True,
                              description="for the e-mail channel; kept here only, never logged or published")
    organisation_id: Id | None = Field(default=None, description="the subscriber's organisation: meeting "
                                                                 "follow-ups go to the attendees' organisations")
    mode: Mode = Mode.IMMEDIATE
    label: Name | None = None

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, patterns: list[str]) -> list[str]:
        if unmatched := unmatched_patterns(patterns):
            raise ValueError(f"no event type matches {', '.join(unmatched)}")
        return patterns

    @field_validator("webhook_url", "email")
    @classmethod
    def _target(cls, value, info: ValidationInfo):
        channel = Channel.WEBHOOK if info.field_name == "webhook_url" else Channel.EMAIL
        if (info.data.get("channel") == channel) != (value is not None):
            raise ValueError(f"required for the {channel} channel, and only for it")
        if channel == Channel.EMAIL and value is not None and not valid_email(value):
            raise ValueError("not an e-mail address")
        return value
