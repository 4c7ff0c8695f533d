"""The metrics service's pure logic: reporting periods, and how each event becomes facts.

The KPI store keeps *facts*, not finished KPI values: per partnership and month, counters, sets
of ids, a wage histogram, per-hire observations and a bounded lineage of event ids; per
partnership, its roster (state, members, action teams, targets). Every fact merges with an
associative, commutative operation (sum, union, max, min, latest by time), so a batch is folded
in memory first and then stored beside what is stored (merged when read), and the result never depends on how
the events were cut into batches or in which order partitions were read. KPIs
(services/metrics/kpis.py) are computed from merged facts when asked: that keeps distinct counts
and medians exact at every roll-up (partnership, region, sector, state; month, quarter, program
year).

Ids of people, hires, memberships and teams are unique only within a partnership, so their fact
keys carry the partnership id; organisation ids are global (an employer engaged by two
partnerships is one employer statewide).
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any

import orjson

from shared.catalog import BY_MODEL
from shared.contracts import activities as act
from shared.contracts import demand as dem
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.contracts.base import ActivityKind, EventData
from shared.envelope import PlainEvent, parse_plain
from shared.periods import Grain, month_of, period_of

# --- facts -----------------------------------------------------------------------------------

LINEAGE_LIMIT = 50  # event ids kept per fact and document: enough to trace a figure, bounded in size


@dataclass
class Facts:
    """What a set of events says, in mergeable form. See the module docstring."""

    counts: Counter = field(default_factory=Counter)  # name -> sum
    histograms: dict[str, Counter] = field(default_factory=dict)  # name -> value -> occurrences
    sets: dict[str, set[str]] = field(default_factory=dict)  # name -> members
    latest: dict[str, list] = field(default_factory=dict)  # key -> [order, event id, value]; greatest wins
    maxima: dict[str, str] = field(default_factory=dict)  # key -> greatest ISO date
    minima: dict[str, str] = field(default_factory=dict)  # key -> smallest ISO date
    lineage: dict[str, list] = field(default_factory=dict)  # fact -> [events, first LINEAGE_LIMIT ids]

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def observe(self, name: str, value: int) -> None:
        self.histograms.setdefault(name, Counter())[value] += 1

    def add(self, name: str, *members: str) -> None:
        self.sets.setdefault(name, set()).update(members)

    def set_latest(self, key: str, order: str, event_id: str, value: Any) -> None:
        entry = [order, event_id, value]
        current = self.latest.get(key)
        if current is None or (order, event_id) > (current[0], current[1]):
            self.latest[key] = entry

    def at_least(self, key: str, day: str) -> None:
        if day > self.maxima.get(key, ""):
            self.maxima[key] = day

    def at_most(self, key: str, day: str) -> None:
        current = self.minima.get(key)
        if current is None or day < current:
            self.minima[key] = day

    def trace(self, fact: str, event_id: str, events: int = 1) -> None:
        entry = self.lineage.get(fact)
        if entry is None:
            self.lineage[fact] = [events, [event_id]]
            return
        entry[0] += events
        if len(entry[1]) < LINEAGE_LIMIT:
            entry[1].append(event_id)

    def merge(self, other: "Facts") -> "Facts":
        # The same rules as the methods above, inlined: views merge tens of thousands of keys.
        # Entries of `latest` are shared, not copied: they are replaced, never changed in place.
        self.counts.update(other.counts)
        for name, histogram in other.histograms.items():
            self.histograms.setdefault(name, Counter()).update(histogram)
        for name, members in other.sets.items():
            self.sets.setdefault(name, set()).update(members)
        latest = self.latest
        for key, entry in other.latest.items():
            current = latest.get(key)
            if current is None or (entry[0], entry[1]) > (current[0], current[1]):
                latest[key] = entry
        self.merge_dates(other)
        for fact, (events, ids) in other.lineage.items():
            entry = self.lineage.setdefault(fact, [0, []])
            entry[0] += events
            room = LINEAGE_LIMIT - len(entry[1])
            if room > 0:
                known = set(entry[1])
                entry[1].extend([i for i in ids if i not in known][:room])
        return self

    def merge_dates(self, other: "Facts") -> "Facts":
        """Only the greatest and smallest dates of `other` merged: what later months tell of a cohort."""
        maxima = self.maxima
        for key, day in other.maxima.items():
            if day > maxima.get(key, ""):
                maxima[key] = day
        minima = self.minima
        for key, day in other.minima.items():
            smallest = minima.get(key)
            if smallest is None or day < smallest:
                minima[key] = day
        return self

    def taken_back(self, order: str, event_id: str) -> "Facts":
        """What undoes these facts (of one voided record) when merged: counts and histograms
        negated, "latest" entries replaced by nothing as of the void, and the void itself in the
        lineage of each fact, beside the record it takes back. Sets and dates only ever grow: a
        record with such facts is not voidable (shared.contracts.outcomes.VOIDABLE)."""
        if self.sets or self.maxima or self.minima:
            raise ValueError("a record with set or date facts cannot be taken back")
        return Facts(counts=Counter({name: -n for name, n in self.counts.items()}),
                     histograms={name: Counter({v: -n for v, n in h.items()}) for name, h in self.histograms.items()},
                     latest={key: [order, event_id, None] for key in self.latest},
                     lineage={fact: [1, [event_id]] for fact in self.lineage})

    def pack(self) -> bytes:
        """Everything but the counters, compactly: the local MongoDB server's cost grows with
        the number of fields it handles, and nothing queries these parts inside the database."""
        return orjson.dumps({
            "h": self.histograms, "s": {k: sorted(v) for k, v in self.sets.items()}, "l": self.latest,
            "x": self.maxima, "n": self.minima, "t": self.lineage,
        }, option=orjson.OPT_NON_STR_KEYS)

    @classmethod
    def unpack(cls, counts: dict[str, int], packed: bytes) -> "Facts":
        parts = orjson.loads(packed)
        return cls(
            counts=Counter(counts),
            histograms={k: Counter({int(v): n for v, n in h.items()}) for k, h in parts["h"].items()},
            sets={k: set(v) for k, v in parts["s"].items()},
            latest=parts["l"], maxima=parts["x"], minima=parts["n"], lineage=parts["t"],
        )


# Where facts live: (source topic, partnership id or "", bucket). Buckets: a month "2026-03" for
# dated facts; "roster" for a partnership's roster; "organisation:<id>", "region:<id>",
# "sector:<id>" for the directory, which is keyed by those ids on the membership topic.
DocKey = tuple[str, str, str]
ROSTER = "roster"
DATED_SOURCES = ("activities", "outcomes", "demand")


class Cells(dict[DocKey, Facts]):
    def at(self, source: str, partnership_id: str, bucket: str) -> Facts:
        facts = self.get((source, partnership_id, bucket))
        if facts is None:
            facts = self[(source, partnership_id, bucket)] = Facts()
        return facts


def doc_id(key: DocKey) -> str:
    return "/".join(key)  # ids never contain "/" (shared.contracts.base.Id)


def order_of(event: PlainEvent) -> str:
    """Sort key of "latest" facts: the event's time, normalised so that strings compare."""
    return event["time"].astimezone(UTC).isoformat()


