"""Which refused events may pass later (held and decided again) and which never can (refused or
dead-lettered at once): `domain.hold_reason` over the rules' own errors."""

from services.events.domain import Facts, Waiting, apply, check, hold_reason
from shared.contracts import activities as act
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.contracts.base import ActionTeamStatus
from tests.examples import EXAMPLES, P

HIRE = EXAMPLES[out.HireRecorded]
TOUR = EXAMPLES[act.ActivityScheduled]


def roster() -> Facts:
    return Facts(partnerships={P}, organisations={"microboard", "qvcc"}, members={(P, "microboard")},
                 action_teams={(P, "sw-hub"): ActionTeamStatus.ACTIVE, (P, "old"): ActionTeamStatus.CLOSED})


def reason(data, facts: Facts | None = None) -> str | None:
    return hold_reason(check(data, facts or roster()))


def test_what_waits_for_the_roster_is_held_with_its_reason():
    assert reason(HIRE.model_copy(update={"employer_id": "acme"})) == Waiting.UNKNOWN_ORGANISATION
    assert reason(HIRE.model_copy(update={"partnership_id": "new-rsp"})) == Waiting.UNKNOWN_PARTNERSHIP
    assert reason(TOUR.model_copy(update={"host_ids": ["newco"]})) == Waiting.NOT_A_MEMBER
    assert reason(TOUR.model_copy(update={"action_team_id": "just-formed"})) == Waiting.UNKNOWN_ACTION_TEAM


def test_what_waits_for_an_earlier_event_is_held():
    assert reason(EXAMPLES[act.AttendanceRecorded]) == Waiting.UNKNOWN_ACTIVITY  # the tour not scheduled yet
    assert reason(EXAMPLES[act.ActivityCompleted]) == Waiting.UNKNOWN_ACTIVITY
    assert reason(EXAMPLES[out.RetentionChecked]) == Waiting.UNKNOWN_HIRE
    assert reason(HIRE.model_copy(update={"source_activity_id": "fair-9"})) == Waiting.UNKNOWN_ACTIVITY


def test_what_can_never_pass_is_not_held():
    facts = roster()
    assert reason(EXAMPLES[mem.MemberJoined], facts) is None  # not a type this service takes in
    assert reason(TOUR.model_copy(update={"action_team_id": "old"}), facts) is None  # a closed team stays closed
    apply(TOUR, facts, "tour")
    assert reason(TOUR, facts) is None  # the activity id is taken
    assert reason(EXAMPLES[act.AttendanceRecorded].model_copy(update={"kind": "career_day"}), facts) is None
    apply(HIRE, facts, "hire")
    assert reason(EXAMPLES[out.RetentionChecked].model_copy(update={"employer_id": "qvcc"}), facts) is None


def test_one_error_that_can_never_pass_refuses_the_event():
    tour = TOUR.model_copy(update={"host_ids": ["newco"], "action_team_id": "old"})  # waits, and can never pass
    assert [e.get("reason") for e in check(tour, roster())] == [Waiting.NOT_A_MEMBER, None]
    assert hold_reason(check(tour, roster())) is None


def test_nothing_to_hold_without_errors():
    assert hold_reason([]) is None
    assert check(HIRE, roster()) == []
