"""The events service's rules, as pure code: each rule, and a submission seeing its own effects."""

from datetime import date, timedelta

import pytest

from services.events.domain import (
    RULES,
    ActivityStatus,
    Facts,
    apply,
    changed_by,
    check,
    completed,
    identity,
    read_by,
    record_of,
    references,
)
from shared.catalog import ACTIVITIES, DEMAND, EVENT_TYPES, OUTCOMES
from shared.contracts import activities as act
from shared.contracts import demand as dem
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.contracts.base import ActionTeamStatus
from shared.envelope import new_event
from tests.examples import EXAMPLES, T0, T1, P, example

HOUR = timedelta(hours=1)


@pytest.fixture
def facts() -> Facts:
    """The roster of the examples: microboard an active member of sw-mp, qvcc a registered college."""
    return Facts(partnerships={P}, organisations={"microboard", "qvcc"}, members={(P, "microboard")},
                 action_teams={(P, "sw-hub"): ActionTeamStatus.ACTIVE, (P, "old"): ActionTeamStatus.CLOSED})


def fields(data, facts) -> list[str]:
    return [e["field"] for e in check(data, facts)]


def scheduled(facts: Facts, **changes) -> Facts:
    data = example(act.ActivityScheduled, **changes)
    assert check(data, facts) == []
    apply(data, facts, "tour")
    return facts


def test_rules_cover_exactly_the_topics_of_the_service():
    owned = {e.model for e in EVENT_TYPES if e.topic in (ACTIVITIES, OUTCOMES, DEMAND)}
    assert set(RULES) == owned


def test_other_types_and_unknown_partnerships_are_refused(facts):
    assert fields(EXAMPLES[mem.MemberJoined], facts) == ["type"]
    assert "org.backbone.member.joined.v1" in check(EXAMPLES[mem.MemberJoined], facts)[0]["message"]
    errors = check(example(out.HireRecorded, partnership_id="elsewhere"), facts)
    assert [e["field"] for e in errors] == ["data.partnership_id"]
    assert "retry later" in errors[0]["message"]


def test_hosts_must_be_active_members_and_teams_open(facts):
    assert check(EXAMPLES[act.ActivityScheduled], facts) == []
    tour = example(act.ActivityScheduled, host_ids=["microboard", "newco"], action_team_id="old")
    assert fields(tour, facts) == ["data.host_ids.1", "data.action_team_id"]
    assert fields(example(act.ActivityScheduled, action_team_id="nope"), facts) == ["data.action_team_id"]
    # A member of another partnership hosts nothing here.
    assert fields(example(act.ActivityScheduled, partnership_id="scmip", host_ids=["microboard"]),
                  Facts(partnerships={"scmip"}, members={(P, "microboard")})) == ["data.host_ids.0"]


def test_lifecycle_needs_a_scheduled_activity(facts):
    for model in (act.ActivityRescheduled, act.ActivityCancelled, act.ActivityCompleted, act.AttendanceRecorded):
        assert fields(EXAMPLES[model], facts) == ["data.activity_id"], model
    scheduled(facts)
    assert fields(EXAMPLES[act.ActivityScheduled], facts) == ["data.activity_id"]  # not twice
    apply(EXAMPLES[act.ActivityCancelled], facts, "cancel")
    for model in (act.ActivityRescheduled, act.ActivityCancelled, act.ActivityCompleted, act.AttendanceRecorded):
        errors = check(EXAMPLES[model], facts)
        assert [e["field"] for e in errors] == ["data.activity_id"] and "cancelled" in errors[0]["message"]


