"""Every KPI definition as pure code, on small hand-computed cases, with program-year (1 July -
30 June) and quarter boundaries; and the properties the store relies on (merging facts in any
batches and any order gives the same KPIs)."""

import random
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.metrics import kpis
from services.metrics.domain import (
    LINEAGE_LIMIT,
    ROSTER,
    Cells,
    Facts,
    record,
    without_activities,
)
from shared.contracts import activities as act
from shared.contracts import demand as dem
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.envelope import CloudEvent, new_event
from shared.periods import parse_period

P, Q = "sw-mp", "sc-mip"


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def ev(data, when: datetime = datetime(2025, 8, 1, tzinfo=UTC)) -> CloudEvent:
    return new_event(data, source="/test", time=when)


def values(events: list[CloudEvent], period: str, partnerships=(P, Q)) -> dict:
    cells = Cells()
    for e in events:
        record(e.model_dump(), cells)
    p = parse_period(period)
    dated = [(k[2], f) for k, f in cells.items()
             if k[0] != "membership" and k[1] in partnerships and k[2] >= p.months[0]]
    rosters = [f for k, f in cells.items() if k[2] == ROSTER and k[1] in partnerships]
    directory = [f for k, f in cells.items() if k[0] == "membership" and not k[1]]
    return kpis.evaluate(kpis.build_view(p, dated, rosters, directory))


def hire(hire_id: str, start: date, *, wage=None, resident=True, career_changer=False, pid=P) -> CloudEvent:
    return ev(out.HireRecorded(partnership_id=pid, hire_id=hire_id, person_id="p-" + hire_id, employer_id="acme",
                               soc_code="51-4041", start_date=start, hourly_wage=wage, resident=resident,
                               career_changer=career_changer))


def check(hire_id: str, day: date, still: bool, pid=P) -> CloudEvent:
    return ev(out.RetentionChecked(partnership_id=pid, hire_id=hire_id, person_id="p-" + hire_id,
                                   employer_id="acme", checked_on=day, still_employed=still))


def separation(hire_id: str, day: date) -> CloudEvent:
    return ev(out.SeparationRecorded(partnership_id=P, hire_id=hire_id, person_id="p-" + hire_id,
                                     employer_id="acme", separated_on=day))


def completed(kind: str, when: datetime, participants=(), pid=P) -> CloudEvent:
    return ev(act.ActivityCompleted(partnership_id=pid, activity_id=f"a-{when.timestamp():.0f}", kind=kind,
                                    completed_at=when, participant_ids=list(participants)))


def joined(mid: str, org: str, kind: str, day: date, pid=P) -> CloudEvent:
    return ev(mem.MemberJoined(partnership_id=pid, membership_id=mid, organisation_id=org, organisation_kind=kind,
                               role="member", joined_on=day))


def left(mid: str, org: str, kind: str, day: date) -> CloudEvent:
    return ev(mem.MemberLeft(partnership_id=P, membership_id=mid, organisation_id=org, organisation_kind=kind,
                             left_on=day))


# --- talent ----------------------------------------------------------------------------------

def test_hires_local_rate_career_changers_and_median_wage_across_boundaries():
    events = [
        hire("h-0", date(2025, 6, 30), wage=99.0),  # PY2024: outside
        hire("h-1", date(2025, 7, 1), wage=20.0, resident=True),
        hire("h-2", date(2025, 9, 30), wage=30.0, resident=False, career_changer=True),
        hire("h-3", date(2025, 10, 1), wage=25.0, resident=True),
        hire("h-4", date(2026, 6, 30), wage=None, resident=False),  # last day of PY2025, no wage
        hire("h-5", date(2026, 7, 1), wage=1.0),  # PY2026
    ]
    py = values(events, "PY2025")
    assert py["hires"] == 4
    assert py["local_hire_rate"] == 0.5
    assert py["career_changers_hired"] == 1
    assert py["median_starting_wage"] == 25.0  # of 20, 25, 30
    q3 = values(events, "2025-Q3")
    assert (q3["hires"], q3["local_hire_rate"], q3["median_starting_wage"]) == (2, 0.5, 25.0)  # mean of 20 and 30
    assert values(events, "2025-Q4")["hires"] == 1
    assert values(events, "2026-06")["median_starting_wage"] is None
    assert values(events, "2026-06")["local_hire_rate"] == 0
    assert values(events, "2025-08")["local_hire_rate"] is None  # no hires: nothing to rate


