"""The events service's rules as pure code: which events it takes in, why one is refused, and
what an accepted one changes in the service's own state (activity lifecycle, hires).

The rules look only at `Facts`: a snapshot, loaded by the store for one submission, of the
membership read model (partnerships, organisations, active members, action teams) and of the
service's own state. The read model is eventually consistent: an event naming a member whose
joining has not reached this service yet fails with a `Waiting` reason, and `hold_reason` tells
such an event (held, decided again when the roster moves) from one that can never pass.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, cast

from pydantic import BaseModel, ConfigDict

from shared.catalog import BY_MODEL, VOIDABLE_TYPES, event_type_of
from shared.contracts import activities as act
from shared.contracts import demand as dem
from shared.contracts import outcomes as out
from shared.contracts.base import ActionTeamStatus, ActivityKind, EventData, PartnershipEvent
from shared.envelope import CloudEvent, identity

FieldError = dict[str, str]  # {"field": "data.host_ids.0", "message": "..."}, as in shared.envelope

Key = tuple[str, str]  # (partnership_id, id within the partnership)


class ActivityStatus(StrEnum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class Activity(BaseModel):
    """One activity's lifecycle as far as the accepted events tell it."""

    model_config = ConfigDict(frozen=True)

    partnership_id: str
    activity_id: str
    kind: ActivityKind
    title: str
    status: ActivityStatus
    starts_at: datetime
    ends_at: datetime
    host_ids: list[str]
    action_team_id: str | None = None
    completed_at: datetime | None = None
    reschedules: int = 0


class Hire(BaseModel):
    """What later retention checks and separations of a hire are held against."""

    model_config = ConfigDict(frozen=True)

    partnership_id: str
    hire_id: str
    person_id: str
    employer_id: str
    start_date: date


@dataclass
class References:
    """The ids a submission's rules will look up, so the store loads them in a few queries."""

    partnerships: set[str] = field(default_factory=set)
    organisations: set[str] = field(default_factory=set)
    members: set[Key] = field(default_factory=set)  # (partnership, organisation)
    action_teams: set[Key] = field(default_factory=set)
    activities: set[Key] = field(default_factory=set)
    hires: set[Key] = field(default_factory=set)
    records: set[str] = field(default_factory=set)  # accepted events (by `identity`) that voids name


@dataclass
class Facts:
    """The looked-up state, plus what the submission's accepted events have changed so far."""

    partnerships: set[str] = field(default_factory=set)
    organisations: set[str] = field(default_factory=set)
    members: set[Key] = field(default_factory=set)  # active members only
    action_teams: dict[Key, ActionTeamStatus] = field(default_factory=dict)
    activities: dict[Key, Activity] = field(default_factory=dict)
    hires: dict[Key, Hire] = field(default_factory=dict)
    records: dict[str, dict] = field(default_factory=dict)  # identity -> the accepted event, as stored
    changed_activities: set[Key] = field(default_factory=set)
    new_hires: list[Hire] = field(default_factory=list)
    voided: dict[str, str] = field(default_factory=dict)  # identity of a voided record -> id of its void
    removed_hires: set[Key] = field(default_factory=set)  # hires voided: their ids may be recorded again


class Waiting(StrEnum):
    """Why a well-formed event may still pass later: something it names has not reached this
    service yet (a roster change on backbone.membership, or an activity or hire not recorded yet)."""

    UNKNOWN_PARTNERSHIP = "unknown_partnership"
    UNKNOWN_ORGANISATION = "unknown_organisation"
    NOT_A_MEMBER = "not_a_member"
    UNKNOWN_ACTION_TEAM = "unknown_action_team"
    UNKNOWN_ACTIVITY = "unknown_activity"
    UNKNOWN_HIRE = "unknown_hire"


def record_of(event: CloudEvent) -> dict:
    """An accepted event as the store keeps it: who sent it, when, and what it says (lineage rows
    and voids read it back). Its identity is the _id: each event is accepted once."""
    return {"_id": identity(event.source, event.id), "source": event.source, "id": event.id, "type": event.type,
            "time": event.time, "partnership_id": partnership_of(event.data),
            "data": event.data.model_dump(mode="json", exclude_none=True)}