# --- from events to facts --------------------------------------------------------------------
# Recorders read events as plain data (shared.envelope.parse_plain): `e` the envelope, `d` its
# payload, with the fields of the payload model named in each signature.

WAGES = "wage_cents"

Payload = dict[str, Any]
Recorder = Callable[[PlainEvent, Payload, Cells], None]


def _roster(cells: Cells, d: Payload) -> Facts:
    return cells.at("membership", d["partnership_id"], ROSTER)


def _month(cells: Cells, source: str, d: Payload, day: date) -> Facts:
    return cells.at(source, d["partnership_id"], month_of(day))


def _partnership(e: PlainEvent, d: Payload, cells: Cells) -> None:  # mem.PartnershipState
    _roster(cells, d).set_latest(f"partnership:{d['partnership_id']}", order_of(e), e["id"],
                                 {"name": d["name"], "region_id": d["region_id"], "sector_id": d["sector_id"]})


def _membership(change: str, day: str) -> Recorder:
    """A member joining or leaving (mem.MemberJoined, mem.MemberLeft): `change` on the date in `day`."""

    def record(e: PlainEvent, d: Payload, cells: Cells) -> None:
        roster = _roster(cells, d)
        member = f"{d['partnership_id']}/{d['membership_id']}"
        roster.add(f"{change}:{member}", d[day].isoformat())
        roster.set_latest(f"member:{member}", order_of(e), e["id"],
                          {"organisation_id": d["organisation_id"], "kind": d["organisation_kind"].value})
        roster.trace("members", e["id"])

    return record