def test_counted_outcomes_fall_in_the_month_of_their_date():
    events = [
        ev(out.PlacementRecorded(partnership_id=P, placement_id="pl-1", person_id="p", programme_id="mpi",
                                 provider_id="qvcc", employer_id="acme", soc_code="51-2092",
                                 start_date=date(2025, 12, 31))),
        ev(out.TrainingEnrolled(partnership_id=P, person_id="p", programme_id="mpi", provider_id="qvcc",
                                enrolled_on=date(2026, 1, 1))),
        ev(out.TrainingCompleted(partnership_id=P, person_id="p", programme_id="mpi", provider_id="qvcc",
                                 completed_on=date(2026, 1, 1))),
        ev(out.CredentialEarned(partnership_id=P, person_id="p", credential="NIMS", provider_id="qvcc",
                                earned_on=date(2026, 3, 31))),
        ev(out.ApprenticeshipStarted(partnership_id=P, person_id="p", employer_id="acme", soc_code="51-4041",
                                     started_on=date(2026, 4, 1))),
    ]
    q4, q1, q2 = values(events, "2025-Q4"), values(events, "2026-Q1"), values(events, "2026-Q2")
    assert (q4["placements"], q1["placements"]) == (1, 0)
    assert (q4["training_enrolments"], q1["training_enrolments"], q1["training_completions"]) == (0, 1, 1)
    assert (q1["credentials_earned"], q2["credentials_earned"]) == (1, 0)
    assert (q1["apprenticeships_started"], q2["apprenticeships_started"]) == (0, 1)
    assert values(events, "PY2025")["placements"] == 1


# --- retention -------------------------------------------------------------------------------

def test_retention_at_90_and_180_days():
    start = date(2025, 7, 1)
    events = [
        hire("kept", start), check("kept", start + timedelta(days=200), True),  # retained at 90 and 180
        hire("short", start), check("short", start + timedelta(days=100), True),
        separation("short", start + timedelta(days=150)),  # retained at 90, not at 180
        hire("gone", start), separation("gone", start + timedelta(days=90)),  # left on day 90: not retained
        hire("absent", start), check("absent", start + timedelta(days=80), False),  # a check found them gone
        hire("unknown", start),  # nothing known yet: left out
        hire("early", start), check("early", start + timedelta(days=89), True),  # day 89 proves nothing for 90
    ]
    py = values(events, "PY2025")
    assert py["retention_90_days"] == pytest.approx(2 / 4)  # kept, short / kept, short, gone, absent
    assert py["retention_180_days"] == pytest.approx(1 / 4)  # kept / kept, short, gone, absent
    assert values(events, "PY2024")["retention_90_days"] is None


def test_retention_with_the_same_employer_in_second_and_fourth_quarter():
    # Hired in 2025-Q3 (the quarter of 30 Sep): Q+2 starts 1 Jan 2026, Q+4 starts 1 Jul 2026.
    start = date(2025, 9, 30)
    events = [
        hire("both", start), check("both", date(2026, 7, 2), True),
        hire("q2-only", start), check("q2-only", date(2026, 1, 5), True), separation("q2-only", date(2026, 5, 1)),
        hire("not-yet", start), check("not-yet", date(2026, 3, 1), True),  # Q+4 unknown: left out
        hire("q4-boundary", date(2025, 10, 1)), check("q4-boundary", date(2026, 7, 2), True),  # Q4 hire: Q+4 is 2026-Q4
    ]
    q3 = values(events, "2025-Q3")
    assert q3["retention_q2_q4"] == pytest.approx(1 / 2)
    assert values(events, "2025-Q4")["retention_q2_q4"] is None


# --- activity --------------------------------------------------------------------------------