def test_completion_after_the_scheduled_start_and_of_the_same_kind(facts):
    scheduled(facts)
    moved = example(act.ActivityRescheduled, starts_at=T0 + 24 * HOUR, ends_at=T1 + 24 * HOUR)
    assert check(moved, facts) == []
    apply(moved, facts, "move")
    assert fields(example(act.ActivityCompleted, completed_at=T1), facts) == ["data.completed_at"]
    assert fields(example(act.ActivityCompleted, completed_at=T1 + 24 * HOUR, kind="career_day"), facts) == [
        "data.kind"
    ]
    done = example(act.ActivityCompleted, completed_at=T1 + 24 * HOUR)
    assert check(done, facts) == []
    apply(done, facts, "done")
    activity = facts.activities[(P, "tour-1")]
    assert (activity.status, activity.reschedules, activity.starts_at) == (ActivityStatus.COMPLETED, 1, T0 + 24 * HOUR)
    assert facts.changed_activities == {(P, "tour-1")}
    assert check(EXAMPLES[act.AttendanceRecorded], facts) == []  # attendance comes after the event
    assert fields(example(act.AttendanceRecorded, kind="career_day"), facts) == ["data.kind"]
    assert fields(EXAMPLES[act.ActivityCancelled], facts) == ["data.activity_id"]


def test_outcomes_need_known_organisations(facts):
    for model in (out.HireRecorded, out.PlacementRecorded, out.TrainingEnrolled, out.TrainingCompleted,
                  out.CredentialEarned, out.ApprenticeshipStarted, dem.DemandSurveyResponded):
        assert check(EXAMPLES[model], facts) == [], model
    assert fields(example(out.HireRecorded, employer_id="acme"), facts) == ["data.employer_id"]
    assert fields(example(out.PlacementRecorded, employer_id="acme", provider_id="nope"), facts) == \
        ["data.employer_id", "data.provider_id"]
    assert fields(example(out.CredentialEarned, provider_id="nope"), facts) == ["data.provider_id"]
    assert fields(example(out.ApprenticeshipStarted, employer_id="acme"), facts) == ["data.employer_id"]
    assert fields(example(dem.DemandSurveyResponded, employer_id="acme"), facts) == ["data.employer_id"]
    assert fields(example(out.HireRecorded, source_activity_id="fair-9"), facts) == ["data.source_activity_id"]


def test_retention_and_separation_follow_a_recorded_hire(facts):
    hire = EXAMPLES[out.HireRecorded]
    assert fields(EXAMPLES[out.RetentionChecked], facts) == ["data.hire_id"]
    apply(hire, facts, "hire-1")
    assert [h.hire_id for h in facts.new_hires] == ["h-1"]
    assert fields(hire, facts) == ["data.hire_id"]  # the same hire twice
    assert check(EXAMPLES[out.RetentionChecked], facts) == []
    assert check(EXAMPLES[out.SeparationRecorded], facts) == []
    wrong = example(out.RetentionChecked, employer_id="qvcc", person_id="p-99", checked_on=hire.start_date)
    errors = check(wrong, facts)
    assert [e["field"] for e in errors] == ["data.employer_id", "data.person_id", "data.checked_on"]
    assert "p-99" not in str(errors)  # person ids are never echoed
    assert check(example(out.SeparationRecorded, separated_on=hire.start_date), facts) == []
    assert fields(example(out.SeparationRecorded, separated_on=hire.start_date - timedelta(days=1)), facts) == \
        ["data.separated_on"]


def test_references_name_what_the_rules_will_look_up():
    refs = references([example(act.ActivityScheduled, action_team_id="sw-hub"),
                       example(out.HireRecorded, source_activity_id="fair-9"), EXAMPLES[out.PlacementRecorded],
                       EXAMPLES[mem.AccessKeyIssued]])
    assert refs.partnerships == {P}
    assert refs.members == {(P, "microboard")}
    assert refs.action_teams == {(P, "sw-hub")}
    assert refs.activities == {(P, "tour-1"), (P, "fair-9")}
    assert refs.hires == {(P, "h-1")}
    assert refs.organisations == {"microboard", "qvcc"}


def recorded(facts: Facts, data, source: str = "/ats", event_id: str = "hire-1") -> str:
    """Accept `data` as the intake does, so later voids can name it; its identity."""
    assert check(data, facts) == []
    apply(data, facts, event_id)
    event = new_event(data, source=source, id=event_id)
    facts.records[identity(source, event_id)] = record_of(event)
    return identity(source, event_id)


