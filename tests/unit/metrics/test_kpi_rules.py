"""The rules of issue 18 as pure KPI logic, no server: attendance belongs to its held activity
(dated by its day, replaced by a correction, gone when cancelled, right whatever the order of
arrival), retention from checks and separations with its coverage, and employers hosting
work-based learning."""

import itertools
import random
from datetime import UTC, date, datetime, timedelta

import pytest

from services.metrics import kpis
from services.metrics.domain import ROSTER, Cells, Facts, record
from shared.contracts import activities as act
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.envelope import CloudEvent, new_event
from shared.periods import parse_period

P = "sw-mp"


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def ev(data, when: datetime, event_id: str | None = None) -> CloudEvent:
    return new_event(data, source="/test", time=when, **({"id": event_id} if event_id else {}))


def fold(events: list[CloudEvent], batches: int = 1) -> Cells:
    """Fold in `batches` batches merged through the stored form, as the rollup does."""
    merged = Cells()
    size = max(1, -(-len(events) // batches))
    for i in range(0, len(events), size):
        folded = Cells()
        for e in events[i:i + size]:
            record(e.model_dump(), folded)
        for key, facts in folded.items():
            merged[key] = (Facts.unpack(dict(merged[key].counts), merged[key].pack()).merge(facts)
                           if key in merged else facts)
    return merged


def values(events: list[CloudEvent], period: str, batches: int = 1) -> dict:
    cells = fold(events, batches)
    p = parse_period(period)
    dated = [(k[2], f) for k, f in cells.items() if k[0] != "membership" and k[2] >= p.months[0]]
    rosters = [f for k, f in cells.items() if k[2] == ROSTER]
    directory = [f for k, f in cells.items() if k[0] == "membership" and not k[1]]
    return kpis.evaluate(kpis.build_view(p, dated, rosters, directory))


def scheduled(activity_id: str, kind: str, day: date, hosts=("acme",), sent: date = date(2025, 8, 1)) -> CloudEvent:
    return ev(act.ActivityScheduled(partnership_id=P, activity_id=activity_id, kind=kind, title="Tour",
                                    starts_at=at(day, 14), ends_at=at(day, 16), host_ids=list(hosts)), at(sent))


def completed(activity_id: str, kind: str, sent: date, participants=()) -> CloudEvent:
    return ev(act.ActivityCompleted(partnership_id=P, activity_id=activity_id, kind=kind, completed_at=at(sent),
                                    participant_ids=list(participants)), at(sent))


def attendance(activity_id: str, kind: str, counts: dict, when: datetime, organisations=(), event_id=None):
    return ev(act.AttendanceRecorded(partnership_id=P, activity_id=activity_id, kind=kind, counts=counts,
                                     organisation_ids=list(organisations)), when, event_id)


def cancelled(activity_id: str, sent: date) -> CloudEvent:
    return ev(act.ActivityCancelled(partnership_id=P, activity_id=activity_id), at(sent))


# --- attendance ------------------------------------------------------------------------------

def test_late_attendance_counts_on_the_activity_day_not_when_it_was_sent():
    events = [scheduled("t1", "plant_tour", date(2025, 9, 20)), completed("t1", "plant_tour", date(2025, 9, 21)),
              attendance("t1", "plant_tour", {"students": 40}, at(date(2025, 12, 15)))]
    assert values(events, "2025-09")["students_reached"] == 40
    assert values(events, "2025-12")["students_reached"] == 0
    # a tour of March 2024 recorded now counts in PY2023, never in the year it was sent
    old = [scheduled("t0", "plant_tour", date(2024, 3, 5), sent=date(2024, 2, 1)),
           completed("t0", "plant_tour", date(2024, 3, 5)),
           attendance("t0", "plant_tour", {"students": 25}, at(date(2026, 9, 1)))]
    assert values(old, "PY2023")["students_reached"] == 25
    assert values(old, "PY2026")["students_reached"] == 0


def test_the_activity_day_follows_a_reschedule_and_counts_held_activities_there():
    events = [scheduled("t1", "plant_tour", date(2025, 9, 30)),
              ev(act.ActivityRescheduled(partnership_id=P, activity_id="t1", starts_at=at(date(2025, 10, 2)),
                                         ends_at=at(date(2025, 10, 2), 15)), at(date(2025, 9, 1))),
              completed("t1", "plant_tour", date(2025, 10, 2)),
              attendance("t1", "plant_tour", {"students": 12}, at(date(2025, 10, 3)))]
    q3, q4 = values(events, "2025-Q3"), values(events, "2025-Q4")
    assert (q3["tours_held"], q3["students_reached"]) == (0, 0)
    assert (q4["tours_held"], q4["students_reached"]) == (1, 12)


def test_attendance_counts_only_once_the_activity_is_held():
    events = [scheduled("t1", "plant_tour", date(2025, 9, 20)),
              attendance("t1", "plant_tour", {"students": 40}, at(date(2025, 9, 20), 18), organisations=["acme"])]
    assert values(events, "2025-09")["students_reached"] == 0
    assert values(events, "2025-09")["employers_engaged"] == 0


def test_cancelling_after_attendance_removes_it():
    events = [scheduled("t1", "career_day", date(2025, 9, 20)),
              attendance("t1", "career_day", {"students": 40}, at(date(2025, 9, 19))),
              cancelled("t1", date(2025, 9, 20))]
    assert values(events, "2025-09")["students_reached"] == 0
    assert values(events, "2025-09")["career_events_held"] == 0


def test_a_correction_replaces_the_count_of_its_audience_only_whatever_the_arrival_order():
    first = attendance("t1", "plant_tour", {"students": 7, "educators": 2}, at(date(2025, 9, 21)), event_id="x1")
    correction = attendance("t1", "plant_tour", {"students": 9}, at(date(2025, 9, 22)), event_id="x0")
    base = [scheduled("t1", "plant_tour", date(2025, 9, 20)), completed("t1", "plant_tour", date(2025, 9, 20))]
    for order in itertools.permutations([*base, first, correction]):
        got = values(list(order), "2025-09")
        assert got["students_reached"] == 9, order  # replaced, not 16
    # the same time: the greater id wins, also in any order
    tie = attendance("t1", "plant_tour", {"students": 11}, at(date(2025, 9, 22)), event_id="x2")
    assert values([*base, tie, correction], "2025-09")["students_reached"] == 11
    assert values([*base, correction, tie], "2025-09")["students_reached"] == 11


def test_attendance_before_its_schedule_and_completion_ends_up_right_in_any_order_and_batches():
    events = [
        scheduled("t1", "plant_tour", date(2025, 9, 20)), completed("t1", "plant_tour", date(2025, 9, 20)),
        attendance("t1", "plant_tour", {"students": 7}, at(date(2025, 9, 21))),
        attendance("t1", "plant_tour", {"students": 9}, at(date(2025, 9, 25))),
        scheduled("c1", "career_day", date(2025, 10, 1)),
        attendance("c1", "career_day", {"students": 30}, at(date(2025, 10, 1))), cancelled("c1", date(2025, 10, 1)),
        scheduled("h1", "hiring_event", date(2025, 11, 5)), completed("h1", "hiring_event", date(2025, 11, 5)),
        attendance("h1", "hiring_event", {"job_seekers": 12}, at(date(2025, 11, 6))),
    ]
    want = values(events, "PY2025")
    assert (want["students_reached"], want["job_seekers_reached"], want["tours_held"]) == (9, 12, 1)
    rnd = random.Random(4)
    for _ in range(20):
        shuffled = events + rnd.sample(events, 3)  # redeliveries
        rnd.shuffle(shuffled)
        assert values(shuffled, "PY2025", batches=rnd.randrange(1, 6)) == want


# --- retention -------------------------------------------------------------------------------

def hire(hire_id: str, start: date) -> CloudEvent:
    return ev(out.HireRecorded(partnership_id=P, hire_id=hire_id, person_id="p-" + hire_id, employer_id="acme",
                               soc_code="51-4041", start_date=start, resident=True), at(start))


def check(hire_id: str, day: date, still: bool) -> CloudEvent:
    return ev(out.RetentionChecked(partnership_id=P, hire_id=hire_id, person_id="p-" + hire_id, employer_id="acme",
                                   checked_on=day, still_employed=still), at(day))


def separation(hire_id: str, day: date) -> CloudEvent:
    return ev(out.SeparationRecorded(partnership_id=P, hire_id=hire_id, person_id="p-" + hire_id,
                                     employer_id="acme", separated_on=day), at(day))


START = date(2025, 8, 1)


def day(n: int) -> date:
    return START + timedelta(days=n)


def test_separation_only_proves_employment_before_it():
    # the case: one left on day 151 (employed on day 90), one on day 30
    got = values([hire("a", START), separation("a", day(151)), hire("b", START), separation("b", day(30))], "2025-08")
    assert got["retention_90_days"] == 0.5 and got["retention_90_days_coverage"] == 1.0
    assert got["retention_180_days"] == 0.0  # both gone by day 180
    # separated exactly on day 90: not employed on day 90; on day 91: employed on day 90
    edge = values([hire("c", START), separation("c", day(90)), hire("d", START), separation("d", day(91))], "2025-08")
    assert edge["retention_90_days"] == 0.5


def test_check_only():
    got = values([hire("a", START), check("a", day(95), True), hire("b", START), check("b", day(60), False)],
                 "2025-08")
    assert got["retention_90_days"] == 0.5 and got["retention_90_days_coverage"] == 1.0
    assert got["retention_180_days"] == 0.0 and got["retention_180_days_coverage"] == 0.5  # a unknown at 180


def test_check_and_separation_together():
    got = values([hire("a", START), check("a", day(60), True), separation("a", day(200)),
                  hire("b", START), check("b", day(200), True), separation("b", day(150))], "2025-08")
    assert got["retention_180_days"] == 0.5  # a: the separation proves day 180; b: its end wins over a later check
    assert got["retention_180_days_coverage"] == 1.0


def test_unknown_status_is_left_out_of_the_rate_and_shows_in_the_coverage():
    got = values([hire("a", START), check("a", day(100), True), hire("b", START), hire("c", START),
                  check("c", day(30), True)], "2025-08")
    assert got["retention_90_days"] == 1.0
    assert got["retention_90_days_coverage"] == pytest.approx(1 / 3)
    nothing = values([hire("x", START)], "2025-08")
    assert nothing["retention_90_days"] is None and nothing["retention_90_days_coverage"] == 0.0
    assert values([], "2025-08")["retention_90_days_coverage"] is None


def test_wioa_style_q2_q4_from_separations_and_checks():
    start = date(2025, 8, 15)  # 2025-Q3: the 2nd quarter after is 2026-Q1, the 4th 2026-Q3
    got = values([hire("a", start), separation("a", date(2026, 8, 10)),  # employed on 1 Jan and 1 Jul 2026
                  hire("b", start), separation("b", date(2026, 3, 10)),  # gone before 2026-Q3
                  hire("c", start), check("c", date(2026, 2, 1), True),  # Q4 unknown
                  hire("d", start), check("d", date(2026, 7, 1), True)], "2025-Q3")
    assert got["retention_q2_q4"] == pytest.approx(2 / 3)
    assert got["retention_q2_q4_coverage"] == 0.75


# --- employers hosting -----------------------------------------------------------------------

def test_employers_hosting_held_work_based_learning():
    events = [
        ev(mem.OrganisationRegistered(organisation_id="acme", name="Acme", kind="employer"), at(START)),
        ev(mem.OrganisationRegistered(organisation_id="beta", name="Beta", kind="employer"), at(START)),
        ev(mem.OrganisationRegistered(organisation_id="gamma", name="Gamma", kind="employer"), at(START)),
        ev(mem.OrganisationRegistered(organisation_id="college", name="College", kind="education"), at(START)),
        scheduled("t1", "plant_tour", date(2025, 10, 2), hosts=["acme"]),
        completed("t1", "plant_tour", date(2025, 10, 2)),
        scheduled("t2", "plant_tour", date(2025, 10, 9), hosts=["acme"]),
        completed("t2", "plant_tour", date(2025, 10, 9)),
        scheduled("c1", "career_day", date(2025, 10, 3), hosts=["beta"]),
        cancelled("c1", date(2025, 10, 1)),
        scheduled("s1", "school_visit", date(2025, 11, 3), hosts=["college", "gamma"]),
        completed("s1", "school_visit", date(2025, 11, 3)),
        scheduled("h1", "hiring_event", date(2025, 11, 4), hosts=["beta"]),
        completed("h1", "hiring_event", date(2025, 11, 4)),
        scheduled("j1", "plant_tour", date(2026, 1, 4), hosts=["beta"]),  # not held yet
    ]
    assert values(events, "2025-Q4")["employers_hosting"] == 2  # acme (once), gamma
    assert values(events, "2025-10")["employers_hosting"] == 1
    assert values(events, "2026-Q1")["employers_hosting"] == 0


def test_every_definition_states_its_dating_counts_exclusions_and_an_example():
    for k in kpis.CATALOGUE:
        described = k.describe()
        assert all(described[f] for f in ("dating", "counts", "excludes", "example")), k.name
        if k.coverage:
            assert kpis.BY_NAME[k.coverage].unit is kpis.Unit.RATIO
    changed = {"students_reached", "employers_engaged", "tours_held", "retention_90_days", "retention_q2_q4"}
    assert all(kpis.BY_NAME[name].version == 2 for name in changed)


def test_a_removed_target_is_left_out_until_a_later_one_is_set():
    target = mem.TargetSet(partnership_id=P, kpi="hires", period="PY2025", value=40)
    removed = mem.TargetRemoved(partnership_id=P, kpi="hires", period="PY2025")
    earlier, removal, later = at(date(2025, 7, 1)), at(date(2025, 8, 1)), at(date(2025, 9, 1))
    # In whichever order or batches they arrive, the latest by time wins.
    for batches in (1, 3):
        assert (
            kpis.targets(fold([ev(removed, removal), ev(target, earlier)], batches)[("membership", P, ROSTER)], P) == {}
        )
        again = fold([ev(target, earlier), ev(removed, removal), ev(target.model_copy(update={"value": 50}), later)],
                     batches)
        assert kpis.targets(again[("membership", P, ROSTER)], P) == {("hires", "PY2025"): 50}