def _action_team(e: PlainEvent, d: Payload, cells: Cells) -> None:  # mem.ActionTeamState
    # Team events carry no date of their own: their time says when the status changed.
    roster = _roster(cells, d)
    roster.add(f"team:{d['partnership_id']}/{d['action_team_id']}", f"{order_of(e)}|{d['status'].value}")
    roster.trace("action_teams", e["id"])
    # For the partnership page: what the team is, as of its latest change.
    roster.set_latest(f"team_info:{d['action_team_id']}", order_of(e), e["id"],
                      {"name": d["name"], "priority": d["priority"], "status": d["status"].value,
                       "members": len(d["member_ids"])})


def _scheduled(e: PlainEvent, d: Payload, cells: Cells) -> None:  # act.ActivityScheduled
    # The partnership page lists upcoming activities; times and status are kept apart so a late
    # "scheduled" never undoes a reschedule or a cancellation. The hosts are the organisations
    # whose site it is: the employers-hosting KPI counts them once the activity is held.
    roster = _roster(cells, d)
    roster.set_latest(f"activity:{d['activity_id']}", order_of(e), e["id"],
                      {"title": d["title"], "kind": d["kind"].value, "hosts": d["host_ids"]})
    _activity_time(e, d, cells)


def _activity_time(e: PlainEvent, d: Payload, cells: Cells) -> None:  # act.ActivityScheduled, ActivityRescheduled
    _roster(cells, d).set_latest(f"activity_time:{d['activity_id']}", order_of(e), e["id"],
                                 d["starts_at"].astimezone(UTC).isoformat())


def _activity_closed(e: PlainEvent, d: Payload, cells: Cells, status: str) -> None:
    _roster(cells, d).set_latest(f"activity_closed:{d['activity_id']}", order_of(e), e["id"], status)


def _cancelled(e: PlainEvent, d: Payload, cells: Cells) -> None:  # act.ActivityCancelled
    _activity_closed(e, d, cells, "cancelled")


def _target(e: PlainEvent, d: Payload, cells: Cells) -> None:  # mem.TargetSet
    _roster(cells, d).set_latest(f"target:{d['partnership_id']}/{d['kpi']}/{d['period']}", order_of(e), e["id"],
                                 d["value"])


def _target_removed(e: PlainEvent, d: Payload, cells: Cells) -> None:  # mem.TargetRemoved
    # None, latest by time: a later TargetSet puts the target back, an older one cannot.
    _roster(cells, d).set_latest(f"target:{d['partnership_id']}/{d['kpi']}/{d['period']}", order_of(e), e["id"], None)


def _organisation(e: PlainEvent, d: Payload, cells: Cells) -> None:  # mem.OrganisationState
    cells.at("membership", "", f"organisation:{d['organisation_id']}").set_latest(
        f"kind:{d['organisation_id']}", order_of(e), e["id"], d["kind"].value)


