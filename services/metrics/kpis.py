"""The KPI catalogue: every shared-measurement KPI as a declared, versioned definition, computed
from merged facts (services/metrics/domain.py) for one scope (a partnership, or all of a region,
a sector or the state) and one period. Pure code, no I/O.

A changed formula is a new `version` of its KPI. Formulas read stored facts, so a new formula
applies to all history at once; a change in what is *recorded* from events needs
`backbone kpis rebuild`. Each definition states its dating rule, what counts, what is excluded and
a worked example (docs/kpis.md explains the rules they share).
"""

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import NamedTuple

from services.metrics.domain import WAGES, WORK_BASED_LEARNING, Facts, HeldActivity, held_activities, without_activities
from shared.catalog import BY_MODEL
from shared.contracts import activities as act
from shared.contracts import demand as dem
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.contracts.base import ActivityKind, Audience, EventData, OrganisationKind
from shared.periods import Grain, Period

Value = float | None | dict


class Unit(StrEnum):
    COUNT = "count"
    RATIO = "ratio"  # 0..1; null when nothing was measured
    USD_PER_HOUR = "usd_per_hour"
    BREAKDOWN = "breakdown"  # a mapping, e.g. members by kind


class Aggregation(StrEnum):
    EVENTS = "sum over the events dated in the period"
    DISTINCT = "distinct organisations over the events dated in the period"
    HELD = "over the activities held in the period (dated by their day), each with its latest attendance"
    HELD_DISTINCT = "distinct organisations over the activities held in the period (dated by their day)"
    MEDIAN = "median over the events dated in the period"
    RATIO = "ratio of two sums over the events dated in the period"
    STOCK = "state on the last day of the period"
    COHORT = "over the hires that started in the period, with everything known of them since"
    LATEST_PER_EMPLOYER = "per survey round, the latest response of each employer in the period"


class Tenure(NamedTuple):  # a tuple: views build tens of thousands of them
    """What is known of one hire of a cohort."""

    start: str  # ISO days throughout: compared as strings, tens of thousands per view
    ended: str | None  # the first ISO day known not to be with the employer (separated, or a check said so)
    employed: str  # the last ISO day known to be: a check that found them, or the day before a separation

    def employed_on(self, day: str) -> bool | None:
        """No if it had ended by `day` (a known end wins over a later check), yes if they are known
        to be employed on or after `day` (employment is taken as continuous from the start), else
        unknown."""
        if self.ended is not None and self.ended <= day:
            return False
        return True if self.employed >= day else None


@dataclass
class View:
    """What KPIs are computed from, for one scope and period."""

    period: Period
    flow: Facts  # dated facts of the period's months
    since: Facts  # the dates (maxima, minima) of dated facts from the period's first month on: what
    # became of the period's hires (the rest is not merged: a month's view would merge a year)
    roster: Facts  # the scope's rosters: members, action teams, targets
    kinds: dict[str, str]  # organisation id -> kind
    activities: list[HeldActivity]  # the scope's activities held in the period
    # A view of several partnerships is composed of their parts (`composed`): its flow then has no
    # per-hire or per-response facts, and its cohort and openings are the parts' added up.
    parts: list["Part"] | None = None
    # retention rule -> (hires known retained, hires with a known status): a rate and its coverage
    # read the same tally, worked out once
    tallies: dict[Callable, tuple[int, int]] = field(default_factory=dict, init=False, repr=False)

    def retention(self, retained: "Retained") -> tuple[int, int]:
        """Of the cohort, how many are known retained by this rule, and how many have a known status."""
        tally = self.tallies.get(retained)
        if tally is None:
            if self.parts is not None:
                each = [part.tallies[retained] for part in self.parts]
                tally = (sum(kept for kept, _ in each), sum(known for _, known in each))
            else:
                statuses = [retained(tenure) for tenure in self.cohort]
                tally = (statuses.count(True), len(statuses) - statuses.count(None))
            self.tallies[retained] = tally
        return tally

    @cached_property
    def held(self) -> "Held":
        """What the KPIs read of the activities held in the period."""
        if self.parts is not None:
            return Held.added(part.held for part in self.parts)
        return Held.of(self.activities)

    @cached_property
    def cohort_size(self) -> int:
        return sum(p.cohort_size for p in self.parts) if self.parts is not None else len(self.cohort)

    @cached_property
    def openings(self) -> dict[str, Counter]:
        """Survey round -> expected openings by SOC code, from each employer's latest response."""
        rounds: dict[str, Counter] = {}
        if self.parts is not None:
            for part in self.parts:
                for survey_round, openings in part.openings.items():
                    rounds.setdefault(survey_round, Counter()).update(openings)
            return rounds
        for key, entry in self.flow.latest.items():
            if key.startswith("response:"):
                rounds.setdefault(key.split("/")[1], Counter()).update(entry[2])
        return rounds

    @cached_property
    def cohort(self) -> list[Tenure]:
        """The period's hires, once for the retention KPIs."""
        ends, employed = self.since.minima, self.since.maxima
        cohort = []
        for key, entry in self.flow.latest.items():
            if key.startswith("hire:") and entry[2] is not None:  # None: the hire was voided
                hire = key[5:]
                separated, absent = ends.get(f"separated:{hire}"), ends.get(f"absent:{hire}")
                ended = min(separated, absent) if separated and absent else separated or absent
                last = employed.get(f"employed:{hire}", "")
                if separated:  # a separation on day N proves employment up to N - 1
                    last = max(last, _days_after(separated, -1))
                cohort.append(Tenure(entry[2], ended, last))
        return cohort