def references(events: Iterable[EventData]) -> References:
    refs = References()
    for data in events:
        # A model's fields are its __dict__: getattr of a field the type lacks would go through
        # pydantic's __getattr__ and raise, six times per event here.
        fields = vars(data)
        pid = fields.get("partnership_id")
        if pid is None:
            continue
        refs.partnerships.add(pid)
        for name in ("employer_id", "provider_id"):
            if organisation := fields.get(name):
                refs.organisations.add(organisation)
        for name in ("activity_id", "source_activity_id"):
            if activity := fields.get(name):
                refs.activities.add((pid, activity))
        if hire := fields.get("hire_id"):
            refs.hires.add((pid, hire))
        if team := fields.get("action_team_id"):
            refs.action_teams.add((pid, team))
        if isinstance(data, out.OutcomeVoided):
            refs.records.add(identity(data.voided_source, data.voided_id))
        refs.members.update((pid, host) for host in fields.get("host_ids", ()))
    return refs


def read_by(refs: References, identities: Iterable[str]) -> set[tuple[str, object]]:
    """What deciding events reads of the state that deciding others changes: the events themselves
    (sent before? held?) and the records, activities and hires they name."""
    return ({("event", i) for i in (*identities, *refs.records)} | {("activity", k) for k in refs.activities}
            | {("hire", k) for k in refs.hires})


def changed_by(facts: Facts, identities: Iterable[str]) -> set[tuple[str, object]]:
    """What deciding these events (`identities`, whatever became of each) changed, by the
    `facts` they left: the events, the records they void, the activities and hires they change."""
    return ({("event", i) for i in (*identities, *facts.voided)}
            | {("activity", k) for k in facts.changed_activities}
            | {("hire", k) for k in (*((h.partnership_id, h.hire_id) for h in facts.new_hires), *facts.removed_hires)})


def _error(field: str, message: str) -> FieldError:
    return {"field": f"data.{field}", "message": message}


def _waiting(field: str, message: str, reason: Waiting) -> FieldError:
    """An error that may go away by itself: `reason` says what the event waits for."""
    return _error(field, message) | {"reason": reason.value}


def hold_reason(errors: list[FieldError]) -> str | None:
    """Why to hold an event and decide it again later (the first error's `Waiting` reason), or
    None when it has no errors or any of them can never pass (a wrong kind, a closed team, an
    id already used, a type this service does not take in): that one is refused at once."""
    reasons = [error.get("reason") for error in errors]
    return reasons[0] if reasons and all(reasons) else None


def _unknown_organisation(name: str, organisation: str, facts: Facts) -> list[FieldError]:
    if organisation in facts.organisations:
        return []
    return [_waiting(name, f"unknown organisation {organisation!r}: not registered, or its registration "
                           "has not reached the events service yet", Waiting.UNKNOWN_ORGANISATION)]


# --- activities -----------------------------------------------------------------------------

def _schedulable(data: act.ActivityScheduled, facts: Facts) -> list[FieldError]:
    pid = data.partnership_id
    errors = []
    if (pid, data.activity_id) in facts.activities:
        errors.append(_error("activity_id", "this activity is already scheduled in the partnership"))
    for i, host in enumerate(data.host_ids):
        if (pid, host) not in facts.members:
            errors.append(_waiting(f"host_ids.{i}", f"{host!r} is not an active member of partnership {pid!r} "
                                                    "(or its joining has not reached the events service yet)",
                                   Waiting.NOT_A_MEMBER))
    if data.action_team_id is not None:
        status = facts.action_teams.get((pid, data.action_team_id))
        if status is None:
            errors.append(_waiting("action_team_id", f"no such action team in partnership {pid!r}",
                                   Waiting.UNKNOWN_ACTION_TEAM))
        elif status is ActionTeamStatus.CLOSED:
            errors.append(_error("action_team_id", "this action team is closed"))
    return errors


def _scheduled_activity(data, facts: Facts) -> tuple[Activity | None, list[FieldError]]:
    """The activity an event refers to, if it is still scheduled (not cancelled, not completed)."""
    activity = facts.activities.get((data.partnership_id, data.activity_id))
    if activity is None:
        return None, [_waiting("activity_id", "no such activity in this partnership: schedule it first",
                               Waiting.UNKNOWN_ACTIVITY)]
    if activity.status is not ActivityStatus.SCHEDULED:
        return None, [_error("activity_id", f"the activity is already {activity.status.value}")]
    return activity, []


def _still_scheduled(data: act.ActivityRescheduled | act.ActivityCancelled, facts: Facts) -> list[FieldError]:
    return _scheduled_activity(data, facts)[1]


