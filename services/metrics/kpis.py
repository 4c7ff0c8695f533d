"""The KPI catalogue: every shared-measurement KPI as a declared, versioned definition, computed
from merged facts (services/metrics/domain.py) for one scope (a partnership, or all of a region,
a sector or the state) and one period. Pure code, no I/O.

A changed formula is a new `version` of its KPI. Formulas read stored facts, so a new formula
applies to all history at once; a change in what is *recorded* from events needs
`backbone kpis rebuild`.
"""

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple

from services.metrics.domain import AT_MEETINGS, HELD, REACHED, WAGES, Facts, Grain, Period
from shared.catalog import BY_MODEL
from shared.contracts import activities as act
from shared.contracts import demand as dem
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.contracts.base import ActivityKind, Audience, EventData, OrganisationKind

Value = float | None | dict


class Unit(StrEnum):
    COUNT = "count"
    RATIO = "ratio"  # 0..1; null when nothing was measured
    USD_PER_HOUR = "usd_per_hour"
    BREAKDOWN = "breakdown"  # a mapping, e.g. members by kind


class Aggregation(StrEnum):
    EVENTS = "sum over the events dated in the period"
    DISTINCT = "distinct organisations over the events dated in the period"
    MEDIAN = "median over the events dated in the period"
    RATIO = "ratio of two sums over the events dated in the period"
    STOCK = "state on the last day of the period"
    COHORT = "over the hires that started in the period, with everything known of them since"
    LATEST_PER_EMPLOYER = "per survey round, the latest response of each employer in the period"


class Tenure(NamedTuple):  # a tuple: views build tens of thousands of them
    """What is known of one hire of a cohort."""

    start: date
    ended: str | None  # the first ISO day known not to be with the employer (separated, or a check said so)
    employed: str  # the last ISO day known to be ("" if never checked)

    def employed_on(self, day: date) -> bool | None:
        """No if it had ended by `day`, yes if a check on or after `day` found them employed, else unknown."""
        iso = day.isoformat()
        if self.ended is not None and self.ended <= iso:
            return False
        return True if self.employed >= iso else None


@dataclass
class View:
    """What KPIs are computed from, for one scope and period."""

    period: Period
    flow: Facts  # dated facts of the period's months
    since: Facts  # dated facts from the period's first month on: what became of the period's hires
    roster: Facts  # the scope's rosters: members, action teams, targets
    kinds: dict[str, str]  # organisation id -> kind

    @cached_property
    def cohort(self) -> list[Tenure]:
        """The period's hires, once for the three retention KPIs."""
        ends, employed = self.since.minima, self.since.maxima
        cohort = []
        for key, entry in self.flow.latest.items():
            if key.startswith("hire:"):
                hire = key[5:]
                ended = [d for d in (ends.get(f"separated:{hire}"), ends.get(f"absent:{hire}")) if d]
                cohort.append(Tenure(date.fromisoformat(entry[2]), min(ended) if ended else None,
                                     employed.get(f"employed:{hire}", "")))
        return cohort


def build_view(period: Period, dated: Iterable[tuple[str, Facts]], rosters: Iterable[Facts],
               directory: Iterable[Facts]) -> View:
    """`dated`: (month, facts) of the scope from the period's first month on."""
    last = period.months[-1]
    flow, since = Facts(), Facts()
    for month, facts in dated:
        if month <= last:
            flow.merge(facts)
        since.merge(facts)
    roster = Facts()
    for facts in rosters:
        roster.merge(facts)
    kinds = {entry[2]["organisation_id"]: entry[2]["kind"]
             for key, entry in roster.latest.items() if key.startswith("member:")}
    for facts in directory:  # the registry has the last word on an organisation's kind
        kinds.update({key.removeprefix("kind:"): entry[2] for key, entry in facts.latest.items()
                      if key.startswith("kind:")})
    return View(period, flow, since, roster, kinds)


# --- formulas --------------------------------------------------------------------------------

def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _count(name: str) -> Callable[[View], float]:
    return lambda v: v.flow.counts[name]


def _held(*kinds: ActivityKind) -> Callable[[View], float]:
    return lambda v: sum(v.flow.counts[HELD + k.value] for k in kinds)


def _reached(*audiences: Audience) -> Callable[[View], float]:
    return lambda v: sum(v.flow.counts[REACHED + a.value] for a in audiences)


