"""The metrics read use cases, for the JSON API and the KPI pages alike (so both show the same
numbers): KPI values, series, comparison, lineage and definitions; the statewide overview; a
partnership's page; a KPI's page.

Each takes the caller's Principal and decides the scope before it reads anything: operators see
the state, regions, sectors and every partnership; every other role (partnership admin, partner
system, viewer) sees its own partnerships only, since a region, a sector or the state mixes
several partnerships' figures. Refusals and bad inputs are shared.errors domain errors.

Each use case reads one snapshot of the KPI store (rosters and directory once, dated facts once),
however many partnerships, periods or KPIs it shows, and only for what it does not find computed
already from facts that have not changed since (services/metrics/cache.py): a figure read again
costs the same whatever the history behind it. The dated facts themselves are kept per
partnership and month while unchanged, and a figure of several partnerships is composed of each one's part
(kpis.Part), kept the same way: a batch of one partnership makes a statewide figure read that
partnership's facts and work out its part again, not every partnership's.

What is computed from facts (rosters worked out, KPI values, lineage) is computed in a worker
thread: a program year of a large partnership takes seconds, and the event loop meanwhile goes
on answering health checks, /metrics and the rollup."""

import asyncio
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, tzinfo
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, cast

from services.metrics import kpis, views
from services.metrics.cache import Computed, KeptMonths
from services.metrics.domain import Facts, HeldActivity, without_activities
from services.metrics.store import Stamp
from shared.auth import Principal
from shared.errors import Invalid, NotAllowed, NotFound
from shared.periods import Period, parse_period, periods_between, program_year

MAX_SERIES_PERIODS = 120
MAX_LINEAGE_IDS = 10_000  # the most event ids a lineage answer names
Dated = list[tuple[str, str, Facts]]  # (partnership, month, facts)
Members = list[str] | None  # the partnerships of a scope; None: all of them


class Scope(StrEnum):
    PARTNERSHIP = "partnership"
    REGION = "region"
    SECTOR = "sector"
    STATE = "state"


class InvalidQuery(Invalid):
    """A refused query parameter (the KPI reads take no body)."""

    def detail(self) -> Any:
        return [{"loc": ["query", self.field], "msg": self.reason, "type": "value_error"}]


class KpiFacts(Protocol):
    """What the read use cases need of the KPI store (services.metrics.store.MetricsStore)."""

    async def version(self) -> int: ...

    async def stamps(self, version: int) -> dict[str, Stamp]: ...

    async def rosters(self, version: int, known: list[str]) -> dict[str, Facts]: ...

    async def directory(self, version: int) -> list[Facts]: ...

    async def dated(self, version: int, partnership_ids: list[str] | None, first_month: str,
                    months: list[str] | None = None) -> Dated: ...


def authorize(principal: Principal, scope: Scope, scope_id: str | None) -> None:
    """The scope rule, decided before any data is read."""
    if scope is Scope.PARTNERSHIP:
        if not scope_id:
            raise InvalidQuery("scope_id", "a partnership id is required")
        principal.require_partnership(scope_id)
        return
    if not principal.is_operator:
        raise NotAllowed(f"the {scope.value} scope combines partnerships: it needs the operator role")
    if scope is not Scope.STATE and not scope_id:
        raise InvalidQuery("scope_id", f"a {scope.value} id is required")


def period(label: str, field: str = "period") -> Period:
    try:
        return parse_period(label)
    except ValueError as exc:
        raise InvalidQuery(field, str(exc)) from None


def page_period(label: str) -> tuple[Period, str]:
    """A page's period (a month, quarter or program year) and the program year its trends span."""
    found = period(label)
    return found, program_year(found.start)


def kpi_named(name: str) -> kpis.Kpi:
    if name not in kpis.BY_NAME:
        raise NotFound(f"no KPI {name!r}")
    return kpis.BY_NAME[name]


def _describe(p: Period) -> dict:
    return {"label": p.label, "grain": p.grain.value, "start": p.start, "end": p.end}


class Kept(NamedTuple):
    """A partnership's roster as kept between reads, and what is worked out of it once."""

    stamp: str | None  # its roster stamp when read
    lean: Facts  # without its activities (domain.without_activities)
    held: list[HeldActivity]  # its held activities by day
    scheduled: list[tuple[str, str, dict]]  # its activities not closed yet, by start (views.scheduled)

    @classmethod
    def of(cls, stamp: str | None, roster: Facts) -> "Kept":
        return cls(stamp, without_activities(roster), kpis.held_by_day(roster), views.scheduled(roster.latest))