@dataclass
class Standing:
    """What a scope's rosters and the directory say whatever the period, worked out once for
    every period read (services/metrics/queries.py keeps it while the rosters are unchanged)."""

    roster: Facts  # the rosters merged, without their activities: members, action teams, targets
    kinds: dict[str, str]  # organisation id -> kind
    held: list[list[HeldActivity]]  # per partnership, its held activities by day

    def held_in(self, period: Period) -> list[HeldActivity]:
        start, end = period.start.isoformat(), period.end.isoformat()
        return [a for by_day in self.held for a in by_day[bisect_left(by_day, start, key=_day):
                                                            bisect_right(by_day, end, key=_day)]]


def _day(activity: HeldActivity) -> str:
    return activity.day


def held_by_day(roster: Facts) -> list[HeldActivity]:
    return sorted(held_activities(roster), key=_day)


def standing(rosters: Iterable[Facts], directory: Iterable[Facts], held: Iterable[list[HeldActivity]]) -> Standing:
    """`rosters`: the scope's, without their activities; `held`: each one's held_by_day."""
    roster = Facts()
    for facts in rosters:
        roster.merge(facts)
    kinds = {entry[2]["organisation_id"]: entry[2]["kind"]
             for key, entry in roster.latest.items() if key.startswith("member:")}
    for facts in directory:  # the registry has the last word on an organisation's kind
        kinds.update({key.removeprefix("kind:"): entry[2] for key, entry in facts.latest.items()
                      if key.startswith("kind:")})
    # one list per partnership's roster: activity ids are unique within a partnership
    return Standing(roster, kinds, list(held))


def view_of(period: Period, dated: Iterable[tuple[str, Facts]], scope: Standing) -> View:
    """`dated`: (month, facts) of the scope from the period's first month on."""
    last = period.months[-1]
    flow, since = Facts(), Facts()
    for month, facts in dated:
        if month <= last:
            flow.merge(facts)
        since.merge_dates(facts)
    return View(period, flow, since, scope.roster, scope.kinds, scope.held_in(period))


@dataclass
class Held:
    """What the KPIs read of held activities, in one pass over them; adds up across partnerships
    (an activity is one partnership's)."""

    kinds: Counter = field(default_factory=Counter)  # kind -> activities held
    reached: Counter = field(default_factory=Counter)  # (kind, audience) -> people counted
    present: set[str] = field(default_factory=set)  # organisations that took part or were counted
    at_hiring_events: set[str] = field(default_factory=set)  # the same, at hiring events
    hosting: set[str] = field(default_factory=set)  # hosts of work-based learning

    @classmethod
    def of(cls, activities: Iterable[HeldActivity]) -> "Held":
        held = cls()
        for a in activities:
            held.kinds[a.kind] += 1
            for audience, people in a.counts.items():
                held.reached[a.kind, audience] += people
            held.present.update(a.participants, a.attendees)
            if a.kind == ActivityKind.HIRING_EVENT:
                held.at_hiring_events.update(a.participants, a.attendees)
            if a.kind in WORK_BASED_LEARNING:
                held.hosting.update(a.hosts)
        return held

    @classmethod
    def added(cls, each: Iterable["Held"]) -> "Held":
        held = cls()
        for other in each:
            held.kinds.update(other.kinds)
            held.reached.update(other.reached)
            held.present |= other.present
            held.at_hiring_events |= other.at_hiring_events
            held.hosting |= other.hosting
        return held


