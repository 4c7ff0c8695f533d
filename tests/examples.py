"""One valid example payload per catalogue event type (the webhook-only ones in WEBHOOK_EXAMPLES),
for round-trip tests and as a starting point for scenario tests. Ids are opaque; people exist only
as pseudonymous ids."""

from datetime import UTC, date, datetime

import orjson

from shared.contracts import activities as act
from shared.contracts import demand as dem
from shared.contracts import membership as mem
from shared.contracts import notifications as note
from shared.contracts import outcomes as out
from shared.contracts import signals as sig
from shared.contracts.base import EventData
from shared.envelope import new_event

P = "sw-mp"
T0 = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 10, 16, 0, tzinfo=UTC)

_PARTNERSHIP = dict(partnership_id=P, name="Southwest Region Manufacturing Partnership", region_id="ct-southwest",
                    sector_id="manufacturing", stage="launched", launch_date=date(2021, 6, 1),
                    priorities=["Leadership and Steering", "MakeItCT"])
_ORGANISATION = dict(organisation_id="microboard", name="Microboard", kind="employer", size_band="50-249",
                     naics="334418", county="Fairfield", state="CT")
_TEAM = dict(partnership_id=P, action_team_id="sw-hub", name="Regional Hub Building", status="active",
             member_ids=["microboard"])

EXAMPLES: dict[type[EventData], EventData] = {
    mem.RegionDefined: mem.RegionDefined(region_id="ct-southwest", name="Southwest Connecticut", state="CT"),
    mem.SectorDefined: mem.SectorDefined(sector_id="manufacturing", name="Manufacturing", naics=["31", "32", "33"]),
    mem.PartnershipCreated: mem.PartnershipCreated(**_PARTNERSHIP),
    mem.PartnershipUpdated: mem.PartnershipUpdated(**_PARTNERSHIP | {"stage": "sustaining"}),
    mem.OrganisationRegistered: mem.OrganisationRegistered(**_ORGANISATION),
    mem.OrganisationUpdated: mem.OrganisationUpdated(**_ORGANISATION | {"size_band": "250-999"}),
    mem.MemberJoined: mem.MemberJoined(partnership_id=P, membership_id="m-1", organisation_id="microboard",
                                       organisation_kind="employer", role="champion", joined_on=date(2021, 6, 15)),
    mem.MemberLeft: mem.MemberLeft(partnership_id=P, membership_id="m-1", organisation_id="microboard",
                                   organisation_kind="employer", left_on=date(2025, 1, 31)),
    mem.ActionTeamFormed: mem.ActionTeamFormed(**_TEAM),
    mem.ActionTeamChanged: mem.ActionTeamChanged(**_TEAM | {"status": "paused"}),
    mem.TargetSet: mem.TargetSet(partnership_id=P, kpi="hires", period="PY2025", value=40),
    mem.TargetRemoved: mem.TargetRemoved(partnership_id=P, kpi="hires", period="PY2025"),
    mem.AccessKeyIssued: mem.AccessKeyIssued(key_id="k-1", key_hash="0" * 64, role="partner_system",
                                             partnership_ids=[P], label="ATS of SW"),
    mem.AccessKeyRevoked: mem.AccessKeyRevoked(key_id="k-1"),
    act.ActivityScheduled: act.ActivityScheduled(partnership_id=P, activity_id="tour-1", kind="plant_tour",
                                                 title="Plant tour at Microboard", starts_at=T0, ends_at=T1,
                                                 host_ids=["microboard"], audiences=["students", "parents"],
                                                 capacity=40),
    act.ActivityRescheduled: act.ActivityRescheduled(partnership_id=P, activity_id="tour-1", starts_at=T0, ends_at=T1),
    act.ActivityCancelled: act.ActivityCancelled(partnership_id=P, activity_id="tour-1", reason="snow day"),
    act.ActivityCompleted: act.ActivityCompleted(partnership_id=P, activity_id="tour-1", kind="plant_tour",
                                                 completed_at=T1, participant_ids=["microboard"]),
    act.AttendanceRecorded: act.AttendanceRecorded(partnership_id=P, activity_id="tour-1", kind="plant_tour",
                                                   counts={"students": 31, "parents": 6}, person_ids=["p-81"]),
    out.HireRecorded: out.HireRecorded(partnership_id=P, hire_id="h-1", person_id="p-81", employer_id="microboard",
                                       soc_code="51-4041", start_date=date(2026, 4, 1), hourly_wage=24.5,
                                       resident=True),
    out.PlacementRecorded: out.PlacementRecorded(partnership_id=P, placement_id="pl-1", person_id="p-82",
                                                 programme_id="mpi-2026", provider_id="qvcc", employer_id="microboard",
                                                 soc_code="51-2092", start_date=date(2026, 5, 4)),
    out.TrainingEnrolled: out.TrainingEnrolled(partnership_id=P, person_id="p-82", programme_id="mpi-2026",
                                               provider_id="qvcc", enrolled_on=date(2026, 1, 12)),
    out.TrainingCompleted: out.TrainingCompleted(partnership_id=P, person_id="p-82", programme_id="mpi-2026",
                                                 provider_id="qvcc", completed_on=date(2026, 4, 24)),
    out.CredentialEarned: out.CredentialEarned(partnership_id=P, person_id="p-82", credential="NIMS Machining Level I",
                                               provider_id="qvcc", earned_on=date(2026, 4, 24)),
    out.ApprenticeshipStarted: out.ApprenticeshipStarted(partnership_id=P, person_id="p-83", employer_id="microboard",
                                                         soc_code="51-4041", started_on=date(2026, 6, 1)),
    out.RetentionChecked: out.RetentionChecked(partnership_id=P, hire_id="h-1", person_id="p-81",
                                               employer_id="microboard", checked_on=date(2026, 6, 30),
                                               still_employed=True),
    out.SeparationRecorded: out.SeparationRecorded(partnership_id=P, hire_id="h-1", person_id="p-81",
                                                   employer_id="microboard", separated_on=date(2026, 9, 1)),
    out.OutcomeVoided: out.OutcomeVoided(partnership_id=P, voided_source="/ats", voided_id="hire-1",
                                         reason="recorded twice under two ids"),
    dem.DemandSurveyResponded: dem.DemandSurveyResponded(
        partnership_id=P, survey_round="2026-spring", employer_id="microboard", responded_on=date(2026, 3, 2),
        openings=[dem.ExpectedOpenings(soc_code="51-4041", openings=6, skills=["CNC setup", "blueprint reading"])]),
    sig.MilestoneReached: sig.MilestoneReached(partnership_id=P, kpi="hires", period="PY2025", value=40,
                                               threshold=40, reason="target"),
    sig.NotificationDelivered: sig.NotificationDelivered(partnership_id=P, subscription_id="s-1", event_id="e-1",
                                                         channel="webhook", attempts=1),
    sig.NotificationFailed: sig.NotificationFailed(partnership_id=P, subscription_id="s-1", event_id="e-1",
                                                   channel="webhook", attempts=9, reason="HTTP 503"),
}