@dataclass
class Snapshot:
    """The KPI store's rosters (each with its held activities by day) and directory at one
    version, and the stamps read with them. Kept between requests while the roster stamps are
    unchanged (a copy with each request's stamps); each roster is kept while its own stamp is."""

    version: int
    rosters: dict[str, Kept]
    directory: list[Facts]
    stamps: dict[str, Stamp] = field(default_factory=dict)
    derived: dict[Hashable, Any] = field(default_factory=dict)  # what is worked out of the rosters, once
    # Reads work things out in worker threads and on the event loop: a burst of first reads works
    # each thing out once (a lock per thing), and what is known already is read without waiting,
    # so the loop never waits for a thread working out something else.
    working: dict[Hashable, threading.Lock] = field(default_factory=dict, repr=False, compare=False)
    locking: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _once(self, key: Hashable, work: Callable[[], Any]) -> Any:
        if key in self.derived:
            return self.derived[key]
        with self.locking:
            lock = self.working.setdefault(key, threading.Lock())
        with lock:
            if key not in self.derived:
                self.derived[key] = work()
        return self.derived[key]

    @property
    def partnerships(self) -> dict[str, dict]:
        """partnership id -> its latest state (name, region, sector)."""
        return self._once("partnerships", lambda: {
            key.removeprefix("partnership:"): entry[2] for kept in self.rosters.values()
            for key, entry in kept.lean.latest.items() if key.startswith("partnership:")})

    def action_teams(self, partnership_id: str) -> list[dict]:
        return self._once(("teams", partnership_id),
                          lambda: views.action_teams(self.rosters[partnership_id].lean.latest))

    def targets(self, partnership_id: str) -> dict[tuple[str, ...], float]:
        return kpis.targets(self.rosters[partnership_id].lean, partnership_id)

    def signature(self, members: Members) -> tuple:
        """The stamps of what figures of these partnerships are computed from: their facts and the directory."""
        if members is None:
            return tuple(sorted(self.stamps.items()))
        return tuple((pid, self.stamps.get(pid)) for pid in sorted({*members, ""}))

    def scope_partnerships(self, members: Members) -> list[str]:
        """The partnerships of a scope; None: every one the store has facts or a roster of."""
        return sorted(set(self.stamps) - {""} | set(self.rosters)) if members is None else list(members)

    def facts_stamp(self, partnership_id: str) -> str | None:
        return stamp.facts if (stamp := self.stamps.get(partnership_id)) else None

    def month_stamps(self, partnership_id: str) -> Mapping[str, str]:
        return stamp.months if (stamp := self.stamps.get(partnership_id)) else {}

    def name_of(self, partnership_id: str) -> str | None:
        return self.partnerships.get(partnership_id, {}).get("name")

    def members_of(self, scope: Scope, scope_id: str | None) -> list[str] | None:
        """The partnerships of an authorized scope (None: all of them); NotFound if it has none."""
        if scope is Scope.PARTNERSHIP:
            if scope_id not in self.rosters:
                raise NotFound(f"no KPIs for partnership {scope_id!r}")
            return [scope_id]
        if scope is Scope.STATE:
            return None
        members = [pid for pid, state in self.partnerships.items() if state[f"{scope.value}_id"] == scope_id]
        if not members:
            raise NotFound(f"no partnership in {scope.value} {scope_id!r}")
        return members

    def standing(self, members: Members) -> kpis.Standing:
        pids = sorted(self.rosters) if members is None else sorted(set(members) & set(self.rosters))
        return self._once(("standing", tuple(pids)), lambda: kpis.standing(
            [self.rosters[pid].lean for pid in pids], self.directory, [self.rosters[pid].held for pid in pids]))

    def view(self, p: Period, dated: Dated, members: Members) -> kpis.View:
        return kpis.view_of(p, _of(p, dated, members), self.standing(members))


def _of(p: Period, dated: Dated, members: Members) -> list[tuple[str, Facts]]:
    """(month, facts) of these partnerships (None: all) from the period's first month on."""
    first, wanted = p.months[0], None if members is None else set(members)
    return [(m, f) for pid, m, f in dated if m >= first and (wanted is None or pid in wanted)]