def test_activities_held_count_in_their_utc_completion_month():
    late_june_utc = datetime(2025, 7, 1, 2, 0, tzinfo=timezone(timedelta(hours=5)))  # 30 June 21:00 UTC
    events = [
        completed("plant_tour", late_june_utc),
        completed("plant_tour", at(date(2025, 7, 1))),
        completed("plant_tour", at(date(2025, 9, 30))),
        completed("career_day", at(date(2025, 8, 1))),
        completed("school_visit", at(date(2025, 10, 1))),
        completed("hiring_event", at(date(2025, 11, 1))),
        completed("partnership_meeting", at(date(2026, 6, 30))),
        ev(act.ActivityCancelled(partnership_id=P, activity_id="x")),  # feeds nothing
    ]
    q3, py = values(events, "2025-Q3"), values(events, "PY2025")
    assert (q3["tours_held"], q3["career_events_held"]) == (2, 1)
    assert (py["tours_held"], py["career_events_held"], py["hiring_events_held"], py["meetings_held"]) == (2, 2, 1, 1)
    assert values(events, "PY2024")["tours_held"] == 1


def test_people_reached_and_industry_led_check_count_on_the_day_of_the_activity_held():
    def held(activity_id, kind, counts, day):
        # attendance sent a month after the activity: it still counts on the activity's day
        return [ev(act.ActivityCompleted(partnership_id=P, activity_id=activity_id, kind=kind, completed_at=at(day))),
                ev(act.AttendanceRecorded(partnership_id=P, activity_id=activity_id, kind=kind, counts=counts),
                   at(day + timedelta(days=31)))]

    events = [
        *held("a1", "career_day", {"students": 30, "parents": 4, "job_seekers": 2}, date(2025, 9, 30)),
        *held("a2", "hiring_event", {"job_seekers": 12, "career_changers": 3}, date(2025, 10, 1)),
        *held("a3", "partnership_meeting", {"employers": 9, "public_partners": 3, "educators": 5}, date(2025, 10, 2)),
        *held("a4", "partnership_meeting", {"employers": 1, "public_partners": 7}, date(2026, 1, 1)),
    ]
    q3, q4, py = values(events, "2025-Q3"), values(events, "2025-Q4"), values(events, "PY2025")
    assert (q3["students_reached"], q3["job_seekers_reached"]) == (30, 2)
    assert (q4["students_reached"], q4["job_seekers_reached"]) == (0, 15)
    assert q4["employer_attendee_share"] == 0.75
    assert py["employer_attendee_share"] == 0.5  # 10 of 20
    assert q3["employer_attendee_share"] is None


def test_employers_engaged_are_distinct_employers_and_count_once_across_partnerships():
    day = at(date(2025, 8, 1))
    events = [
        joined("m-1", "acme", "employer", date(2020, 1, 1)),
        joined("m-2", "qvcc", "education", date(2020, 1, 1)),
        joined("m-3", "acme", "employer", date(2020, 1, 1), pid=Q),
        completed("plant_tour", day, ["acme", "qvcc"]),
        completed("hiring_event", day, ["acme"], pid=Q),
        ev(act.AttendanceRecorded(partnership_id=P, activity_id="a", kind="hiring_event", counts={},
                                  organisation_ids=["acme", "stranger"]), day),
        ev(act.ActivityCompleted(partnership_id=P, activity_id="a", kind="hiring_event", completed_at=day)),
        ev(dem.DemandSurveyResponded(partnership_id=P, survey_round="r", employer_id="beta",
                                     responded_on=date(2025, 8, 2),
                                     openings=[dem.ExpectedOpenings(soc_code="51-4041", openings=1)])),
        ev(mem.OrganisationRegistered(organisation_id="stranger", name="Stranger", kind="employer")),
    ]
    assert values(events, "2025-08", (P,))["employers_engaged"] == 3  # acme, stranger (registry), beta (survey)
    assert values(events, "2025-08", (Q,))["employers_engaged"] == 1
    assert values(events, "2025-08")["employers_engaged"] == 3  # acme once for both partnerships
    assert values(events, "2025-08", (P,))["hiring_event_employers"] == 2  # acme, stranger
    assert values(events, "2025-09")["employers_engaged"] == 0