def _region(e: PlainEvent, d: Payload, cells: Cells) -> None:  # mem.RegionDefined
    cells.at("membership", "", f"region:{d['region_id']}").set_latest(
        f"region:{d['region_id']}", order_of(e), e["id"], {"name": d["name"], "state": d["state"]})


def _sector(e: PlainEvent, d: Payload, cells: Cells) -> None:  # mem.SectorDefined
    cells.at("membership", "", f"sector:{d['sector_id']}").set_latest(
        f"sector:{d['sector_id']}", order_of(e), e["id"], {"name": d["name"]})


# Activities and their attendance are facts of the activity, kept in the partnership's roster
# (activity ids are unique within a partnership): whether and when it was held is known only once
# its schedule and completion are in, which may arrive after its attendance. They are resolved
# into held activities, each on its day, when KPIs are computed (held_activities below).

def _completed(e: PlainEvent, d: Payload, cells: Cells) -> None:  # act.ActivityCompleted
    _activity_closed(e, d, cells, "completed")
    _roster(cells, d).set_latest(f"held:{d['activity_id']}", order_of(e), e["id"],
                                 {"kind": d["kind"].value, "at": d["completed_at"].astimezone(UTC).isoformat(),
                                  "participants": d["participant_ids"]})


def _attendance(e: PlainEvent, d: Payload, cells: Cells) -> None:  # act.AttendanceRecorded
    # Per audience, the latest record (by event time, then id) is the count: a correction replaces it.
    roster = _roster(cells, d)
    activity, order = d["activity_id"], order_of(e)
    for audience, n in d["counts"].items():
        roster.set_latest(f"attendance:{activity}/{audience.value}", order, e["id"], n)
    if d["organisation_ids"]:
        roster.add(f"attended:{activity}", *(f"{o}/{e['id']}" for o in d["organisation_ids"]))


def _hire(e: PlainEvent, d: Payload, cells: Cells) -> None:  # out.HireRecorded
    start = d["start_date"]
    facts = _month(cells, "outcomes", d, start)
    facts.count("hires")
    if d["resident"]:
        facts.count("hires:resident")
    if d["career_changer"]:
        facts.count("hires:career_changer")
    if d["hourly_wage"] is not None:
        facts.observe(WAGES, round(d["hourly_wage"] * 100))
    facts.set_latest(f"hire:{d['partnership_id']}/{d['hire_id']}", order_of(e), e["id"], start.isoformat())
    facts.trace("hires", e["id"])


def _retention(e: PlainEvent, d: Payload, cells: Cells) -> None:  # out.RetentionChecked
    checked_on = d["checked_on"]
    facts = _month(cells, "outcomes", d, checked_on)
    hire = f"{d['partnership_id']}/{d['hire_id']}"
    if d["still_employed"]:
        facts.at_least(f"employed:{hire}", checked_on.isoformat())
    else:
        facts.at_most(f"absent:{hire}", checked_on.isoformat())
    facts.trace("retention", e["id"])


def _separation(e: PlainEvent, d: Payload, cells: Cells) -> None:  # out.SeparationRecorded
    separated_on = d["separated_on"]
    facts = _month(cells, "outcomes", d, separated_on)
    facts.at_most(f"separated:{d['partnership_id']}/{d['hire_id']}", separated_on.isoformat())
    facts.trace("retention", e["id"])


def _counted(fact: str, day: str) -> Recorder:
    """An outcome that only adds one to a count in the month of its date, the field `day`."""

    def record(e: PlainEvent, d: Payload, cells: Cells) -> None:
        facts = _month(cells, "outcomes", d, d[day])
        facts.count(fact)
        facts.trace(fact, e["id"])

    return record


