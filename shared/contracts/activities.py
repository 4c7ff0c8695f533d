"""Mutually reinforcing activities: tours, career days, hiring events, meetings, and who came."""

from pydantic import Field, model_validator

from shared.contracts.base import ActivityKind, Audience, Day, Id, Name, Part, PartnershipEvent, Text, Timestamp
from shared.contracts.bounds import Count


class FollowUp(Part):
    title: Name
    owner_id: Id | None = None
    due: Day | None = None


class ActivityScheduled(PartnershipEvent):
    activity_id: Id
    kind: ActivityKind
    title: Name
    starts_at: Timestamp
    ends_at: Timestamp
    action_team_id: Id | None = None
    host_ids: list[Id] = Field(min_length=1)
    sites: list[Name] = Field(default_factory=list)
    audiences: list[Audience] = Field(default_factory=list)
    capacity: Count | None = None

    @model_validator(mode="after")
    def _ends_after_start(self):
        if self.ends_at < self.starts_at:
            raise ValueError("ends_at is before starts_at")
        return self


class ActivityRescheduled(PartnershipEvent):
    activity_id: Id
    starts_at: Timestamp
    ends_at: Timestamp

    @model_validator(mode="after")
    def _ends_after_start(self):
        if self.ends_at < self.starts_at:
            raise ValueError("ends_at is before starts_at")
        return self


class ActivityCancelled(PartnershipEvent):
    activity_id: Id
    reason: Text | None = None


class ActivityCompleted(PartnershipEvent):
    activity_id: Id
    kind: ActivityKind
    completed_at: Timestamp
    participant_ids: list[Id] = Field(default_factory=list)  # organisations that took part
    minutes: Text | None = None
    follow_ups: list[FollowUp] = Field(default_factory=list)


class AttendanceRecorded(PartnershipEvent):
    activity_id: Id
    kind: ActivityKind
    counts: dict[Audience, Count] = Field(default_factory=dict)
    organisation_ids: list[Id] = Field(default_factory=list)
    person_ids: list[Id] = Field(default_factory=list)  # pseudonymous ids from partners, never names