# --- engagement ------------------------------------------------------------------------------

def test_members_active_new_and_lost_around_period_ends():
    events = [
        joined("m-1", "acme", "employer", date(2021, 6, 15)),
        joined("m-2", "qvcc", "education", date(2025, 7, 1)),
        joined("m-3", "beta", "employer", date(2025, 9, 30)),
        left("m-3", "beta", "employer", date(2025, 10, 1)),
        joined("m-4", "gamma", "employer", date(2025, 10, 1)),
        left("m-1", "acme", "employer", date(2025, 12, 31)),
        joined("m-1", "acme", "employer", date(2026, 2, 1)),  # rejoined
    ]
    q3, q4, q1 = values(events, "2025-Q3"), values(events, "2025-Q4"), values(events, "2026-Q1")
    assert q3["active_members"] == {"employer": 2, "education": 1, "total": 3}
    assert q4["active_members"] == {"employer": 1, "education": 1, "total": 2}  # gamma; acme left on the last day
    assert q1["active_members"] == {"employer": 2, "education": 1, "total": 3}
    assert (q3["new_members"], q4["new_members"], q1["new_members"]) == (2, 1, 1)
    assert (q3["members_lost"], q4["members_lost"]) == (0, 2)
    assert values(events, "PY2024")["active_members"] == {"employer": 1, "total": 1}


def test_action_teams_active_on_the_last_day():
    def team(status, when):
        return ev(mem.ActionTeamChanged(partnership_id=P, action_team_id="hub", name="Hub", status=status), when)

    events = [team("active", at(date(2025, 8, 1))), team("paused", at(date(2025, 11, 1))),
              team("active", at(date(2026, 2, 1))),
              ev(mem.ActionTeamFormed(partnership_id=P, action_team_id="ypn", name="YPN", status="active"),
                 at(date(2025, 12, 31), 23))]
    assert values(events, "2025-Q3")["action_teams_active"] == 1
    assert values(events, "2025-Q4")["action_teams_active"] == 1  # ypn; hub paused
    assert values(events, "2026-Q1")["action_teams_active"] == 2


# --- demand ----------------------------------------------------------------------------------

def test_openings_by_occupation_take_each_employers_latest_response_per_round():
    def response(employer, day, survey_round, openings):
        return ev(dem.DemandSurveyResponded(partnership_id=P, survey_round=survey_round, employer_id=employer,
                                            responded_on=day, openings=[dem.ExpectedOpenings(soc_code=s, openings=n)
                                                                        for s, n in openings]))

    events = [
        response("acme", date(2026, 3, 2), "2026-spring", [("51-4041", 6), ("51-2092", 2)]),
        response("acme", date(2026, 4, 2), "2026-spring", [("51-4041", 4)]),  # acme's correction
        response("beta", date(2026, 3, 5), "2026-spring", [("51-2092", 3), ("51-2092", 1)]),
        response("beta", date(2025, 10, 1), "2025-fall", [("17-2112", 5)]),
    ]
    assert values(events, "2026-03")["openings_by_occupation"] == {
        "2026-spring": [{"soc_code": "51-2092", "openings": 6}, {"soc_code": "51-4041", "openings": 6}]}  # ties by code
    assert values(events, "PY2025")["openings_by_occupation"] == {
        "2025-fall": [{"soc_code": "17-2112", "openings": 5}],
        "2026-spring": [{"soc_code": "51-2092", "openings": 4}, {"soc_code": "51-4041", "openings": 4}]}


# --- targets and milestones ------------------------------------------------------------------

def test_progress_against_targets():
    py = parse_period("PY2025")
    hires, rate = kpis.BY_NAME["hires"], kpis.BY_NAME["local_hire_rate"]
    # On 1 October 93 of 365 days (25.5%) have begun: 11 of 40 (27.5%) is on track, 10 (25%) is not.
    assert kpis.progress(hires, 11, 40, py, date(2025, 10, 1)) == {
        "kpi": "hires", "target": 40, "value": 11, "percent": 27.5, "on_track": True}
    assert kpis.progress(hires, 10, 40, py, date(2025, 10, 1))["on_track"] is False
    assert kpis.progress(rate, 0.6, 0.7, py, date(2025, 7, 2))["on_track"] is False  # rates must meet it
    assert kpis.progress(rate, None, 0.7, py, date(2025, 7, 2))["percent"] is None