def _employers(v: View, name: str) -> set[str]:
    return {o for o in v.flow.sets.get(name, ()) if v.kinds.get(o) == OrganisationKind.EMPLOYER}


def employers_engaged(v: View) -> float:
    # Survey respondents are employers by definition; activity participants only if the roster says so.
    return len(_employers(v, "engaged") | v.flow.sets.get("respondents", set()))


def hiring_event_employers(v: View) -> float:
    return len(_employers(v, "hiring_event_orgs"))


def _by_member(facts: Facts, prefix: str) -> dict[str, set[str]]:
    return {key.removeprefix(prefix): days for key, days in facts.sets.items() if key.startswith(prefix)}


def active_members(v: View) -> dict:
    """Members whose latest joining on or before the period's last day is later than their latest
    leaving (a member who left and rejoined is active again)."""
    end = v.period.end.isoformat()
    left = _by_member(v.roster, "left:")
    active = Counter()
    for member, joins in _by_member(v.roster, "joined:").items():
        last_join = max((d for d in joins if d <= end), default=None)
        if last_join is not None and last_join > max((d for d in left.get(member, ()) if d <= end), default=""):
            active[v.roster.latest[f"member:{member}"][2]["kind"]] += 1
    return dict(active) | {"total": sum(active.values())}


def _dated_in_period(v: View, prefix: str) -> float:
    start, end = v.period.start.isoformat(), v.period.end.isoformat()
    return sum(start <= d <= end for days in _by_member(v.roster, prefix).values() for d in days)


def new_members(v: View) -> float:
    return _dated_in_period(v, "joined:")


def members_lost(v: View) -> float:
    return _dated_in_period(v, "left:")


def action_teams_active(v: View) -> float:
    end = v.period.end.isoformat()
    active = 0
    for changes in _by_member(v.roster, "team:").values():
        known = sorted(c for c in changes if c[:10] <= end)  # "<time>|<status>", time first
        if known and known[-1].endswith("|active"):
            active += 1
    return active


def local_hire_rate(v: View) -> float | None:
    return _ratio(v.flow.counts["hires:resident"], v.flow.counts["hires"])


