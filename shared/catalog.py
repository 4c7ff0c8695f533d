"""The event catalogue: every event type of Backbone, its payload model, its topic and its
partition key. This module is the contract between services; scan the table below.

Type names are `org.backbone.<entity>.<what happened>.v<version>`. A changed payload gets a new
version (a new row), never an edit of an old one, so stored history stays readable.
Notify's own notifications travel on webhooks, not Kafka: they are the WEBHOOK_TYPES table.
"""

import builtins
from dataclasses import dataclass

from shared.contracts import activities as act
from shared.contracts import demand as dem
from shared.contracts import membership as mem
from shared.contracts import notifications as note
from shared.contracts import outcomes as out
from shared.contracts import signals as sig
from shared.contracts.base import EventData


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    description: str


MEMBERSHIP = Topic(
    "backbone.membership", 3, "Roster and common agenda: partnerships, organisations, members, action teams, targets"
)
ACTIVITIES = Topic("backbone.activities", 3, "Activity lifecycle and attendance")
OUTCOMES = Topic("backbone.outcomes", 6, "Talent outcomes: hires, placements, training, credentials, retention")
DEMAND = Topic("backbone.demand", 3, "Employer demand survey responses")
ACCESS = Topic("backbone.access", 1, "API keys issued and revoked (hashes only), for every service's key ring")
SIGNALS = Topic("backbone.signals", 3, "KPI milestones and notification results")
# One inbound topic per partner system's API key, created by the events service when the key is
# issued: whoever produces to it acts as that key (Kafka ACLs let only the partner's user write
# it), so the events service decides each record with that key's partnerships and sources.
INBOUND = Topic(
    "backbone.inbound.{key_id}",
    6,
    "Raw CloudEvents from one partner system (its API key id), validated by the events service as that key",
)
DEAD_LETTER = Topic("backbone.deadletter", 3, "Messages no consumer could accept, with the reason in headers")

TOPICS: tuple[Topic, ...] = (
    MEMBERSHIP,
    ACCESS,
    ACTIVITIES,
    OUTCOMES,
    DEMAND,
    SIGNALS,
    DEAD_LETTER,
)  # created at start-up


def topic_label(name: str) -> str:
    """A topic (without namespace) as a metric label: every partner's inbound topic under the one
    value `backbone.inbound.{key_id}`, so label sets stay bounded however many keys are issued."""
    return INBOUND.name if name.startswith(INBOUND.name.removesuffix("{key_id}")) else name


def inbound_of(key_id: str) -> Topic:
    """The inbound topic of one partner system's key."""
    return Topic(INBOUND.name.format(key_id=key_id), INBOUND.partitions, INBOUND.description)


@dataclass(frozen=True)
class EventType:
    type: str
    model: builtins.type[EventData]  # builtins.: the field `type` above shadows the builtin here
    topic: Topic
    key: str = "partnership_id"  # payload field used as Kafka key: keeps a partnership's events in order

    def partition_key(self, data: EventData) -> bytes:
        return str(getattr(data, self.key)).encode()


_P = "org.backbone."