def test_targets_of_a_partnership_latest_wins():
    cells = Cells()
    for value, when in ((40, at(date(2025, 7, 1))), (30, at(date(2025, 6, 1))), (45, at(date(2025, 8, 1)))):
        record(ev(mem.TargetSet(partnership_id=P, kpi="hires", period="PY2025", value=value), when).model_dump(), cells)
    record(ev(mem.TargetSet(partnership_id=Q, kpi="hires", period="PY2025", value=5)).model_dump(), cells)
    roster = Facts().merge(cells[("membership", P, ROSTER)]).merge(cells[("membership", Q, ROSTER)])
    assert kpis.targets(roster, P) == {("hires", "PY2025"): 45}


def test_milestones_round_numbers_and_targets():
    assert kpis.round_numbers(9) == [] and kpis.round_numbers(120) == [10, 25, 50, 100]
    py = parse_period("PY2025")
    reached = kpis.milestones(P, py, {"hires": 120, "local_hire_rate": 0.8, "active_members": {"total": 3}},
                              {"hires": 100, "local_hire_rate": 0.9})
    assert {(m.kpi, m.reason, m.threshold) for m in reached} == {
        ("hires", "round_number", 10), ("hires", "round_number", 25), ("hires", "round_number", 50),
        ("hires", "round_number", 100), ("hires", "target", 100)}
    announced = kpis.worth_announcing(reached)
    assert {(m.reason, m.threshold) for m in announced} == {("round_number", 100), ("target", 100)}
    # Round numbers are program-year wins; a quarter's target still counts.
    assert [m.reason for m in kpis.milestones(P, parse_period("2025-Q3"), {"hires": 30}, {"hires": 20})] == ["target"]


# --- the store's properties ------------------------------------------------------------------

def _mixed_events(n: int, rnd: random.Random) -> list[CloudEvent]:
    events = []
    for i in range(n):
        day = date(2025, 6, 1) + timedelta(days=rnd.randrange(420))
        pid = rnd.choice((P, Q))
        kind = rnd.randrange(5)
        if kind == 0:
            events.append(hire(f"h{i}", day, wage=rnd.choice((None, 18.5, 22.0, 30.25)), resident=rnd.random() < .6,
                               pid=pid))
        elif kind == 1 and i:
            events.append(check(f"h{rnd.randrange(i)}", day, rnd.random() < .8, pid=pid))
        elif kind == 2:
            events.append(completed(rnd.choice(("plant_tour", "career_day")), at(day), [f"org{rnd.randrange(9)}"],
                                    pid=pid))
        elif kind == 3:
            events.append(joined(f"m{i}", f"org{rnd.randrange(9)}", rnd.choice(("employer", "education")), day,
                                 pid=pid))
        else:
            events.append(ev(mem.TargetSet(partnership_id=pid, kpi="hires", period="PY2025", value=i), at(day)))
    return events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_and_order_do_not_change_kpis(seed):
    """Facts folded per batch and merged in any order equal facts folded one by one."""
    rnd = random.Random(seed)
    events = _mixed_events(300, rnd)
    one_by_one = Cells()
    for e in events:
        record(e.model_dump(), one_by_one)
    shuffled = events[:]
    rnd.shuffle(shuffled)
    merged = Cells()
    while shuffled:
        size = rnd.randrange(1, 40)
        batch, shuffled = shuffled[:size], shuffled[size:]
        folded = Cells()
        for e in batch:
            record(e.model_dump(), folded)
        for key, facts in folded.items():
            # through the stored form, as the store does
            merged[key] = (Facts.unpack(dict(merged[key].counts), merged[key].pack()).merge(facts) if key in merged
                           else facts)
    assert merged.keys() == one_by_one.keys()
    for key in merged:
        a, b = merged[key], one_by_one[key]
        assert (a.counts, a.histograms, a.sets, a.latest, a.maxima, a.minima) == (
            b.counts, b.histograms, b.sets, b.latest, b.maxima, b.minima)
        assert {f: n for f, (n, _) in a.lineage.items()} == {f: n for f, (n, _) in b.lineage.items()}