def _survey(e: PlainEvent, d: Payload, cells: Cells) -> None:  # dem.DemandSurveyResponded
    facts = _month(cells, "demand", d, d["responded_on"])
    openings = Counter[str]()
    for line in d["openings"]:
        openings[line["soc_code"]] += line["openings"]
    # An employer's later answer in the same round replaces its earlier one.
    facts.set_latest(f"response:{d['partnership_id']}/{d['survey_round']}/{d['employer_id']}",
                     f"{d['responded_on'].isoformat()}|{order_of(e)}", e["id"], dict(openings))
    facts.add("respondents", d["employer_id"])
    facts.trace("demand", e["id"])


def _voided(e: PlainEvent, d: Payload, cells: Cells) -> None:  # out.OutcomeVoided
    # The void carries what the record said (the events service added it): its facts are
    # recomputed, then taken back where they were recorded. Sums commute, so a redelivered or
    # reordered record and void still add up, and the events service accepts one void per record.
    voided = d["voided"]
    record_event = parse_plain(orjson.dumps({"specversion": "1.0", "id": d["voided_id"], "source": d["voided_source"],
                                             "type": voided["type"], "time": voided["time"], "data": voided["data"]}))
    undone = Cells()
    record(record_event, undone)
    order = max(order_of(e), order_of(record_event))  # a sender's clock never lets the record outlive its void
    for key, facts in undone.items():
        cells.at(*key).merge(facts.taken_back(order, e["id"]))


RECORDERS: dict[type[EventData], Recorder] = {
    mem.RegionDefined: _region,
    mem.SectorDefined: _sector,
    mem.PartnershipCreated: _partnership,
    mem.PartnershipUpdated: _partnership,
    mem.OrganisationRegistered: _organisation,
    mem.OrganisationUpdated: _organisation,
    mem.MemberJoined: _membership("joined", "joined_on"),
    mem.MemberLeft: _membership("left", "left_on"),
    mem.ActionTeamFormed: _action_team,
    mem.ActionTeamChanged: _action_team,
    mem.TargetSet: _target,
    mem.TargetRemoved: _target_removed,
    act.ActivityScheduled: _scheduled,
    act.ActivityRescheduled: _activity_time,
    act.ActivityCancelled: _cancelled,
    act.ActivityCompleted: _completed,
    act.AttendanceRecorded: _attendance,
    out.HireRecorded: _hire,
    out.RetentionChecked: _retention,
    out.SeparationRecorded: _separation,
    out.PlacementRecorded: _counted("placements", "start_date"),
    out.TrainingEnrolled: _counted("training_enrolments", "enrolled_on"),
    out.TrainingCompleted: _counted("training_completions", "completed_on"),
    out.CredentialEarned: _counted("credentials", "earned_on"),
    out.ApprenticeshipStarted: _counted("apprenticeships", "started_on"),
    out.OutcomeVoided: _voided,
    dem.DemandSurveyResponded: _survey,
}
_BY_TYPE: dict[str, Recorder] = {BY_MODEL[model].type: recorder for model, recorder in RECORDERS.items()}


def record(event: PlainEvent, cells: Cells) -> bool:
    """Add the event's facts to `cells`; False when its type feeds no KPI."""
    recorder = _BY_TYPE.get(event["type"])
    if recorder is None:
        return False
    recorder(event, event["data"], cells)
    return True


# --- from roster facts to held activities ------------------------------------------------

WORK_BASED_LEARNING = frozenset({ActivityKind.PLANT_TOUR.value, ActivityKind.CAREER_DAY.value,
                                 ActivityKind.SCHOOL_VISIT.value})  # what an employer hosts at its site


@dataclass
class HeldActivity:
    """An activity that was held (its latest closing is a completion), with what is known of it."""

    activity_id: str
    kind: str
    day: str  # ISO UTC day of its latest scheduled start; of its completion if no schedule is known
    participants: list[str]  # organisations that took part (the completion's list)
    hosts: list[str]  # organisations whose site it was (the schedule's list; none if no schedule is known)
    attendees: set[str]  # organisations counted at it (every attendance record's)
    counts: dict[str, int]  # audience -> people: each audience's latest attendance record
    completion_id: str
    schedule_id: str | None
    attendance_ids: set[str]