async def _nothing() -> Dated:
    return []


def _month(dated: tuple[str, Facts]) -> str:
    return dated[0]


def _composed(members: Members) -> bool:
    """Whether a scope's figures are composed of its partnerships' parts (kpis.composed)."""
    return members is None or len(members) > 1


def _evaluate(snap: Snapshot, wanted: list[tuple[Members, Period]], dated: Dated,
              parts: dict[tuple[str, str], kpis.Part]) -> tuple[list[dict], dict[tuple[str, str], kpis.Part]]:
    """Every KPI of each (scope, period) wanted, and the parts of partnerships worked out meanwhile
    (to keep). A partnership's figures come from its view, and its part with them; a scope of
    several partnerships is composed of their parts, those not in `parts` worked out first."""
    made: dict[tuple[str, str], kpis.Part] = {}

    def part(pid: str, p: Period) -> kpis.Part:
        if (pid, p.label) not in parts:
            held = snap.rosters[pid].held if pid in snap.rosters else []
            parts[pid, p.label] = made[pid, p.label] = kpis.dated_part(p, _of(p, dated, [pid]), held)
        return parts[pid, p.label]

    values = []
    for members, p in wanted:
        if not _composed(members):
            assert members is not None
            view = snap.view(p, dated, members)
            values.append(kpis.evaluate(view))
            if (members[0], p.label) not in parts:
                parts[members[0], p.label] = made[members[0], p.label] = kpis.part_of(view)
        else:
            view = kpis.composed(p, [part(pid, p) for pid in snap.scope_partnerships(members)], snap.standing(members))
            values.append(kpis.evaluate(view))
    return values, made


def _trace(snap: Snapshot, definition: kpis.Kpi, p: Period, members: Members, dated: Dated) -> tuple[int, list[str]]:
    """How many events fed a KPI value of these partnerships, and (up to MAX_LINEAGE_IDS) which."""
    scope = snap.standing(members)
    return kpis.lineage(definition, p, _of(p, dated, members), [scope.roster], MAX_LINEAGE_IDS, scope.held_in(p))


def _roster_signature(stamps: dict[str, Stamp]) -> tuple:
    return tuple(sorted((pid, stamp.roster) for pid, stamp in stamps.items())) + (_directory_stamp(stamps),)


def _scope_key(members: Members) -> tuple[str, ...] | None:
    """A scope as part of a kept figure's key: the same partnerships in any order are one scope."""
    return None if members is None else tuple(sorted(members))


def _directory_stamp(stamps: dict[str, Stamp]) -> str | None:
    return stamp.facts if (stamp := stamps.get("")) else None