def test_lineage_names_the_events_and_stays_bounded():
    events = [hire(f"h{i}", date(2025, 7, 1) + timedelta(days=i % 60)) for i in range(3 * LINEAGE_LIMIT)]
    cells = Cells()
    for e in events:
        record(e.model_dump(), cells)
    py = parse_period("PY2025")
    dated = [(k[2], f) for k, f in cells.items()]
    total, ids = kpis.lineage(kpis.BY_NAME["hires"], py, dated, [], limit=10_000)
    assert total == len(events)
    assert set(ids) <= {e.id for e in events} and len(ids) == len(set(ids))
    assert all(len(f.lineage["hires"][1]) <= LINEAGE_LIMIT for f in cells.values())
    july = [e.id for e in events if e.data.start_date.month == 7]
    assert kpis.lineage(kpis.BY_NAME["hires"], parse_period("2025-07"), dated, [], 10_000)[0] == len(july)
    assert kpis.lineage(kpis.BY_NAME["hires"], py, dated, [], limit=5)[1] == ids[:5]


def test_every_kpi_is_declared_with_a_version_and_its_feeds():
    names = [k.name for k in kpis.CATALOGUE]
    assert len(names) == len(set(names))
    for k in kpis.CATALOGUE:
        described = k.describe()
        assert described["version"] >= 1 and described["feeds"] and described["description"]
        assert all(f.startswith("org.backbone.") for f in described["feeds"])


# --- voids -----------------------------------------------------------------------------------

def void(of: CloudEvent, when: datetime = datetime(2025, 9, 1, tzinfo=UTC)) -> CloudEvent:
    """The void of a record as the events service publishes it: with what the record said."""
    said = out.VoidedRecord(type=of.type, time=of.time, data=of.data.model_dump(mode="json", exclude_none=True))
    return ev(out.OutcomeVoided(partnership_id=of.data.partnership_id, voided_source=of.source, voided_id=of.id,
                                reason="entered twice", voided=said), when)


def test_a_voided_outcome_leaves_every_kpi_it_fed_and_a_correction_counts_once():
    start = date(2025, 7, 1)
    wrong = hire("h-2", date(2025, 9, 30), wage=30.0, resident=False, career_changer=True)
    placement = ev(out.PlacementRecorded(partnership_id=P, placement_id="pl-1", person_id="p", programme_id="mpi",
                                         provider_id="qvcc", employer_id="acme", soc_code="51-2092",
                                         start_date=date(2025, 12, 31)))
    kept = [hire("h-1", start, wage=20.0), hire("h-3", date(2025, 10, 1), wage=25.0),
            check("h-1", start + timedelta(days=200), True)]
    before = values([*kept, wrong, placement, check("h-2", date(2026, 3, 1), True)], "PY2025")
    assert (before["hires"], before["career_changers_hired"], before["placements"]) == (3, 1, 1)
    corrected = hire("h-2", date(2025, 11, 2), wage=26.0, resident=True)  # same hire id, in another month
    events = [*kept, wrong, placement, check("h-2", date(2026, 3, 1), True), void(wrong), void(placement),
              corrected]
    after = values(events, "PY2025")
    assert (after["hires"], after["local_hire_rate"], after["career_changers_hired"]) == (3, 1.0, 0)
    assert after["median_starting_wage"] == 25.0 and after["placements"] == 0
    assert values(events, "2025-Q3")["hires"] == 1 and values(events, "2025-Q4")["hires"] == 2
    # Records and voids in any order (the events service accepts one void per record) give the same.
    assert values(list(reversed(events)), "PY2025") == after
    assert values([*kept, wrong, void(wrong)], "PY2025") == values(kept, "PY2025")