def held_activities(roster: Facts) -> list[HeldActivity]:
    """The held activities of one partnership's roster. Cancelled ones (latest closing a
    cancellation) and ones not completed yet are left out, with whatever attendance they have."""
    # One pass over the roster's entries: views resolve every roster in scope.
    completions, closed, scheduled, starts, counts = {}, {}, {}, {}, []
    for key, entry in roster.latest.items():
        fact, _, rest = key.partition(":")
        if fact == "attendance":
            counts.append((rest, entry))
        elif fact == "held":
            completions[rest] = entry
        elif fact == "activity_closed":
            closed[rest] = entry[2]
        elif fact == "activity":
            scheduled[rest] = entry
        elif fact == "activity_time":
            starts[rest] = entry[2]
    by_id = {}
    for activity_id, (_, completion_id, info) in completions.items():
        if closed[activity_id] != "completed":
            continue
        schedule = scheduled.get(activity_id)
        by_id[activity_id] = HeldActivity(
            activity_id, info["kind"], starts.get(activity_id, info["at"])[:10], info["participants"],
            schedule[2].get("hosts", []) if schedule else [], set(), {}, completion_id,
            schedule[1] if schedule else None, set())
    if not by_id:
        return []
    for rest, (_, event_id, n) in counts:
        activity_id, _, audience = rest.rpartition("/")
        if (activity := by_id.get(activity_id)) is not None:
            activity.counts[audience] = n
            activity.attendance_ids.add(event_id)
    for key, members in roster.sets.items():
        if key.startswith("attended:") and (activity := by_id.get(key[9:])) is not None:
            for member in members:
                organisation, _, event_id = member.partition("/")
                activity.attendees.add(organisation)
                activity.attendance_ids.add(event_id)
    return list(by_id.values())


ACTIVITY_FACTS = ("activity:", "activity_time:", "activity_closed:", "held:", "attendance:", "attended:")


def without_activities(roster: Facts) -> Facts:
    """A roster's facts but its activities' (which held_activities resolves): members, action
    teams, targets, the partnership's state. Shares the entries, changes none."""
    return Facts(counts=roster.counts, histograms=roster.histograms,
                 sets={k: v for k, v in roster.sets.items() if not k.startswith(ACTIVITY_FACTS)},
                 latest={k: v for k, v in roster.latest.items() if not k.startswith(ACTIVITY_FACTS)},
                 maxima=roster.maxima, minima=roster.minima, lineage=roster.lineage)


def program_years_touched(cells: Cells) -> set[tuple[str, str]]:
    """(partnership, program year) pairs whose facts a batch changed: where milestones may be. For
    activities, the program years of the days the batch carries (an attendance record carries none:
    the day it was recorded stands in for its activity's)."""
    touched = set()
    for (source, partnership_id, bucket), facts in cells.items():
        if source in DATED_SOURCES:
            touched.add((partnership_id, period_of(date.fromisoformat(bucket + "-01"), Grain.PROGRAM_YEAR).label))
        elif bucket == ROSTER:
            for key, (order, _, value) in facts.latest.items():
                day = (value if key.startswith("activity_time:") else value["at"] if key.startswith("held:")
                       else order if key.startswith("attendance:") else None)
                if day is not None:
                    touched.add((partnership_id, period_of(date.fromisoformat(day[:10]), Grain.PROGRAM_YEAR).label))
    return touched


def targets_touched(cells: Cells) -> set[tuple[str, str]]:
    """(partnership, period) pairs that got a new target in a batch."""
    touched = set()
    for (_source, partnership_id, bucket), facts in cells.items():
        if bucket == ROSTER:
            for key in facts.latest:
                if key.startswith("target:"):
                    touched.add((partnership_id, key.rsplit("/", 1)[1]))
    return touched