@dataclass(frozen=True)
class Part:
    """One partnership's share of a period's KPIs, for the scopes holding several: what adds up
    across partnerships (counts, histograms and sets; cohort tallies and survey openings, whose
    facts are keyed by partnership), without the per-hire and per-response facts behind them. Kept
    per partnership, a scope's figures after a batch of one partnership are worked out from that
    one's facts and the others' parts."""

    flow: Facts  # the period's counts, histograms and sets
    tallies: dict[Callable, tuple[int, int]]  # retention rule -> View.retention
    cohort_size: int
    openings: dict[str, Counter]  # View.openings
    held: Held  # View.held


def part_of(view: View) -> Part:
    """`view`: one partnership's."""
    flow = Facts(counts=view.flow.counts, histograms=view.flow.histograms, sets=view.flow.sets)
    return Part(flow, {rule: view.retention(rule) for rule in RETENTION_RULES}, view.cohort_size, view.openings,
                view.held)


def dated_part(period: Period, dated: Iterable[tuple[str, Facts]], held: list[HeldActivity]) -> Part:
    """A partnership's part from its dated facts (month, facts) and its held activities by day
    (held_by_day); nothing else of its roster is in a part."""
    return part_of(view_of(period, dated, Standing(Facts(), {}, [held])))


def composed(period: Period, parts: Iterable[Part], scope: Standing) -> View:
    """The view of a scope of several partnerships from each one's part (their rosters and kinds
    from `scope`, as `view_of` has them; their held activities from the parts): every KPI as over
    their facts merged. A retention rule of the catalogue must be among RETENTION_RULES."""
    parts = list(parts)
    flow = Facts()
    for part in parts:
        flow.merge(part.flow)
    return View(period, flow, Facts(), scope.roster, scope.kinds, [], parts=parts)


def build_view(period: Period, dated: Iterable[tuple[str, Facts]], rosters: Iterable[Facts],
               directory: Iterable[Facts]) -> View:
    rosters = list(rosters)
    return view_of(period, dated, standing([without_activities(f) for f in rosters], directory,
                                           [held_by_day(f) for f in rosters]))


# --- formulas --------------------------------------------------------------------------------

def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _count(name: str) -> Callable[[View], float]:
    return lambda v: v.flow.counts[name]


def _held(*kinds: ActivityKind) -> Callable[[View], float]:
    wanted = {k.value for k in kinds}
    return lambda v: sum(n for kind, n in v.held.kinds.items() if kind in wanted)


def _reached(*audiences: Audience, kinds: Iterable[ActivityKind] = ()) -> Callable[[View], float]:
    """People of these audiences counted at held activities (of these kinds; all if none)."""
    names, wanted = {a.value for a in audiences}, {k.value for k in kinds}
    return lambda v: sum(n for (kind, audience), n in v.held.reached.items()
                         if audience in names and (not wanted or kind in wanted))


def _employers(v: View, organisations: Iterable[str]) -> set[str]:
    return {o for o in organisations if v.kinds.get(o) == OrganisationKind.EMPLOYER}


def employers_engaged(v: View) -> float:
    # Survey respondents are employers by definition; activity participants only if the roster says so.
    return len(_employers(v, v.held.present) | v.flow.sets.get("respondents", set()))


def hiring_event_employers(v: View) -> float:
    return len(_employers(v, v.held.at_hiring_events))


def employers_hosting(v: View) -> float:
    return len(_employers(v, v.held.hosting))


def _by_member(facts: Facts, prefix: str) -> dict[str, set[str]]:
    return {key.removeprefix(prefix): days for key, days in facts.sets.items() if key.startswith(prefix)}