def median_starting_wage(v: View) -> float | None:
    wages = v.flow.histograms.get(WAGES, Counter())
    n = sum(wages.values())
    if not n:
        return None

    def nth(k: int) -> int:  # the k-th smallest wage (from 0), walking the histogram
        for cents in sorted(wages):
            k -= wages[cents]
            if k < 0:
                return cents
        raise AssertionError("k out of range")

    return (nth((n - 1) // 2) + nth(n // 2)) / 200


def employer_attendee_share(v: View) -> float | None:
    employers = v.flow.counts[AT_MEETINGS + Audience.EMPLOYERS.value]
    return _ratio(employers, employers + v.flow.counts[AT_MEETINGS + Audience.PUBLIC_PARTNERS.value])


def _share_retained(v: View, retained: Callable[[Tenure], bool | None]) -> float | None:
    known = [r for tenure in v.cohort if (r := retained(tenure)) is not None]
    return _ratio(sum(known), len(known))


def _retained_after(days: int) -> Callable[[View], float | None]:
    after = timedelta(days=days)
    return lambda v: _share_retained(v, lambda t: t.employed_on(t.start + after))


def _quarter_after(start: date, quarters: int) -> date:
    """The first day of the `quarters`-th calendar quarter after the one holding `start`."""
    month = (start.month - 1) // 3 * 3 + 3 * quarters  # months after January of start's year
    return date(start.year + month // 12, month % 12 + 1, 1)


def retention_q2_q4(v: View) -> float | None:
    """WIOA-style: employed by the same employer in the 2nd and in the 4th quarter after the quarter
    of hire (known from its first day on)."""

    def retained(t: Tenure) -> bool | None:
        q2, q4 = t.employed_on(_quarter_after(t.start, 2)), t.employed_on(_quarter_after(t.start, 4))
        if q2 is False or q4 is False:
            return False
        return True if q2 and q4 else None

    return _share_retained(v, retained)


def openings_by_occupation(v: View, top: int = 10) -> dict:
    """Per survey round: the top SOC codes by expected openings, each employer's latest answer."""
    rounds: dict[str, Counter] = {}
    for key, entry in v.flow.latest.items():
        if key.startswith("response:"):
            survey_round = key.split("/")[1]
            rounds.setdefault(survey_round, Counter()).update(entry[2])
    return {r: [{"soc_code": soc, "openings": n} for soc, n in sorted(c.items(), key=lambda x: (-x[1], x[0]))[:top]]
            for r, c in sorted(rounds.items())}


# --- the catalogue ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Kpi:
    name: str
    version: int
    title: str
    description: str
    unit: Unit
    aggregation: Aggregation
    feeds: tuple[type[EventData], ...]
    compute: Callable[[View], Value]
    lineage: tuple[str, ...]  # facts whose event ids produced a value ("held:" = every fact starting so)
    celebrate: bool = False  # round numbers in a program year are milestones

    @property
    def scalar(self) -> bool:
        return self.unit is not Unit.BREAKDOWN

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "title": self.title, "description": self.description,
                "unit": self.unit.value, "aggregation": self.aggregation.value,
                "feeds": [BY_MODEL[m].type for m in self.feeds]}


_ACTIVITY = (act.ActivityCompleted,)
_ATTENDANCE = (act.AttendanceRecorded,)
_MEMBERS = (mem.MemberJoined, mem.MemberLeft)
_RETENTION = (out.HireRecorded, out.RetentionChecked, out.SeparationRecorded)

CATALOGUE: tuple[Kpi, ...] = (
    # engagement
    Kpi("employers_engaged", 1, "Employers engaged",
        "Distinct employers that took part in a completed activity, were counted at one, or answered a "
        "demand survey in the period.", Unit.COUNT, Aggregation.DISTINCT,
        (*_ACTIVITY, *_ATTENDANCE, dem.DemandSurveyResponded, mem.MemberJoined, mem.OrganisationRegistered),
        employers_engaged, (HELD, "attendance", "demand"), celebrate=True),
    Kpi("active_members", 1, "Active members by kind",
        "Member organisations on the last day of the period, by kind of organisation, with the total.",
        Unit.BREAKDOWN, Aggregation.STOCK, _MEMBERS, active_members, ("members",)),
    Kpi("new_members", 1, "New members", "Organisations that joined in the period.",
        Unit.COUNT, Aggregation.EVENTS, (mem.MemberJoined,), new_members, ("members",)),
    Kpi("members_lost", 1, "Members lost", "Organisations that left in the period.",
        Unit.COUNT, Aggregation.EVENTS, (mem.MemberLeft,), members_lost, ("members",)),
    Kpi("action_teams_active", 1, "Action teams active",
        "Action teams whose status on the last day of the period is active.",
        Unit.COUNT, Aggregation.STOCK, (mem.ActionTeamFormed, mem.ActionTeamChanged), action_teams_active,
        ("action_teams",)),
    # activity
    Kpi("tours_held", 1, "Plant tours held", "Plant tours completed in the period.",
        Unit.COUNT, Aggregation.EVENTS, _ACTIVITY, _held(ActivityKind.PLANT_TOUR),
        (HELD + ActivityKind.PLANT_TOUR.value,), celebrate=True),
    Kpi("career_events_held", 1, "Career events held", "Career days and school visits completed in the period.",
        Unit.COUNT, Aggregation.EVENTS, _ACTIVITY, _held(ActivityKind.CAREER_DAY, ActivityKind.SCHOOL_VISIT),
        (HELD + ActivityKind.CAREER_DAY.value, HELD + ActivityKind.SCHOOL_VISIT.value), celebrate=True),
    Kpi("hiring_events_held", 1, "Hiring events held", "Hiring events completed in the period.",
        Unit.COUNT, Aggregation.EVENTS, _ACTIVITY, _held(ActivityKind.HIRING_EVENT),
        (HELD + ActivityKind.HIRING_EVENT.value,)),
    Kpi("hiring_event_employers", 1, "Employers at hiring events",
        "Distinct employers that took part in, or were counted at, a hiring event in the period.",
        Unit.COUNT, Aggregation.DISTINCT, (*_ACTIVITY, *_ATTENDANCE), hiring_event_employers,
        (HELD + ActivityKind.HIRING_EVENT.value, "attendance")),
    Kpi("meetings_held", 1, "Partnership meetings held", "Partnership meetings completed in the period.",
        Unit.COUNT, Aggregation.EVENTS, _ACTIVITY, _held(ActivityKind.PARTNERSHIP_MEETING),
        (HELD + ActivityKind.PARTNERSHIP_MEETING.value,)),
    Kpi("students_reached", 1, "Students reached", "Students counted at activities, by when attendance was recorded.",
        Unit.COUNT, Aggregation.EVENTS, _ATTENDANCE, _reached(Audience.STUDENTS), ("attendance",), celebrate=True),
    Kpi("job_seekers_reached", 1, "Job seekers reached",
        "Job seekers and career changers counted at activities, by when attendance was recorded.",
        Unit.COUNT, Aggregation.EVENTS, _ATTENDANCE, _reached(Audience.JOB_SEEKERS, Audience.CAREER_CHANGERS),
        ("attendance",), celebrate=True),
    Kpi("employer_attendee_share", 1, "Industry-led check",
        "Employer attendees as a share of employer and public-partner attendees at partnership meetings.",
        Unit.RATIO, Aggregation.RATIO, _ATTENDANCE, employer_attendee_share, ("meeting_attendance",)),
    # talent
    Kpi("hires", 1, "Hires", "Hires that started in the period.", Unit.COUNT, Aggregation.EVENTS,
        (out.HireRecorded,), _count("hires"), ("hires",), celebrate=True),
    Kpi("local_hire_rate", 1, "Local hire rate", "Residents of the region as a share of the period's hires.",
        Unit.RATIO, Aggregation.RATIO, (out.HireRecorded,), local_hire_rate, ("hires",)),
    Kpi("career_changers_hired", 1, "Career changers entering", "Career changers among the period's hires.",
        Unit.COUNT, Aggregation.EVENTS, (out.HireRecorded,), _count("hires:career_changer"), ("hires",)),
    Kpi("median_starting_wage", 1, "Median starting wage",
        "Median hourly starting wage of the period's hires that reported one (mean of the middle two "
        "when even).", Unit.USD_PER_HOUR, Aggregation.MEDIAN, (out.HireRecorded,), median_starting_wage,
        ("hires",)),
    Kpi("placements", 1, "Placements", "Training placements into jobs that started in the period.",
        Unit.COUNT, Aggregation.EVENTS, (out.PlacementRecorded,), _count("placements"), ("placements",),
        celebrate=True),
    Kpi("training_enrolments", 1, "Training enrolments", "Enrolments in training in the period.",
        Unit.COUNT, Aggregation.EVENTS, (out.TrainingEnrolled,), _count("training_enrolments"),
        ("training_enrolments",)),
    Kpi("training_completions", 1, "Training completions", "Training completed in the period.",
        Unit.COUNT, Aggregation.EVENTS, (out.TrainingCompleted,), _count("training_completions"),
        ("training_completions",), celebrate=True),
    Kpi("credentials_earned", 1, "Credentials earned", "Credentials earned in the period.",
        Unit.COUNT, Aggregation.EVENTS, (out.CredentialEarned,), _count("credentials"), ("credentials",),
        celebrate=True),
    Kpi("apprenticeships_started", 1, "Apprenticeships started", "Apprenticeships that started in the period.",
        Unit.COUNT, Aggregation.EVENTS, (out.ApprenticeshipStarted,), _count("apprenticeships"),
        ("apprenticeships",)),
    # retention
    Kpi("retention_90_days", 1, "Retained at 90 days",
        "Of the period's hires whose status at 90 days is known, the share still with the same employer.",
        Unit.RATIO, Aggregation.COHORT, _RETENTION, _retained_after(90), ("hires", "retention")),
    Kpi("retention_180_days", 1, "Retained at 180 days",
        "Of the period's hires whose status at 180 days is known, the share still with the same employer.",
        Unit.RATIO, Aggregation.COHORT, _RETENTION, _retained_after(180), ("hires", "retention")),
    Kpi("retention_q2_q4", 1, "Retention with the same employer (WIOA-style)",
        "Of the period's hires whose status is known, the share employed by the same employer in the second "
        "and the fourth quarter after the quarter of hire.",
        Unit.RATIO, Aggregation.COHORT, _RETENTION, retention_q2_q4, ("hires", "retention")),
    # demand
    Kpi("openings_by_occupation", 1, "Expected openings by occupation",
        "Per survey round, the top SOC codes by openings, from each employer's latest response in the period.",
        Unit.BREAKDOWN, Aggregation.LATEST_PER_EMPLOYER, (dem.DemandSurveyResponded,), openings_by_occupation,
        ("demand",)),
)

BY_NAME: dict[str, Kpi] = {k.name: k for k in CATALOGUE}


def evaluate(view: View, kpis: Iterable[Kpi] = CATALOGUE) -> dict[str, Value]:
    return {k.name: k.compute(view) for k in kpis}


def lineage(kpi: Kpi, period: Period, dated: Iterable[tuple[str, Facts]], rosters: Iterable[Facts],
            limit: int) -> tuple[int, list[str]]:
    """How many events fed a KPI value, and (up to `limit`) which. Each stored document keeps at
    most LINEAGE_LIMIT ids per fact, so the ids can be fewer than the events.

    Cohort KPIs also name the retention events of later months; the others only their period's."""
    cohort = kpi.aggregation is Aggregation.COHORT
    last = period.months[-1]
    sources = [f for month, f in dated if month <= last or cohort] + list(rosters)
    events, ids = 0, []
    for facts in sources:
        for fact, (n, fact_ids) in facts.lineage.items():
            if any(fact == name or (name.endswith(":") and fact.startswith(name)) for name in kpi.lineage):
                events += n
                ids.extend(fact_ids[:max(0, limit - len(ids))])
    return events, ids


# --- targets and milestones ------------------------------------------------------------------

def targets(roster: Facts, partnership_id: str) -> dict[tuple[str, str], float]:
    """(kpi, period) -> target value of one partnership."""
    prefix = f"target:{partnership_id}/"
    return {tuple(key.removeprefix(prefix).split("/")): entry[2]
            for key, entry in roster.latest.items() if key.startswith(prefix)}


def progress(kpi: Kpi, value: Value, target: float, period: Period, today: date) -> dict:
    """Percent of target and whether the partnership is on track: counts should have reached the
    share of the target that matches the share of the period gone by; rates and wages the target."""
    measured = value if isinstance(value, (int, float)) else None
    expected = target * period.elapsed(today) if kpi.unit is Unit.COUNT else target
    return {
        "kpi": kpi.name, "target": target, "value": measured,
        "percent": round(100 * measured / target, 1) if measured is not None and target else None,
        "on_track": measured is not None and measured >= expected,
    }


def round_numbers(upto: float) -> list[int]:
    """10, 25, 50, 100, 250, 500, 1000, ... up to `upto`."""
    found, scale = [], 10
    while True:
        for step in (1, 2.5, 5):
            if (n := int(step * scale)) > upto:
                return found
            found.append(n)
        scale *= 10


@dataclass(frozen=True)
class Milestone:
    partnership_id: str
    kpi: str
    period: str
    threshold: float
    reason: str  # "target" or "round_number"
    value: float

    @property
    def key(self) -> str:
        return f"{self.partnership_id}/{self.kpi}/{self.period}/{self.reason}/{self.threshold:g}"


def milestones(partnership_id: str, period: Period, values: dict[str, Value],
               period_targets: dict[str, float]) -> list[Milestone]:
    """Every milestone these values have reached: targets met, and round numbers of the KPIs worth
    celebrating in a program year."""
    found = []
    for kpi in CATALOGUE:
        value = values.get(kpi.name)
        if not kpi.scalar or value is None:
            continue
        if kpi.celebrate and period.grain is Grain.PROGRAM_YEAR:
            found += [Milestone(partnership_id, kpi.name, period.label, n, "round_number", value)
                      for n in round_numbers(value)]
        target = period_targets.get(kpi.name)
        if target is not None and value >= target:
            found.append(Milestone(partnership_id, kpi.name, period.label, target, "target", value))
    return found


def worth_announcing(new: list[Milestone]) -> list[Milestone]:
    """Of newly reached milestones, each target, and per KPI only the highest round number: a
    jump from 0 to 120 hires is one celebration, not four."""
    highest: dict[tuple[str, str], Milestone] = {}
    announced = []
    for m in new:
        if m.reason != "round_number":
            announced.append(m)
        elif (m.kpi, m.period) not in highest or m.threshold > highest[(m.kpi, m.period)].threshold:
            highest[(m.kpi, m.period)] = m
    return announced + list(highest.values())
