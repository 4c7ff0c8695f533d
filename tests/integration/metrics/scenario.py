"""A scripted scenario for three partnerships around program year 2025 (membership, activities,
talent outcomes, demand surveys, dates on program-year and quarter boundaries), and its expected
KPIs computed independently of the metrics service: plain Python over the scenario's own records,
nothing imported from services.metrics."""

import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone

from shared.contracts import activities as act
from shared.contracts import demand as dem
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.envelope import CloudEvent, new_event

PARTNERSHIPS = {  # id: (region, sector)
    "sw-mp": ("ct-southwest", "manufacturing"),
    "sc-mip": ("ct-southcentral", "manufacturing"),
    "sw-health": ("ct-southwest", "healthcare"),
}
KINDS = ("employer", "employer", "employer", "education", "chamber")
FIRST, LAST = date(2025, 6, 1), date(2026, 7, 31)  # a little of PY2024 and PY2026 on either side
EDGES = [date(2025, 6, 30), date(2025, 7, 1), date(2025, 9, 30), date(2025, 10, 1), date(2025, 12, 31),
         date(2026, 1, 1), date(2026, 3, 31), date(2026, 4, 1), date(2026, 6, 30), date(2026, 7, 1)]
ROUNDS = ("2025-fall", "2026-spring")
SOCS = ("51-4041", "51-2092", "17-2112", "29-1141")
NEW_YORK = timezone(timedelta(hours=-5))


@dataclass
class Scenario:
    events: list[CloudEvent] = field(default_factory=list)
    orgs: dict[str, str] = field(default_factory=dict)  # organisation -> kind
    members: list[tuple] = field(default_factory=list)  # (pid, org, joined, left or None)
    hires: list[tuple] = field(default_factory=list)  # (pid, hire_id, start, resident, wage or None, career_changer)
    checks: list[tuple] = field(default_factory=list)  # (pid, hire_id, day, still_employed)
    separations: list[tuple] = field(default_factory=list)  # (pid, hire_id, day)
    completions: list[tuple] = field(default_factory=list)  # (pid, activity, kind, UTC day, participants)
    attendance: list[tuple] = field(default_factory=list)  # (pid, activity, students, organisations) in time order
    responses: list[tuple] = field(default_factory=list)  # (pid, round, employer, day, {soc: openings})
    targets: list[tuple] = field(default_factory=list)  # (pid, kpi, period, value)

    def emit(self, data, when: datetime) -> None:
        self.events.append(new_event(data, source="/scenario", time=when))


def _noon(day: date, k: int = 0) -> datetime:
    # k seconds past noon: a later event of the same day is also later in time
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC) + timedelta(seconds=k)