def test_a_void_is_in_the_lineage_beside_the_record_it_takes_back():
    wrong = hire("h-1", date(2025, 9, 30))
    taken_back = void(wrong)
    cells = Cells()
    for e in (wrong, taken_back):
        record(e.model_dump(), cells)
    total, ids = kpis.lineage(kpis.BY_NAME["hires"], parse_period("PY2025"), [(k[2], f) for k, f in cells.items()],
                              [], limit=100)
    assert (total, set(ids)) == (2, {wrong.id, taken_back.id})


def test_records_with_facts_that_only_grow_cannot_be_taken_back():
    with pytest.raises(ValueError):
        Facts(sets={"respondents": {"acme"}}).taken_back("2025-09-01", "v-1")


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("period", ["2025-09", "2025-Q3", "2026-Q1", "PY2025"])
def test_a_scope_composed_of_its_partnerships_parts_has_the_kpis_of_their_facts_merged(seed, period):
    """What a view of several partnerships is composed of (kpis.Part: sums, sets, cohort tallies,
    openings) gives every KPI exactly as the view over their facts merged, retention and surveys too."""
    rnd = random.Random(seed)
    events = _mixed_events(400, rnd)
    for i in range(60):
        day, pid = date(2025, 6, 1) + timedelta(days=rnd.randrange(420)), rnd.choice((P, Q))
        events.append(ev(out.SeparationRecorded(partnership_id=pid, hire_id=f"h{rnd.randrange(400)}", person_id="p",
                                                employer_id="acme", separated_on=day)))
        events.append(ev(dem.DemandSurveyResponded(
            partnership_id=pid, survey_round=rnd.choice(("2025-fall", "2026-spring")), employer_id=f"org{i % 7}",
            responded_on=day, openings=[dem.ExpectedOpenings(soc_code=rnd.choice(("51-4041", "51-2092")),
                                                             openings=rnd.randrange(1, 9))]), at(day)))
    for i in range(80):  # activities held with schedules (hosts) and attendance (counts, organisations)
        day, pid, kind = date(2025, 6, 1) + timedelta(days=rnd.randrange(420)), rnd.choice((P, Q)), rnd.choice(
            ("plant_tour", "hiring_event", "school_visit", "partnership_meeting"))
        start = at(day, 9)
        events += [ev(act.ActivityScheduled(partnership_id=pid, activity_id=f"s{i}", kind=kind, title="Visit",
                                            starts_at=start, ends_at=start + timedelta(hours=2),
                                            host_ids=[f"org{rnd.randrange(9)}"]), start - timedelta(days=7)),
                   ev(act.ActivityCompleted(partnership_id=pid, activity_id=f"s{i}", kind=kind, completed_at=start,
                                            participant_ids=[f"org{rnd.randrange(9)}"]), start),
                   ev(act.AttendanceRecorded(partnership_id=pid, activity_id=f"s{i}", kind=kind,
                                             counts={"students": rnd.randrange(30), "job_seekers": rnd.randrange(9)},
                                             organisation_ids=[f"org{rnd.randrange(9)}"]), start)]
    cells = Cells()
    for e in events:
        record(e.model_dump(), cells)
    p = parse_period(period)
    dated = {pid: [(k[2], f) for k, f in cells.items() if k[0] != "membership" and k[1] == pid and k[2] >= p.months[0]]
             for pid in (P, Q)}
    roster = {k[1]: f for k, f in cells.items() if k[2] == ROSTER}
    directory = [f for k, f in cells.items() if k[0] == "membership" and not k[1]]
    merged = kpis.build_view(p, dated[P] + dated[Q], roster.values(), directory)
    held = {pid: kpis.held_by_day(roster[pid]) for pid in (P, Q)}
    scope = kpis.standing([without_activities(f) for f in roster.values()], directory, held.values())
    parts = [kpis.dated_part(p, dated[pid], held[pid]) for pid in (P, Q)]
    # the mix has hires, responses and activities held, with people and hosts, in every period
    assert merged.cohort_size and any(merged.openings.values()) and merged.held.reached and merged.held.hosting
    assert kpis.evaluate(kpis.composed(p, parts, scope)) == kpis.evaluate(merged)