class KpiService:
    def __init__(self, store: KpiFacts, today: Callable[[], date] = date.today, zone: tzinfo = UTC,
                 computed: Computed | None = None, kept_months: int = 325):
        self.store = store
        self.today = today
        self.zone = zone  # the installation's time zone: times on the pages are shown in it
        self.computed = computed or Computed()
        self.months = KeptMonths(kept_months)  # each partnership's dated facts, kept while unchanged
        # the rosters last read, and the store version they are of: re-read where their stamps moved
        self.rosters: tuple[int, dict[str, Kept]] = (0, {})
        self.reading = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        """The store's rosters and directory as of now (kept while unchanged)."""
        version = await self.store.version()
        stamps = await self.store.stamps(version)  # before the facts they vouch for (cache.py)
        signature = _roster_signature(stamps)
        kept = self.computed.get(("snapshot", version), signature)
        if kept is None:
            async with self.reading:  # a burst of first reads reads the rosters once
                kept = self.computed.get(("snapshot", version), signature)
                if kept is None:
                    kept = self.computed.put(("snapshot", version), signature,
                                             await self._read_snapshot(version, stamps))
        return replace(kept, stamps=stamps)

    async def _read_snapshot(self, version: int, stamps: dict[str, Stamp]) -> Snapshot:
        """Rosters read again only where their stamps changed. A roster without a stamp has not
        changed since the store had stamps (a change stamps it)."""
        def stamp(pid: str) -> str | None:
            return stamps.get(pid, (None, None))[1]

        kept_version, kept = self.rosters
        rosters = {pid: entry for pid, entry in kept.items()
                   if kept_version == version and entry.stamp == stamp(pid)}
        changed = await self.store.rosters(version, known=list(rosters))
        rosters |= await asyncio.to_thread(lambda: {pid: Kept.of(stamp(pid), r) for pid, r in changed.items()})
        self.rosters = (version, rosters)
        directory = self.computed.get(("directory", version), _directory_stamp(stamps))
        if directory is None:
            directory = self.computed.put(("directory", version), _directory_stamp(stamps),
                                          await self.store.directory(version))
        return Snapshot(version, rosters, directory)

    async def partnership_values(self, snap: Snapshot, wanted: list[tuple[str, Period]]) -> list[dict]:
        """Every KPI's value of each (partnership, period): for the service's own checks (milestones),
        which have no caller and so no scope rule."""
        return await self._values(snap, [([pid], p) for pid, p in wanted])

    async def _values(self, snap: Snapshot, wanted: list[tuple[Members, Period]],
                      dated: Dated | None = None) -> list[dict]:
        """Every KPI's value of each (scope, period) wanted; the dated facts are read once, only if
        some figures are not kept, and only of the partnerships whose facts they need (or not at
        all: `dated`, read already for all that is wanted)."""
        keys = [("values", snap.version, _scope_key(m), p.label) for m, p in wanted]
        found: list[dict | None] = [self.computed.get(key, snap.signature(m))
                                    for key, (m, _) in zip(keys, wanted, strict=True)]
        missing = [i for i, value in enumerate(found) if value is None]
        if missing:
            asked = [wanted[i] for i in missing]
            parts = self._kept_parts(snap, asked)
            if dated is None:  # of the partnerships read alone, and those of a composed scope without a kept part
                needed = {pid for m, p in asked for pid in snap.scope_partnerships(m)
                          if not _composed(m) or (pid, p.label) not in parts}
                dated = await self._dated(snap, sorted(needed), min((p for _, p in asked), key=lambda p: p.start))
            computed, made = await asyncio.to_thread(_evaluate, snap, asked, dated, parts)
            for (pid, label), part in made.items():  # under the stamps read before the facts (cache.py)
                self.computed.put(("part", snap.version, pid, label), snap.facts_stamp(pid), part)
            for i, value in zip(missing, computed, strict=True):
                found[i] = self.computed.put(keys[i], snap.signature(wanted[i][0]), value)
        return cast(list[dict], found)

    def _kept_parts(self, snap: Snapshot, wanted: list[tuple[Members, Period]]) -> dict[tuple[str, str], kpis.Part]:
        """The parts kept of the partnerships of every scope of several in `wanted`, while their facts are unchanged."""
        needed = {(pid, p.label) for members, p in wanted if _composed(members)
                  for pid in snap.scope_partnerships(members)}
        kept = {key: self.computed.get(("part", snap.version, *key), snap.facts_stamp(key[0])) for key in needed}
        return {key: part for key, part in kept.items() if part is not None}

    async def _dated(self, snap: Snapshot, partnership_ids: list[str] | None, first: Period) -> Dated:
        """The dated facts of these partnerships (None: all) from the period's first month on:
        those kept (cache.KeptMonths) where the month's stamp is unchanged, the rest read from the
        store: the months changed since of partnerships kept, everything of the others."""
        month = first.months[0]
        pids = snap.scope_partnerships(partnership_ids)
        found: dict[str, list[tuple[str, Facts]]] = {}
        unkept: list[str] = []  # partnerships to read from the store, every month
        changed: dict[str, list[str]] = {}  # partnerships kept -> their months to read again
        for pid in pids:
            kept = self.months.get((snap.version, pid), month, snap.month_stamps(pid))
            if kept is None:
                found[pid] = []
                unkept.append(pid)
            else:
                found[pid] = kept[0]
                if kept[1]:
                    changed[pid] = kept[1]
        if unkept or changed:
            again = sorted({m for months in changed.values() for m in months})
            read = await asyncio.gather(
                self.store.dated(snap.version, unkept, month) if unkept else _nothing(),
                self.store.dated(snap.version, sorted(changed), month, again) if changed else _nothing())
            for pid, m, facts in (d for dated in read for d in dated):
                if pid in unkept or m in changed.get(pid, ()):  # `again` may name others' months
                    found[pid].append((m, facts))
            for pid in [*unkept, *changed]:  # under the stamps read before these facts (cache.py)
                found[pid].sort(key=_month)
                self.months.put((snap.version, pid), month, snap.month_stamps(pid), found[pid])
        return [(pid, m, facts) for pid in pids for m, facts in found[pid]]

    async def _scoped(
        self, principal: Principal, scope: Scope, scope_id: str | None
    ) -> tuple[Snapshot, list[str] | None]:
        authorize(principal, scope, scope_id)
        snap = await self.snapshot()
        return snap, snap.members_of(scope, scope_id)

    # --- the JSON API ----------------------------------------------------------------------

    async def definitions(self, principal: Principal) -> dict:
        """Every key may read the catalogue: it holds no partnership's data."""
        return {"store_version": await self.store.version(), "kpis": [k.describe() for k in kpis.CATALOGUE]}

    async def values(self, principal: Principal, label: str, scope: Scope = Scope.PARTNERSHIP,
                     scope_id: str | None = None, as_of: date | None = None) -> dict:
        snap, members = await self._scoped(principal, scope, scope_id)
        p = period(label)
        (values,) = await self._values(snap, [(members, p)])
        answer: dict[str, Any] = {"version": 1, "scope": scope.value, "scope_id": scope_id, "period": _describe(p),
                  "partnerships": sorted(members) if members is not None else sorted(snap.rosters), "values": values}
        if scope is Scope.PARTNERSHIP and scope_id:  # authorize() requires it for this scope
            answer["targets"] = _progress(snap, scope_id, p, values, as_of or self.today())
        return answer

    async def series(self, principal: Principal, kpi: str, first: str, last: str, scope: Scope = Scope.PARTNERSHIP,
                     scope_id: str | None = None) -> dict:
        snap, members = await self._scoped(principal, scope, scope_id)
        start, end = period(first, "first"), period(last, "last")
        if start.grain is not end.grain or end.start < start.start:
            raise InvalidQuery("last", "must be of the grain of `first` and not before it")
        periods = periods_between(start.grain, start.start, end.end)
        if len(periods) > MAX_SERIES_PERIODS:
            raise InvalidQuery("last", f"at most {MAX_SERIES_PERIODS} periods")
        definition = kpi_named(kpi)
        return {"kpi": definition.name, "version": definition.version, "scope": scope.value, "scope_id": scope_id,
                "points": await self._points(snap, definition, periods, members)}

    async def compare(self, principal: Principal, kpi: str, label: str) -> dict:
        """One KPI across the partnerships the caller may see (its own, or all for operators)."""
        definition, p = kpi_named(kpi), period(label)
        return {"kpi": definition.name, "version": definition.version, "period": _describe(p),
                "partnerships": await self._across(await self.snapshot(), principal, definition, p)}

    async def lineage(self, principal: Principal, kpi: str, label: str, scope: Scope = Scope.PARTNERSHIP,
                      scope_id: str | None = None, limit: int = 1000) -> dict:
        snap, members = await self._scoped(principal, scope, scope_id)
        p, definition = period(label), kpi_named(kpi)
        return {"kpi": definition.name, "version": definition.version, "scope": scope.value, "scope_id": scope_id,
                "period": _describe(p), **await self._lineage(snap, definition, p, members, limit)}

    async def _points(self, snap: Snapshot, definition: kpis.Kpi, periods: list[Period],
                      members: Members) -> list[dict]:
        values = await self._values(snap, [(members, p) for p in periods])
        return [{"period": p.label, "value": v[definition.name]} for p, v in zip(periods, values, strict=True)]

    async def _across(self, snap: Snapshot, principal: Principal, definition: kpis.Kpi, p: Period) -> list[dict]:
        visible = sorted(pid for pid in snap.rosters if principal.may_access(pid))
        values = await self._values(snap, [([pid], p) for pid in visible])
        rows: list[dict[str, Any]] = [{"partnership_id": pid, "name": snap.name_of(pid), "value": v[definition.name]}
                                      for pid, v in zip(visible, values, strict=True)]
        if definition.scalar:
            rows.sort(key=lambda row: (row["value"] is None, -(row["value"] or 0), row["partnership_id"]))
        return rows

    async def _lineage(self, snap: Snapshot, definition: kpis.Kpi, p: Period, members: Members, limit: int) -> dict:
        # kept once at the largest limit, whatever the limits asked: one entry per figure
        key = ("lineage", snap.version, _scope_key(members), p.label, definition.name)
        signature = snap.signature(members)
        dated = None
        traced: tuple[int, list[str]] | None = self.computed.get(key, signature)
        if traced is None:
            if _composed(members):
                traced = await self._composed_lineage(snap, definition, p, members)
            else:
                dated = await self._dated(snap, members, p)  # serves the value too, if it is not kept either
                traced = await asyncio.to_thread(_trace, snap, definition, p, members, dated)
            self.computed.put(key, signature, traced)
        (values,) = await self._values(snap, [(members, p)], dated)
        events, ids = traced[0], traced[1][:limit]
        return {"value": values[definition.name], "events": events, "event_ids": ids, "complete": len(ids) == events}

    async def _composed_lineage(self, snap: Snapshot, definition: kpis.Kpi, p: Period,
                                members: Members) -> tuple[int, list[str]]:
        """The lineage of a scope of several partnerships from each one's, as its own lineage read
        keeps it (its events are its own: the counts add up; its ids follow in partnership order):
        after a batch of one partnership, that one's alone is traced again."""
        pids = snap.scope_partnerships(members)
        keys = {pid: (("lineage", snap.version, (pid,), p.label, definition.name), snap.signature([pid]))
                for pid in pids}
        traced = {pid: self.computed.get(*keys[pid]) for pid in pids}
        if missing := [pid for pid, part in traced.items() if part is None]:
            dated = await self._dated(snap, missing, p)
            made = await asyncio.to_thread(lambda: {
                pid: _trace(snap, definition, p, [pid], dated) for pid in missing})
            for pid, part in made.items():  # under the stamps read before the facts (cache.py)
                traced[pid] = self.computed.put(*keys[pid], part)
        parts = [cast(tuple[int, list[str]], traced[pid]) for pid in pids]
        return sum(events for events, _ in parts), [i for _, ids in parts for i in ids][:MAX_LINEAGE_IDS]

    # --- the pages -------------------------------------------------------------------------

    async def overview(self, principal: Principal, label: str) -> dict:
        """The statewide headline and every partnership's, from one read of the store."""
        if not principal.is_operator:
            raise NotAllowed("the statewide overview needs the operator role")
        p, _ = page_period(label)
        snap = await self.snapshot()
        partnerships = sorted(snap.rosters)
        state, *each = await self._values(snap, [(None, p)] + [([pid], p) for pid in partnerships])
        rows = [{"partnership_id": pid, "name": snap.name_of(pid) or pid, **_headline(values)}
                for pid, values in zip(partnerships, each, strict=True)]
        return {"period": p.label, "state": _headline(state), "rows": rows}

    async def partnership_page(self, principal: Principal, partnership_id: str, label: str, grain: str) -> dict:
        """Key figures with target progress, trends by `grain`, members, action teams and what is coming up."""
        snap, members = await self._scoped(principal, Scope.PARTNERSHIP, partnership_id)
        p, year = page_period(label)
        grain = grain if grain in ("month", "quarter", "year") else "month"
        today = self.today()
        steps = views.grain_periods(year, grain)
        shown = [parse_period(step) for step in steps if not views.is_future(step, today)]
        values, *by_step = await self._values(snap, [(members, p)] + [(members, step) for step in shown])
        step_values = {step.label: v for step, v in zip(shown, by_step, strict=True)}
        trends = {name: [(step, step_values[step][name] if step in step_values else None) for step in steps]
                  for name in views.TRENDS}
        cards = views.Table("kpis", f"Key figures, {p.label}", [("kpi", "KPI"), ("title", "Title"), ("value", "Value"),
                                                                 ("target", "Target"), ("percent", "% of target"),
                                                                 ("on_track", "On track")])
        targets = {t["kpi"]: t for t in _progress(snap, partnership_id, p, values, today)}
        for name in views.HEADLINE + tuple(t for t in targets if t not in views.HEADLINE):
            definition, target = kpis.BY_NAME[name], targets.get(name, {})
            cards.rows.append({"kpi": name, "title": definition.title, "unit": definition.unit.value,
                               "value": views.scalar(name, values[name]), "target": target.get("target"),
                               "percent": target.get("percent"), "on_track": target.get("on_track")})
        tables = [
            cards,
            views.Table("members-by-kind", "Active members by kind", [("kind", "Kind"), ("members", "Members")],
                        [{"kind": k.replace("_", " "), "members": n}
                         for k, n in sorted(cast(dict, values["active_members"]).items()) if k != "total"]),
            views.Table("action-teams", "Action teams", [("name", "Team"), ("priority", "Priority"),
                                                          ("status", "Status"), ("members", "Members")],
                        snap.action_teams(partnership_id)),
            views.Table("upcoming-activities", "Upcoming activities",
                        [("starts_at", "Starts"), ("title", "Activity"), ("kind", "Kind")],
                        views.upcoming_activities(snap.rosters[partnership_id].scheduled, datetime.now(UTC).isoformat(),
                                                  self.zone)),
        ]
        definitions = views.DEFINITIONS
        return {"name": snap.name_of(partnership_id) or partnership_id, "partnership_id": partnership_id,
                "period": p.label, "grain": grain, "definitions": definitions,
                "has_activity": any(views.scalar(n, values[n]) for n in views.HEADLINE if n != "active_members"),
                "trends": {n: views.bar_chart(points, f"{definitions[n].title} by {grain}", definitions[n].unit.value,
                                              # a program year's target compares with a year's bar only
                                              targets.get(n, {}).get("target") if grain == "year" else None)
                           for n, points in trends.items()},
                "trend_tables": trends,  # the charts' figures, for exports and tests
                "tables": {t.name: t for t in tables}}

    async def kpi_page(self, principal: Principal, kpi: str, label: str, partnership_id: str | None) -> dict:
        """A KPI by month for one partnership (by default the caller's first; statewide for
        operators), across the partnerships the caller may see, and its lineage."""
        definition = kpi_named(kpi)
        scope, scope_id = _kpi_page_scope(principal, partnership_id)
        snap, members = await self._scoped(principal, scope, scope_id)
        p, year = page_period(label)
        points = await self._points(snap, definition, [parse_period(m) for m in views.grain_periods(year, "month")],
                                    members)
        rows = await self._across(snap, principal, definition, p)
        lineage = await self._lineage(snap, definition, p, members, 200)
        unit = definition.unit.value
        by_month = views.Table(f"{kpi}-by-month", f"{definition.title} by month, {scope_id or 'statewide'}",
                               [("period", "Month"), ("value", definition.title)],
                               [{"period": x["period"], "value": views.scalar(kpi, x["value"])} for x in points])
        across = views.Table(f"{kpi}-by-partnership", f"{definition.title} by partnership, {p.label}",
                             [("partnership_id", "Partnership"), ("name", "Name"), ("value", definition.title)],
                             [{**r, "value": views.scalar(kpi, r["value"])} for r in rows])
        return {"definition": definition, "period": p.label, "scope_id": scope_id, "compare": across,
                "series": by_month, "lineage": lineage,
                "chart": views.bar_chart([(r["period"], r["value"]) for r in by_month.rows], by_month.caption, unit),
                "tables": {t.name: t for t in (across, by_month)}}


def landing(principal: Principal) -> str | None:
    """The partnership a non-operator key's pages open on (None: the overview)."""
    if principal.is_operator or not principal.partnership_ids:
        return None
    return sorted(principal.partnership_ids)[0]


def _kpi_page_scope(principal: Principal, partnership_id: str | None) -> tuple[Scope, str | None]:
    if partnership_id:
        return Scope.PARTNERSHIP, partnership_id
    if principal.is_operator:
        return Scope.STATE, None
    if (home := landing(principal)) is None:
        raise NotAllowed("this key has no partnership")
    return Scope.PARTNERSHIP, home


def _headline(values: dict) -> dict:
    return {n: views.scalar(n, values[n]) for n in views.HEADLINE}


def _progress(snap: Snapshot, partnership_id: str, p: Period, values: dict, today: date) -> list[dict]:
    return [kpis.progress(kpis.BY_NAME[kpi], values[kpi], target, p, today)
            for (kpi, label), target in sorted(snap.targets(partnership_id).items())
            if label == p.label and kpi in kpis.BY_NAME]
