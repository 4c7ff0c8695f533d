"""What notify itself says to webhook receivers: activity reminders, meeting follow-ups and weekly
digests. They travel on webhooks only (no Kafka topic); receivers read their fields as described in
services/notify/README.md. Nullable fields are sent as `null`, not left out."""

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from shared.contracts.activities import FollowUp
from shared.contracts.base import Id, Name, Part, PartnershipEvent, Text, Timestamp
from shared.contracts.bounds import Amount, Count

# An activity's kind as notify knows it: an ActivityKind, or "activity" for one only seen rescheduled.
KindName = Id
Week = Annotated[str, StringConstraints(pattern=r"^\d{4}-W\d{2}$")]  # ISO week, e.g. 2026-W11


class ActivityReminder(PartnershipEvent):
    """An activity starts in `lead_seconds`: one of the reminder lead times (default 48 h and 2 h)."""

    activity_id: Id
    kind: KindName
    title: Name
    starts_at: Timestamp
    ends_at: Timestamp
    sites: list[Name]
    host_ids: list[Id]
    lead_seconds: Count


class MeetingFollowUp(PartnershipEvent):
    """A partnership meeting's minutes and follow-up items, for the organisations that took part."""

    activity_id: Id
    title: Name | None  # None when notify never saw the meeting scheduled
    completed_at: Timestamp
    participant_ids: list[Id]
    minutes: Text | None
    follow_ups: list[FollowUp]


class MilestoneNote(Part):
    kpi: Id
    period: Id
    value: Amount
    reason: Name


class WeekHappenings(Part):
    counts: dict[str, Count]  # event type -> how many of them last week
    new_members: list[Id]  # organisation ids
    milestones: list[MilestoneNote]


class ComingActivity(Part):
    activity_id: Id
    title: Name
    kind: KindName
    starts_at: Timestamp


class KpiChange(Part):
    kpi: Id
    value: float
    change: float | None  # None when the previous digest had no value for it


class KpiMovement(Part):
    available: Literal[True]
    period: Id  # the program year
    movement: list[KpiChange]


class KpiMovementMissing(Part):
    available: Literal[False]
    note: Text  # why: no metrics service configured, or it could not be reached


class WeeklyDigest(PartnershipEvent):
    """A partnership's week: what happened, new members, milestones, the next 7 days, KPI movement."""

    week: Week
    since: Timestamp
    until: Timestamp
    happened: WeekHappenings
    coming: list[ComingActivity]
    kpis: KpiMovement | KpiMovementMissing = Field(discriminator="available")