EVENT_TYPES: tuple[EventType, ...] = (
    # membership service
    EventType(_P + "region.defined.v1", mem.RegionDefined, MEMBERSHIP, key="region_id"),
    EventType(_P + "sector.defined.v1", mem.SectorDefined, MEMBERSHIP, key="sector_id"),
    EventType(_P + "partnership.created.v1", mem.PartnershipCreated, MEMBERSHIP),
    EventType(_P + "partnership.updated.v1", mem.PartnershipUpdated, MEMBERSHIP),
    EventType(_P + "organisation.registered.v1", mem.OrganisationRegistered, MEMBERSHIP, key="organisation_id"),
    EventType(_P + "organisation.updated.v1", mem.OrganisationUpdated, MEMBERSHIP, key="organisation_id"),
    EventType(_P + "member.joined.v1", mem.MemberJoined, MEMBERSHIP),
    EventType(_P + "member.left.v1", mem.MemberLeft, MEMBERSHIP),
    EventType(_P + "action_team.formed.v1", mem.ActionTeamFormed, MEMBERSHIP),
    EventType(_P + "action_team.changed.v1", mem.ActionTeamChanged, MEMBERSHIP),
    EventType(_P + "target.set.v1", mem.TargetSet, MEMBERSHIP),
    EventType(_P + "target.removed.v1", mem.TargetRemoved, MEMBERSHIP),
    EventType(_P + "access_key.issued.v1", mem.AccessKeyIssued, ACCESS, key="key_id"),
    EventType(_P + "access_key.revoked.v1", mem.AccessKeyRevoked, ACCESS, key="key_id"),
    # events service: activities
    EventType(_P + "activity.scheduled.v1", act.ActivityScheduled, ACTIVITIES),
    EventType(_P + "activity.rescheduled.v1", act.ActivityRescheduled, ACTIVITIES),
    EventType(_P + "activity.cancelled.v1", act.ActivityCancelled, ACTIVITIES),
    EventType(_P + "activity.completed.v1", act.ActivityCompleted, ACTIVITIES),
    EventType(_P + "attendance.recorded.v1", act.AttendanceRecorded, ACTIVITIES),
    # events service: talent outcomes and demand
    EventType(_P + "hire.recorded.v1", out.HireRecorded, OUTCOMES),
    EventType(_P + "placement.recorded.v1", out.PlacementRecorded, OUTCOMES),
    EventType(_P + "training.enrolled.v1", out.TrainingEnrolled, OUTCOMES),
    EventType(_P + "training.completed.v1", out.TrainingCompleted, OUTCOMES),
    EventType(_P + "credential.earned.v1", out.CredentialEarned, OUTCOMES),
    EventType(_P + "apprenticeship.started.v1", out.ApprenticeshipStarted, OUTCOMES),
    EventType(_P + "retention.checked.v1", out.RetentionChecked, OUTCOMES),
    EventType(_P + "separation.recorded.v1", out.SeparationRecorded, OUTCOMES),
    EventType(_P + "outcome.voided.v1", out.OutcomeVoided, OUTCOMES),
    EventType(_P + "demand.survey_responded.v1", dem.DemandSurveyResponded, DEMAND),
    # metrics and notify services
    EventType(_P + "kpi.milestone_reached.v1", sig.MilestoneReached, SIGNALS),
    EventType(_P + "notification.delivered.v1", sig.NotificationDelivered, SIGNALS),
    EventType(_P + "notification.failed.v1", sig.NotificationFailed, SIGNALS),
)


@dataclass(frozen=True)
class WebhookType:
    """An event type delivered to webhooks only: no topic, so no Kafka key, and not in AsyncAPI."""

    type: str
    model: builtins.type[EventData]  # builtins.: the field `type` above shadows the builtin here


# notify service: its own notifications, sent to subscribers' webhooks (and as e-mails), never to Kafka
WEBHOOK_TYPES: tuple[WebhookType, ...] = (
    WebhookType(_P + "notify.reminder.v1", note.ActivityReminder),
    WebhookType(_P + "notify.follow_up.v1", note.MeetingFollowUp),
    WebhookType(_P + "notify.digest.v1", note.WeeklyDigest),
)

BY_TYPE: dict[str, EventType] = {e.type: e for e in EVENT_TYPES}
BY_MODEL: dict[type[EventData], EventType] = {e.model: e for e in EVENT_TYPES}
WEBHOOK_BY_MODEL: dict[type[EventData], WebhookType] = {e.model: e for e in WEBHOOK_TYPES}
VOIDABLE_TYPES = frozenset(BY_MODEL[model].type for model in out.VOIDABLE)  # what an outcome.voided may name


def event_type_of(data: EventData) -> EventType:
    return BY_MODEL[type(data)]


def type_name(model: type[EventData]) -> str:
    """The type name of a payload model, whether it travels on a topic or on webhooks."""
    return (BY_MODEL.get(model) or WEBHOOK_BY_MODEL[model]).type