def _completable(data: act.ActivityCompleted, facts: Facts) -> list[FieldError]:
    activity, errors = _scheduled_activity(data, facts)
    if activity is None:
        return errors
    if data.kind != activity.kind:
        errors.append(_error("kind", f"the activity was scheduled as {activity.kind.value!r}"))
    if data.completed_at < activity.starts_at:
        errors.append(_error("completed_at", "before the activity's scheduled start"))
    return errors


def _attendance_recordable(data: act.AttendanceRecorded, facts: Facts) -> list[FieldError]:
    activity = facts.activities.get((data.partnership_id, data.activity_id))
    if activity is None:
        return [_waiting("activity_id", "no such activity in this partnership", Waiting.UNKNOWN_ACTIVITY)]
    if activity.status is ActivityStatus.CANCELLED:
        return [_error("activity_id", "the activity was cancelled")]
    if data.kind != activity.kind:
        return [_error("kind", f"the activity was scheduled as {activity.kind.value!r}")]
    return []


# --- talent outcomes and demand -------------------------------------------------------------

def _hire_recordable(data: out.HireRecorded, facts: Facts) -> list[FieldError]:
    errors = _unknown_organisation("employer_id", data.employer_id, facts)
    if (data.partnership_id, data.hire_id) in facts.hires:
        errors.append(_error("hire_id", "this hire is already recorded in the partnership"))
    if data.source_activity_id and (data.partnership_id, data.source_activity_id) not in facts.activities:
        errors.append(_waiting("source_activity_id", "no such activity in this partnership", Waiting.UNKNOWN_ACTIVITY))
    return errors


def _after_hire(data: out.RetentionChecked | out.SeparationRecorded, on: date, on_field: str, facts: Facts,
                *, strictly: bool) -> list[FieldError]:
    """Retention and separation speak of a recorded hire: same person, same employer, later date."""
    hire = facts.hires.get((data.partnership_id, data.hire_id))
    if hire is None:
        return [_waiting("hire_id", "no such hire recorded in this partnership", Waiting.UNKNOWN_HIRE)]
    errors = []
    if data.employer_id != hire.employer_id:
        errors.append(_error("employer_id", "not the employer of this hire"))
    if data.person_id != hire.person_id:
        errors.append(_error("person_id", "not the person of this hire"))  # never echo person ids
    if on < hire.start_date or (strictly and on == hire.start_date):
        errors.append(_error(on_field, "not after the hire's start date"))
    return errors


def _retention_checkable(data: out.RetentionChecked, facts: Facts) -> list[FieldError]:
    return _after_hire(data, data.checked_on, "checked_on", facts, strictly=True)


def _separation_recordable(data: out.SeparationRecorded, facts: Facts) -> list[FieldError]:
    return _after_hire(data, data.separated_on, "separated_on", facts, strictly=False)


def _placement_recordable(data: out.PlacementRecorded, facts: Facts) -> list[FieldError]:
    return (_unknown_organisation("employer_id", data.employer_id, facts)
            + _unknown_organisation("provider_id", data.provider_id, facts))


HIRE_TYPE = BY_MODEL[out.HireRecorded].type
VOID_TYPE = BY_MODEL[out.OutcomeVoided].type


def _voidable(data: out.OutcomeVoided, facts: Facts) -> list[FieldError]:
    """A void names an outcome of its own partnership, accepted and not voided yet."""
    if data.voided is not None:
        return [_error("voided", "set by the events service from the record named: leave it out")]
    record_identity = identity(data.voided_source, data.voided_id)
    record = facts.records.get(record_identity)
    if record is None or record["partnership_id"] != data.partnership_id:
        return [_error("voided_id", "no record with this source and id was accepted in this partnership")]
    if record["type"] not in VOIDABLE_TYPES:
        return [_error("voided_id", "only hires, placements, training, credentials and apprenticeships can be voided")]
    if "data" not in record:
        return [_error("voided_id", "recorded before the events service kept what records say: it cannot be voided")]
    if record.get("voided_by") or record_identity in facts.voided:
        return [_error("voided_id", "this record is voided already")]
    return []


def completed(data: EventData, facts: Facts) -> EventData:
    """The event as published: a void carries what the record it takes back said."""
    if not isinstance(data, out.OutcomeVoided):
        return data
    record = facts.records[identity(data.voided_source, data.voided_id)]
    time = record["time"] if record["time"].tzinfo else record["time"].replace(tzinfo=UTC)  # MongoDB's are naive UTC
    return data.model_copy(update={"voided": out.VoidedRecord(type=record["type"], time=time, data=record["data"])})