def build(size: int, seed: int = 5) -> Scenario:
    """About `size` events: every partnership's roster first, then a stream in time order."""
    rnd = random.Random(seed)
    s = Scenario()
    start = datetime(2025, 5, 1, tzinfo=UTC)
    for pid, (region, sector) in PARTNERSHIPS.items():
        s.emit(mem.PartnershipCreated(partnership_id=pid, name=pid.upper(), region_id=region, sector_id=sector,
                                      stage="launched"), start)
        for m in range(8):
            org = f"{pid}-org{m}"
            s.orgs[org] = KINDS[m % len(KINDS)]
            joined_on = rnd.choice([date(2024, 1, 1), *EDGES[:6]])
            s.emit(mem.MemberJoined(partnership_id=pid, membership_id=f"m{m}", organisation_id=org,
                                    organisation_kind=s.orgs[org], role="member", joined_on=joined_on), start)
            left_on = None
            if m % 4 == 3:
                left_on = joined_on + timedelta(days=rnd.randrange(1, 300))
                s.emit(mem.MemberLeft(partnership_id=pid, membership_id=f"m{m}", organisation_id=org,
                                      organisation_kind=s.orgs[org], left_on=left_on), start)
            s.members.append((pid, org, joined_on, left_on))
    s.orgs["shared-employer"] = "employer"  # engaged by every partnership: one employer statewide
    s.emit(mem.OrganisationRegistered(organisation_id="shared-employer", name="Shared", kind="employer"), start)
    s.targets.append(("sw-mp", "hires", "PY2025", 3))
    s.emit(mem.TargetSet(partnership_id="sw-mp", kpi="hires", period="PY2025", value=3), start)

    days = sorted(
        rnd.choice(EDGES) if rnd.random() < 0.3 else FIRST + timedelta(days=rnd.randrange((LAST - FIRST).days))
        for _ in range(max(0, size - len(s.events)))
    )
    for k, day in enumerate(days):
        pid = rnd.choice(list(PARTNERSHIPS))
        orgs = [o for o in s.orgs if o.startswith(pid)] + ["shared-employer"]
        roll = rnd.random()
        own = [h for h in s.hires if h[0] == pid and h[2] <= day]
        if roll < 0.25 or (roll < 0.40 and not own):
            hire = (
                pid,
                f"h{k}",
                day,
                rnd.random() < 0.6,
                rnd.choice([None, 18.0, 21.5, 24.25, 30.0]),
                rnd.random() < 0.3,
            )
            s.hires.append(hire)
            s.emit(out.HireRecorded(partnership_id=pid, hire_id=hire[1], person_id=f"p{k}", employer_id=orgs[0],
                                    soc_code="51-4041", start_date=day, hourly_wage=hire[4], resident=hire[3],
                                    career_changer=hire[5]), _noon(day, k))
        elif roll < 0.40:
            _, hire_id, started, *_ = rnd.choice(own)
            later = started + timedelta(days=rnd.choice([30, 89, 90, 91, 150, 180, 200, 300]))
            if rnd.random() < 0.8:
                still = rnd.random() < 0.75
                s.checks.append((pid, hire_id, later, still))
                s.emit(out.RetentionChecked(partnership_id=pid, hire_id=hire_id, person_id="p", employer_id=orgs[0],
                                            checked_on=later, still_employed=still), _noon(day, k))
            else:
                s.separations.append((pid, hire_id, later))
                s.emit(out.SeparationRecorded(partnership_id=pid, hire_id=hire_id, person_id="p",
                                              employer_id=orgs[0], separated_on=later), _noon(day, k))
        elif roll < 0.60:
            kind = rnd.choice(["plant_tour", "career_day", "partnership_meeting"])
            # Late evening in New York is the next day in UTC: the UTC day is the one that counts.
            when = datetime(day.year, day.month, day.day, rnd.choice([10, 23]), tzinfo=NEW_YORK)
            participants = rnd.sample(orgs, 2)
            s.completions.append((pid, f"a{k}", kind, when.astimezone(UTC).date(), participants))
            s.emit(act.ActivityCompleted(partnership_id=pid, activity_id=f"a{k}", kind=kind, completed_at=when,
                                         participant_ids=participants), when)
        elif roll < 0.80:
            # Mostly for an activity held before (some a second time: a correction), else for one
            # never held, which must not count.
            held = [c[1] for c in s.completions if c[0] == pid]
            activity = rnd.choice(held) if held and rnd.random() < 0.8 else f"a{k}"
            students, present = rnd.randrange(60), rnd.sample(orgs, 1)
            s.attendance.append((pid, activity, students, present))
            s.emit(act.AttendanceRecorded(partnership_id=pid, activity_id=activity, kind="career_day",
                                          counts={"students": students, "parents": 3}, organisation_ids=present),
                   _noon(day, k))
        else:
            employer = rnd.choice([o for o in orgs if s.orgs[o] == "employer"])
            openings = Counter({soc: rnd.randrange(1, 9) for soc in rnd.sample(SOCS, 2)})
            survey_round = rnd.choice(ROUNDS)
            s.responses.append((pid, survey_round, employer, day, dict(openings)))
            s.emit(dem.DemandSurveyResponded(partnership_id=pid, survey_round=survey_round, employer_id=employer,
                                             responded_on=day, openings=[dem.ExpectedOpenings(soc_code=c, openings=n)
                                                                         for c, n in openings.items()]), _noon(day, k))
    return s