def active_members(v: View) -> dict:
    """Members whose latest joining on or before the period's last day is later than their latest
    leaving (a member who left and rejoined is active again)."""
    end = v.period.end.isoformat()
    left = _by_member(v.roster, "left:")
    active = Counter[str]()
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


_AT_MEETINGS = (ActivityKind.PARTNERSHIP_MEETING,)


def employer_attendee_share(v: View) -> float | None:
    employers = _reached(Audience.EMPLOYERS, kinds=_AT_MEETINGS)(v)
    return _ratio(employers, employers + _reached(Audience.PUBLIC_PARTNERS, kinds=_AT_MEETINGS)(v))


Retained = Callable[[Tenure], bool | None]


def _share_retained(retained: Retained) -> Callable[[View], float | None]:
    """Of the cohort whose status is known, the share retained."""

    def share(v: View) -> float | None:
        kept, known = v.retention(retained)
        return _ratio(kept, known)

    return share


def _coverage(retained: Retained) -> Callable[[View], float | None]:
    """The share of the cohort whose status is known: how much evidence a retention rate stands on."""
    return lambda v: _ratio(v.retention(retained)[1], v.cohort_size)


# Day arithmetic on ISO days, once per distinct day: a cohort's hires share a few hundred start days.
@lru_cache(maxsize=8192)
def _days_after(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


@lru_cache(maxsize=8192)
def _quarter_after(day: str, quarters: int) -> str:
    """The first day of the `quarters`-th calendar quarter after the one holding `day`."""
    start = date.fromisoformat(day)
    month = (start.month - 1) // 3 * 3 + 3 * quarters  # months after January of start's year
    return date(start.year + month // 12, month % 12 + 1, 1).isoformat()


def _after(days: int) -> Retained:
    return lambda t: t.employed_on(_days_after(t.start, days))


def in_q2_and_q4(t: Tenure) -> bool | None:
    """WIOA-style: employed by the same employer in the 2nd and in the 4th quarter after the quarter
    of hire, judged on each quarter's first day (docs/kpis.md: how it differs from the federal one)."""
    q2, q4 = t.employed_on(_quarter_after(t.start, 2)), t.employed_on(_quarter_after(t.start, 4))
    if q2 is False or q4 is False:
        return False
    return True if q2 and q4 else None


AFTER_90_DAYS, AFTER_180_DAYS = _after(90), _after(180)
RETENTION_RULES: tuple[Retained, ...] = (AFTER_90_DAYS, AFTER_180_DAYS, in_q2_and_q4)


def openings_by_occupation(v: View, top: int = 10) -> dict:
    """Per survey round: the top SOC codes by expected openings, each employer's latest answer."""
    rounds = v.openings
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
    _: KW_ONLY
    dating: str  # which day puts an event (or activity, or hire) in a period
    counts: str  # what is counted
    excludes: str  # what is left out
    example: str  # a worked example
    celebrate: bool = False  # round numbers in a program year are milestones
    coverage: str | None = None  # the KPI that reports how much of this one's cohort is known

    @property
    def scalar(self) -> bool:
        return self.unit is not Unit.BREAKDOWN

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "title": self.title, "description": self.description,
                "unit": self.unit.value, "aggregation": self.aggregation.value,
                "feeds": [BY_MODEL[m].type for m in self.feeds], "dating": self.dating, "counts": self.counts,
                "excludes": self.excludes, "example": self.example, "coverage": self.coverage}


_ACTIVITY = (act.ActivityScheduled, act.ActivityRescheduled, act.ActivityCancelled, act.ActivityCompleted)
_ATTENDANCE = (*_ACTIVITY, act.AttendanceRecorded)
_MEMBERS = (mem.MemberJoined, mem.MemberLeft)
_RETENTION = (out.HireRecorded, out.RetentionChecked, out.SeparationRecorded)

# The rules activity KPIs share (docs/kpis.md, "Activities and attendance").
_ACTIVITY_DAY = ("The activity's day: the UTC day of its latest scheduled or rescheduled start; of its completion "
                 "when no schedule is known. Not when its events were sent.")
_NOT_HELD = "Activities cancelled (latest closing a cancellation) or not completed yet, and anything recorded for them."
_ATTENDANCE_RULE = ("Per activity and audience, the latest attendance record (by event time, then id) is the count: a "
                    "correction replaces the earlier figure.")
_COHORT_DAY = "The hire's start date puts it in the cohort of the period; evidence from any later day counts."
_EVIDENCE = ("A retention check proves employment on its day (and, employment being continuous, before it); a "
             "separation on day N proves employment up to N - 1 and its absence from N; a check that finds the "
             "person gone proves absence from its day. A known end wins over a later check.")
_UNKNOWN = "Hires whose status on the day measured is unknown (no evidence reaches it) are left out of the rate."


def _retention_kpis(name: str, title: str, what: str, retained: Retained, example: str) -> tuple[Kpi, Kpi]:
    """A retention rate over the known part of the cohort, and its coverage."""
    coverage = f"{name}_coverage"
    return (
        Kpi(name, 2, title, f"Of the period's hires whose status {what} is known, the share still with the same "
            "employer. Read it with its coverage.", Unit.RATIO, Aggregation.COHORT, _RETENTION,
            _share_retained(retained), ("hires", "retention"), dating=_COHORT_DAY,
            counts=f"{_EVIDENCE} Retained: known employed {what}.", excludes=_UNKNOWN, example=example,
            coverage=coverage),
        Kpi(coverage, 1, f"{title}: coverage", f"The share of the period's hires whose status {what} is known: "
            f"how much evidence `{name}` stands on.", Unit.RATIO, Aggregation.COHORT, _RETENTION,
            _coverage(retained), ("hires", "retention"), dating=_COHORT_DAY,
            counts=f"Hires whose status {what} is known, by the evidence rules of `{name}`.",
            excludes="Nothing: every hire of the cohort is in the denominator.",
            example="10 hires, 6 with a known status: 60%."),
    )


def _counted(name: str, fact: str, title: str, description: str, model: type[EventData], dated_by: str,
             example: str, celebrate: bool = False) -> Kpi:
    """An outcome counted in the period of the day it states."""
    return Kpi(name, 1, title, description, Unit.COUNT, Aggregation.EVENTS, (model,), _count(fact), (fact,),
               dating=f"The event's `{dated_by}` (the day it happened, not when it was sent).",
               counts=f"Each `{BY_MODEL[model].type}` event once (a resent id once).",
               excludes="Nothing else.", example=example, celebrate=celebrate)


def _held_kpi(name: str, title: str, kinds: tuple[ActivityKind, ...], celebrate: bool = False) -> Kpi:
    named = " and ".join(k.value.replace("_", " ") + "s" for k in kinds)
    return Kpi(name, 2, title, f"{named.capitalize()} held in the period.", Unit.COUNT, Aggregation.HELD, _ACTIVITY,
               _held(*kinds), tuple("held:" + k.value for k in kinds), dating=_ACTIVITY_DAY,
               counts=f"Completed {named}, each once.", excludes=_NOT_HELD,
               example="One scheduled for 30 September, rescheduled to 2 October and completed then: it counts in "
                       "October (2025-Q4), not September.", celebrate=celebrate)


CATALOGUE: tuple[Kpi, ...] = (
    # engagement
    Kpi("employers_engaged", 2, "Employers engaged",
        "Distinct employers that took part in or were counted at an activity held in the period, or answered a "
        "demand survey in the period.", Unit.COUNT, Aggregation.HELD_DISTINCT,
        (*_ATTENDANCE, dem.DemandSurveyResponded, mem.MemberJoined, mem.OrganisationRegistered),
        employers_engaged, ("held:", "attendance", "demand"),
        dating=f"Activities: {_ACTIVITY_DAY} Surveys: the response's `responded_on`.",
        counts="Organisations whose kind is employer (the registry's word, else the roster's), among the "
               "participants of held activities and the organisations named in their attendance; every survey "
               "respondent. Each employer once statewide.",
        excludes=f"{_NOT_HELD} Schools, providers and other non-employers.",
        example="Acme takes part in a tour on 3 Sept and answers a survey on 5 Sept; Beta is counted at a career "
                "day later cancelled: 1 employer engaged in September.", celebrate=True),
    Kpi("employers_hosting", 1, "Employers hosting work-based learning",
        "Distinct employers that hosted a plant tour, career day or school visit held in the period.",
        Unit.COUNT, Aggregation.HELD_DISTINCT, (*_ACTIVITY, mem.MemberJoined, mem.OrganisationRegistered),
        employers_hosting, ("hosted",), dating=_ACTIVITY_DAY,
        counts="The hosts (the schedule's `host_ids`) that are employers, of held plant tours, career days and "
               "school visits. Each employer once per scope, however often it hosts.",
        excludes=f"{_NOT_HELD} Activities held without a known schedule (no hosts known); other kinds (meetings, "
                 "hiring events); hosts that are not employers (a college hosting a career day).",
        example="Acme hosts two tours in October, Beta a career day in October that is cancelled, the college a "
                "school visit: 1 employer hosting in 2025-Q4."),
    Kpi("active_members", 1, "Active members by kind",
        "Member organisations on the last day of the period, by kind of organisation, with the total.",
        Unit.BREAKDOWN, Aggregation.STOCK, _MEMBERS, active_members, ("members",),
        dating="The state on the period's last day, from `joined_on` and `left_on`.",
        counts="Members whose latest joining on or before that day is later than their latest leaving.",
        excludes="Members who left on or before that day and did not rejoin; joinings after it.",
        example="Joined 1 Jan 2024, left 10 Mar 2026, rejoined 1 May 2026: active at the end of PY2025, not of "
                "2026-Q1."),
    Kpi("new_members", 1, "New members", "Organisations that joined in the period.",
        Unit.COUNT, Aggregation.EVENTS, (mem.MemberJoined,), new_members, ("members",),
        dating="`joined_on`.", counts="Each joining (a member who rejoins counts again).",
        excludes="Joinings dated outside the period.", example="Joined 30 June 2025: PY2024, not PY2025."),
    Kpi("members_lost", 1, "Members lost", "Organisations that left in the period.",
        Unit.COUNT, Aggregation.EVENTS, (mem.MemberLeft,), members_lost, ("members",),
        dating="`left_on`.", counts="Each leaving.", excludes="Leavings dated outside the period.",
        example="Left 1 July 2025: PY2025."),
    Kpi("action_teams_active", 1, "Action teams active",
        "Action teams whose status on the last day of the period is active.",
        Unit.COUNT, Aggregation.STOCK, (mem.ActionTeamFormed, mem.ActionTeamChanged), action_teams_active,
        ("action_teams",), dating="The team's latest status change (event time) on or before the period's last day.",
        counts="Teams whose status then is active.", excludes="Paused and closed teams; teams formed after it.",
        example="Formed in August, closed in February: active at the end of 2025-Q4, not of 2026-Q1."),
    # activity
    _held_kpi("tours_held", "Plant tours held", (ActivityKind.PLANT_TOUR,), celebrate=True),
    _held_kpi("career_events_held", "Career events held", (ActivityKind.CAREER_DAY, ActivityKind.SCHOOL_VISIT),
              celebrate=True),
    _held_kpi("hiring_events_held", "Hiring events held", (ActivityKind.HIRING_EVENT,)),
    Kpi("hiring_event_employers", 2, "Employers at hiring events",
        "Distinct employers that took part in, or were counted at, a hiring event held in the period.",
        Unit.COUNT, Aggregation.HELD_DISTINCT, _ATTENDANCE, hiring_event_employers,
        ("held:" + ActivityKind.HIRING_EVENT.value, "attendance"), dating=_ACTIVITY_DAY,
        counts="Employers among the participants of held hiring events and the organisations named in their "
               "attendance, each once.", excludes=f"{_NOT_HELD} Non-employers.",
        example="Acme and the college at a fair on 5 Nov: 1 employer in November."),
    _held_kpi("meetings_held", "Partnership meetings held", (ActivityKind.PARTNERSHIP_MEETING,)),
    Kpi("students_reached", 2, "Students reached", "Students counted at activities held in the period.",
        Unit.COUNT, Aggregation.HELD, _ATTENDANCE, _reached(Audience.STUDENTS), ("attendance",),
        dating=_ACTIVITY_DAY, counts=f"The `students` count of attendance records. {_ATTENDANCE_RULE}",
        excludes=_NOT_HELD,
        example="A tour on 20 Sept; attendance sent in December says 7 students, a correction says 9: 9 students "
                "in September. Had the tour been cancelled: none.", celebrate=True),
    Kpi("job_seekers_reached", 2, "Job seekers reached",
        "Job seekers and career changers counted at activities held in the period.",
        Unit.COUNT, Aggregation.HELD, _ATTENDANCE, _reached(Audience.JOB_SEEKERS, Audience.CAREER_CHANGERS),
        ("attendance",), dating=_ACTIVITY_DAY,
        counts=f"The `job_seekers` and `career_changers` counts of attendance records. {_ATTENDANCE_RULE}",
        excludes=_NOT_HELD, example="A fair on 5 Nov with 12 job seekers and 3 career changers: 15 in November.",
        celebrate=True),
    Kpi("employer_attendee_share", 2, "Industry-led check",
        "Employer attendees as a share of employer and public-partner attendees at partnership meetings held in "
        "the period.", Unit.RATIO, Aggregation.HELD, _ATTENDANCE, employer_attendee_share, ("meeting_attendance",),
        dating=_ACTIVITY_DAY,
        counts=f"`employers` and `public_partners` counts at held partnership meetings. {_ATTENDANCE_RULE}",
        excludes=f"{_NOT_HELD} Other audiences and other kinds of activity. No attendees: no value.",
        example="Meetings with 9 employers and 3 public partners, then 1 and 7: 10 of 20, 50%."),
    # talent
    Kpi("hires", 1, "Hires", "Hires that started in the period.", Unit.COUNT, Aggregation.EVENTS,
        (out.HireRecorded,), _count("hires"), ("hires",), dating="`start_date`.",
        counts="Each hire id once.", excludes="Hires starting outside the period.",
        example="Recorded in August, starting 1 July 2025: PY2025, 2025-Q3.", celebrate=True),
    Kpi("local_hire_rate", 1, "Local hire rate", "Residents of the region as a share of the period's hires.",
        Unit.RATIO, Aggregation.RATIO, (out.HireRecorded,), local_hire_rate, ("hires",), dating="`start_date`.",
        counts="Hires marked `resident`, over all hires.", excludes="No hires: no value.",
        example="3 residents among 4 hires: 75%."),
    Kpi("career_changers_hired", 1, "Career changers entering", "Career changers among the period's hires.",
        Unit.COUNT, Aggregation.EVENTS, (out.HireRecorded,), _count("hires:career_changer"), ("hires",),
        dating="`start_date`.", counts="Hires marked `career_changer`.", excludes="Other hires.",
        example="2 of 5 hires are career changers: 2."),
    Kpi("median_starting_wage", 1, "Median starting wage",
        "Median hourly starting wage of the period's hires that reported one (mean of the middle two "
        "when even).", Unit.USD_PER_HOUR, Aggregation.MEDIAN, (out.HireRecorded,), median_starting_wage,
        ("hires",), dating="`start_date`.", counts="`hourly_wage` of each hire that states one.",
        excludes="Hires without a wage. None reported: no value.", example="$18, $21.50, $24.25, $30: $22.875/h."),
    _counted("placements", "placements", "Placements", "Training placements into jobs that started in the period.",
             out.PlacementRecorded, "start_date", "A placement starting 30 June 2026: PY2025.", celebrate=True),
    _counted("training_enrolments", "training_enrolments", "Training enrolments",
             "Enrolments in training in the period.",
             out.TrainingEnrolled, "enrolled_on", "Enrolled 1 Oct 2025: 2025-Q4."),
    _counted("training_completions", "training_completions", "Training completions",
             "Training completed in the period.",
             out.TrainingCompleted, "completed_on", "Completed 31 Dec 2025: 2025-Q4.", celebrate=True),
    _counted("credentials_earned", "credentials", "Credentials earned", "Credentials earned in the period.",
             out.CredentialEarned, "earned_on", "Earned 1 Jan 2026: 2026-Q1.", celebrate=True),
    _counted("apprenticeships_started", "apprenticeships", "Apprenticeships started",
             "Apprenticeships that started in the period.", out.ApprenticeshipStarted, "started_on",
             "Started 1 July 2025: PY2025."),
    # retention
    *_retention_kpis("retention_90_days", "Retained at 90 days", "90 days after the start", AFTER_90_DAYS,
                     "Hire A separates on day 151, hire B on day 30, hire C has no evidence: A retained, B not, C "
                     "unknown: 50%, coverage 2 of 3 (67%)."),
    *_retention_kpis("retention_180_days", "Retained at 180 days", "180 days after the start", AFTER_180_DAYS,
                     "Hire A checked employed on day 200, hire B checked gone on day 120, hire C separated on day "
                     "181: A and C retained, B not: 67%, coverage 100%."),
    *_retention_kpis("retention_q2_q4", "Retention with the same employer (WIOA-style)",
                     "in the second and the fourth quarter after the quarter of hire", in_q2_and_q4,
                     "Hired 15 Aug 2025 (2026's Q1 is the 2nd quarter after, Q3 the 4th): separated 10 Aug 2026: "
                     "retained (employed on 1 Jan and 1 Jul 2026); separated 10 Mar 2026: not retained."),
    # demand
    Kpi("openings_by_occupation", 1, "Expected openings by occupation",
        "Per survey round, the top SOC codes by openings, from each employer's latest response in the period.",
        Unit.BREAKDOWN, Aggregation.LATEST_PER_EMPLOYER, (dem.DemandSurveyResponded,), openings_by_occupation,
        ("demand",), dating="`responded_on`.",
        counts="Per round and employer, the latest response (by `responded_on`, then event time); openings "
               "summed by SOC code, top 10.", excludes="An employer's earlier responses in the same round.",
        example="Acme answers 5 then 3 welders in the spring round: 3."),
)

BY_NAME: dict[str, Kpi] = {k.name: k for k in CATALOGUE}


def evaluate(view: View, kpis: Iterable[Kpi] = CATALOGUE) -> dict[str, Value]:
    return {k.name: k.compute(view) for k in kpis}


def lineage(kpi: Kpi, period: Period, dated: Iterable[tuple[str, Facts]], rosters: Iterable[Facts],
            limit: int, held: Iterable[HeldActivity] | None = None) -> tuple[int, list[str]]:
    """How many events fed a KPI value, and (up to `limit`) which. Each stored document keeps at
    most LINEAGE_LIMIT ids per fact, so the ids can be fewer than the events.

    Cohort KPIs also name the retention events of later months; the others only their period's.
    Activity KPIs name the completions, schedules and (latest) attendance records of the activities
    held in the period, exactly."""
    cohort = kpi.aggregation is Aggregation.COHORT
    last = period.months[-1]
    rosters = list(rosters)
    start, end = period.start.isoformat(), period.end.isoformat()
    if held is None:
        held = [a for facts in rosters for a in held_activities(facts) if start <= a.day <= end]
    activity_ids = sorted({i for a in held for name in kpi.lineage for i in _activity_lineage(name, a)})
    events, ids = len(activity_ids), activity_ids[:limit]
    for facts in [f for month, f in dated if month <= last or cohort] + rosters:
        for fact, (n, fact_ids) in facts.lineage.items():
            if any(fact == name or (name.endswith(":") and fact.startswith(name)) for name in kpi.lineage):
                events += n
                ids.extend(fact_ids[:max(0, limit - len(ids))])
    return events, ids


def _activity_lineage(name: str, a: HeldActivity) -> Iterable[str]:
    """The event ids behind one held activity's part in a KPI whose lineage names `name`."""
    if name.startswith("held:") and (name == "held:" or name == "held:" + a.kind):
        return (a.completion_id,)
    if name == "attendance" or (name == "meeting_attendance" and a.kind == ActivityKind.PARTNERSHIP_MEETING):
        return a.attendance_ids
    if name == "hosted" and a.kind in WORK_BASED_LEARNING and a.hosts and a.schedule_id:  # hosts: from the schedule
        return (a.completion_id, a.schedule_id)
    return ()


# --- targets and milestones ------------------------------------------------------------------

def targets(roster: Facts, partnership_id: str) -> dict[tuple[str, ...], float]:
    """(kpi, period) -> target value of one partnership (a removed target is kept as None: left out)."""
    prefix = f"target:{partnership_id}/"
    return {tuple(key.removeprefix(prefix).split("/")): entry[2]
            for key, entry in roster.latest.items() if key.startswith(prefix) and entry[2] is not None}


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
    found: list[int] = []
    scale = 10
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
        if not kpi.scalar or not isinstance(value, int | float):  # a scalar KPI's value: a number or None
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