def test_a_void_names_an_accepted_outcome_of_its_partnership_once(facts):
    hire = recorded(facts, EXAMPLES[out.HireRecorded])
    void = example(out.OutcomeVoided, voided_source="/ats", voided_id="hire-1")
    assert references([void]).records == {hire}
    assert fields(example(out.OutcomeVoided, voided_id="never-sent"), facts) == ["data.voided_id"]
    assert fields(example(out.OutcomeVoided, voided_source="/other-ats"), facts) == ["data.voided_id"]
    assert check(void, facts) == []
    # What the record said travels with the void, so the metrics service undoes exactly that.
    published = completed(void, facts)
    assert published.voided.type == "org.backbone.hire.recorded.v1"
    assert published.voided.data["hire_id"] == "h-1" and published.voided.time.tzinfo is not None
    apply(published, facts, "void-1")
    assert facts.voided == {hire: "void-1"}  # the void's id, left on the record it takes back
    assert "already" in check(void, facts)[0]["message"]  # voided once, however often it is asked


def test_a_voided_hire_may_be_recorded_again_and_later_outcomes_wait_for_it(facts):
    recorded(facts, EXAMPLES[out.HireRecorded])
    apply(completed(example(out.OutcomeVoided, voided_id="hire-1"), facts), facts, "void-1")
    assert (P, "h-1") in facts.removed_hires and (P, "h-1") not in facts.hires
    assert fields(EXAMPLES[out.RetentionChecked], facts) == ["data.hire_id"]
    assert check(example(out.HireRecorded, start_date=date(2026, 4, 2)), facts) == []  # the corrected hire


def test_only_outcomes_that_add_to_counts_are_voidable_and_only_in_their_partnership(facts):
    scheduled(facts)
    facts.records[identity("/ats", "tour")] = record_of(new_event(EXAMPLES[act.ActivityScheduled], source="/ats",
                                                                  id="tour"))
    assert "only hires" in check(example(out.OutcomeVoided, voided_id="tour"), facts)[0]["message"]
    recorded(facts, EXAMPLES[out.HireRecorded])
    other = Facts(partnerships={"scmip"}, records=facts.records)
    assert [e["field"] for e in check(example(out.OutcomeVoided, partnership_id="scmip", voided_id="hire-1"),
                                      other)] == ["data.voided_id"]
    sent_with_data = example(out.OutcomeVoided, voided_id="hire-1").model_copy(
        update={"voided": out.VoidedRecord(type="x", time=T0, data={})})
    assert fields(sent_with_data, facts) == ["data.voided"]


def test_a_group_reads_what_another_changed_only_through_the_events_activities_hires_and_records_they_share(facts):
    """What lets the intake decide a group while the one before it is stored: the later group reads
    nothing the earlier one changed (then its rules come out the same either way)."""
    hire = recorded(facts, EXAMPLES[out.HireRecorded])  # h-1
    scheduled(facts)  # tour-1
    changed = changed_by(facts, [hire, identity("/ats", "refused-1")])

    def reads(data, event_identity: str = identity("/ats", "later")) -> set:
        return read_by(references([data]), [event_identity]) & changed

    assert not reads(example(out.HireRecorded, hire_id="h-2"))  # another hire
    assert not reads(example(act.ActivityScheduled, activity_id="fair-9"))  # another activity
    assert reads(example(out.HireRecorded)) == {("hire", (P, "h-1"))}  # the same hire id
    assert reads(EXAMPLES[out.RetentionChecked]) == {("hire", (P, "h-1"))}  # of the hire recorded
    assert reads(EXAMPLES[act.ActivityCompleted]) == {("activity", (P, "tour-1"))}  # the tour scheduled
    assert reads(example(out.HireRecorded, hire_id="h-2"), hire) == {("event", hire)}  # the same event again
    assert reads(example(out.HireRecorded, hire_id="h-2"), identity("/ats", "refused-1"))  # refused or held there
    void = example(out.OutcomeVoided, voided_source="/ats", voided_id="hire-1")
    assert reads(void) == {("event", hire)}  # voids a record accepted there

    apply(completed(void, facts), facts, "void-1")
    after_void = changed_by(facts, [])
    assert read_by(references([void]), []) & after_void == {("event", hire)}  # a record voided there
    assert read_by(references([example(out.HireRecorded)]), []) & after_void == {("hire", (P, "h-1"))}  # removed