def _provider_known(data, facts: Facts) -> list[FieldError]:
    return _unknown_organisation("provider_id", data.provider_id, facts)


def _employer_known(data, facts: Facts) -> list[FieldError]:
    return _unknown_organisation("employer_id", data.employer_id, facts)


# The event types this service takes in (all of backbone.activities, .outcomes, .demand) and their rules
# (each rule takes its own event type, hence Any).
RULES: dict[type[EventData], Callable[[Any, Facts], list[FieldError]]] = {
    act.ActivityScheduled: _schedulable,
    act.ActivityRescheduled: _still_scheduled,
    act.ActivityCancelled: _still_scheduled,
    act.ActivityCompleted: _completable,
    act.AttendanceRecorded: _attendance_recordable,
    out.HireRecorded: _hire_recordable,
    out.PlacementRecorded: _placement_recordable,
    out.TrainingEnrolled: _provider_known,
    out.TrainingCompleted: _provider_known,
    out.CredentialEarned: _provider_known,
    out.ApprenticeshipStarted: _employer_known,
    out.RetentionChecked: _retention_checkable,
    out.SeparationRecorded: _separation_recordable,
    out.OutcomeVoided: _voidable,
    dem.DemandSurveyResponded: _employer_known,
}


def partnership_of(data: EventData) -> str:
    """The partnership of an event this service took in: every type in RULES belongs to one."""
    return cast(PartnershipEvent, data).partnership_id


def check(data: EventData, facts: Facts) -> list[FieldError]:
    """Why this event cannot be accepted now; empty when it can."""
    rules = RULES.get(type(data))
    if rules is None or not isinstance(data, PartnershipEvent):  # every type in RULES is a partnership's
        return [{"field": "type", "message": f"the events service does not take in {event_type_of(data).type}"}]
    if data.partnership_id not in facts.partnerships:
        return [_waiting("partnership_id", f"unknown partnership {data.partnership_id!r}: not created, or its "
                                           "creation has not reached the events service yet (retry later)",
                         Waiting.UNKNOWN_PARTNERSHIP)]
    return rules(data, facts)


def apply(data: EventData, facts: Facts, event_id: str) -> None:
    """Record an accepted event's effect in `facts`, so later events of the same submission see it.
    `event_id`: the event's own id, which a void leaves on the record it takes back."""
    match data:
        case act.ActivityScheduled():
            activity = Activity(
                partnership_id=data.partnership_id, activity_id=data.activity_id, kind=data.kind,
                title=data.title, status=ActivityStatus.SCHEDULED, starts_at=data.starts_at,
                ends_at=data.ends_at, host_ids=data.host_ids, action_team_id=data.action_team_id,
            )
        case act.ActivityRescheduled():
            current = facts.activities[(data.partnership_id, data.activity_id)]
            activity = current.model_copy(update={"starts_at": data.starts_at, "ends_at": data.ends_at,
                                                  "reschedules": current.reschedules + 1})
        case act.ActivityCancelled():
            activity = facts.activities[(data.partnership_id, data.activity_id)].model_copy(
                update={"status": ActivityStatus.CANCELLED})
        case act.ActivityCompleted():
            activity = facts.activities[(data.partnership_id, data.activity_id)].model_copy(
                update={"status": ActivityStatus.COMPLETED, "completed_at": data.completed_at})
        case out.HireRecorded():
            hire = Hire(partnership_id=data.partnership_id, hire_id=data.hire_id, person_id=data.person_id,
                        employer_id=data.employer_id, start_date=data.start_date)
            facts.hires[(hire.partnership_id, hire.hire_id)] = hire
            facts.new_hires.append(hire)
            return
        case out.OutcomeVoided():
            record_identity = identity(data.voided_source, data.voided_id)
            facts.voided[record_identity] = event_id
            voided = facts.records[record_identity]
            if voided["type"] == HIRE_TYPE:
                key = (data.partnership_id, voided["data"]["hire_id"])
                facts.hires.pop(key, None)
                facts.new_hires = [h for h in facts.new_hires if (h.partnership_id, h.hire_id) != key]
                facts.removed_hires.add(key)
            return
        case _:
            return  # attendance, other outcomes and demand change no state of this service
    key = (activity.partnership_id, activity.activity_id)
    facts.activities[key] = activity
    facts.changed_activities.add(key)