_KPIS = note.KpiMovement(available=True, period="PY2025", movement=[
    note.KpiChange(kpi="hires", value=12, change=3), note.KpiChange(kpi="placements", value=4, change=None)])

# notify's own notifications, which travel on webhooks only (the catalogue's WEBHOOK_TYPES).
WEBHOOK_EXAMPLES: dict[type[EventData], EventData] = {
    note.ActivityReminder: note.ActivityReminder(
        partnership_id=P, activity_id="tour-1", kind="plant_tour", title="Microboard plant tour", starts_at=T0,
        ends_at=T1, sites=["Microboard, Danbury"], host_ids=["microboard"], lead_seconds=7200),
    note.MeetingFollowUp: note.MeetingFollowUp(
        partnership_id=P, activity_id="meeting-1", title="Quarterly partnership meeting", completed_at=T1,
        participant_ids=["microboard"], minutes=None,
        follow_ups=[act.FollowUp(title="Share the apprenticeship plan", owner_id="microboard", due=date(2026, 4, 1)),
                    act.FollowUp(title="Book the next tour")]),
    note.WeeklyDigest: note.WeeklyDigest(
        partnership_id=P, week="2026-W11", since=datetime(2026, 3, 2, tzinfo=UTC),
        until=datetime(2026, 3, 9, tzinfo=UTC),
        happened=note.WeekHappenings(counts={"org.backbone.member.joined.v1": 1}, new_members=["microboard"],
                                     milestones=[note.MilestoneNote(kpi="hires", period="PY2025", value=40,
                                                                    reason="target")]),
        coming=[note.ComingActivity(activity_id="tour-1", title="Microboard plant tour", kind="plant_tour",
                                    starts_at=T0)],
        kpis=_KPIS),
}


def example(model, **changes):
    """The catalogue example of `model` with some fields changed, validated like a real event."""
    return model.model_validate(EXAMPLES[model].model_dump() | changes)


def hire_batch(prefix: str, count: int, source: str) -> bytes:
    """A CloudEvents batch body of `count` distinct hires of the example's employer."""
    hires = (example(out.HireRecorded, hire_id=f"{prefix}-{i}", person_id=f"{prefix}-{i}") for i in range(count))
    return orjson.dumps([orjson.loads(new_event(hire, source=source).to_json()) for hire in hires])