def expected(s: Scenario, pids: set[str], first: date, last: date) -> dict:
    """The KPIs of these partnerships for the period [first, last], from the scenario's records."""

    def within(day: date) -> bool:
        return first <= day <= last

    hires = [h for h in s.hires if h[0] in pids and within(h[2])]
    wages = [h[4] for h in hires if h[4] is not None]
    held = {(pid, a): day for pid, a, _, day, _ in s.completions if pid in pids and within(day)}
    engaged = {o for pid, a, _, _, orgs in s.completions if (pid, a) in held for o in orgs}
    engaged |= {o for pid, a, _, orgs in s.attendance if (pid, a) in held for o in orgs}
    students = {(pid, a): n for pid, a, n, _ in s.attendance if (pid, a) in held}  # the latest record wins
    respondents = {r[2] for r in s.responses if r[0] in pids and within(r[3])}

    def retained(pid: str, hire_id: str, started: date) -> bool | None:
        day = started + timedelta(days=90)
        ended = [d for p, h, d in s.separations if (p, h) == (pid, hire_id)]
        ended += [d for p, h, d, still in s.checks if (p, h) == (pid, hire_id) and not still]
        if any(d <= day for d in ended):
            return False
        if any(d >= day for p, h, d, still in s.checks if (p, h) == (pid, hire_id) and still):
            return True
        if any(d > day for p, h, d in s.separations if (p, h) == (pid, hire_id)):
            return True  # a separation proves employment before it
        return None

    known = [r for pid, hire_id, started, *_ in hires if (r := retained(pid, hire_id, started)) is not None]
    latest: dict[tuple, tuple] = {}
    for pid, survey_round, employer, day, openings in s.responses:  # in time order: later answers replace
        if pid in pids and within(day):
            latest[(pid, survey_round, employer)] = openings
    rounds: dict[str, Counter] = {}
    for (_, survey_round, _), openings in latest.items():
        rounds.setdefault(survey_round, Counter()).update(openings)
    return {
        "hires": len(hires),
        "local_hire_rate": sum(h[3] for h in hires) / len(hires) if hires else None,
        "career_changers_hired": sum(h[5] for h in hires),
        "median_starting_wage": statistics.median(wages) if wages else None,
        "tours_held": sum(1 for pid, a, kind, _, _ in s.completions if (pid, a) in held and kind == "plant_tour"),
        "meetings_held": sum(1 for pid, a, kind, _, _ in s.completions
                             if (pid, a) in held and kind == "partnership_meeting"),
        "students_reached": sum(students.values()),
        "employers_engaged": len({o for o in engaged if s.orgs[o] == "employer"} | respondents),
        "new_members": sum(1 for pid, _, joined, _ in s.members if pid in pids and within(joined)),
        "members_lost": sum(1 for pid, _, _, left in s.members if pid in pids and left and within(left)),
        "active_total": sum(1 for pid, _, joined, left in s.members
                            if pid in pids and joined <= last and not (left and left <= last)),
        "retention_90_days": sum(known) / len(known) if known else None,
        "openings_by_occupation": {r: [{"soc_code": soc, "openings": n}
                                       for soc, n in sorted(c.items(), key=lambda x: (-x[1], x[0]))[:10]]
                                   for r, c in sorted(rounds.items())},
    }


def measured(values: dict) -> dict:
    """The same keys from the API's values."""
    picked = {k: values[k] for k in ("hires", "local_hire_rate", "career_changers_hired", "median_starting_wage",
                                      "tours_held", "meetings_held", "students_reached", "employers_engaged",
                                      "new_members", "members_lost", "retention_90_days", "openings_by_occupation")}
    return picked | {"active_total": values["active_members"]["total"]}
