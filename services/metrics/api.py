"""HTTP API: KPI values for a partnership, region, sector or the whole state and a period, time
series, comparison across partnerships, and lineage (the events behind a value).

A partnership-scoped key sees its partnerships only; regions, sectors and the state mix several
partnerships' figures, so they need the operator role."""

from datetime import date
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from services.metrics import kpis
from services.metrics.domain import PERIOD_PATTERN, Facts, Period, parse_period, periods_between
from services.metrics.store import MetricsStore
from shared.auth import Principal, authenticated

KpiName = StrEnum("KpiName", {k.name: k.name for k in kpis.CATALOGUE})
MAX_SERIES_PERIODS = 120


class Scope(StrEnum):
    PARTNERSHIP = "partnership"
    REGION = "region"
    SECTOR = "sector"
    STATE = "state"


PeriodParam = Annotated[str, Query(pattern=PERIOD_PATTERN, description="2026-03 (month), 2026-Q1 (quarter), PY2025 (program year, July-June)")]
ScopeId = Annotated[str | None, Query(max_length=128, description="the partnership, region or sector id; none for the state")]


def _period(label: str, field: str) -> Period:
    try:
        return parse_period(label)
    except ValueError as exc:
        raise HTTPException(422, [{"loc": ["query", field], "msg": str(exc), "type": "value_error"}]) from None


class _Reader:
    """One request's view of the current KPI store."""

    def __init__(self, store: MetricsStore):
        self.store = store

    async def load(self) -> None:
        self.version = await self.store.version()
        self.rosters, self.directory = await self.store.rosters(self.version)
        self.partnerships = {key.removeprefix("partnership:"): entry[2]
                             for roster in self.rosters.values()
                             for key, entry in roster.latest.items() if key.startswith("partnership:")}

    def members_of(self, scope: Scope, scope_id: str | None, principal: Principal) -> list[str] | None:
        """The partnerships in a scope (None: all of them), after checking the caller may see it."""
        if scope is Scope.PARTNERSHIP:
            if not scope_id:
                raise HTTPException(422, [{"loc": ["query", "scope_id"], "msg": "a partnership id is required", "type": "missing"}])
            principal.require_partnership(scope_id)
            if scope_id not in self.rosters:
                raise HTTPException(404, f"no KPIs for partnership {scope_id!r}")
            return [scope_id]
        if not principal.is_operator:
            raise HTTPException(403, f"the {scope.value} scope combines partnerships: it needs the operator role")
        if scope is Scope.STATE:
            return None
        if not scope_id:
            raise HTTPException(422, [{"loc": ["query", "scope_id"], "msg": f"a {scope.value} id is required", "type": "missing"}])
        members = [pid for pid, state in self.partnerships.items() if state[f"{scope.value}_id"] == scope_id]
        if not members:
            raise HTTPException(404, f"no partnership in {scope.value} {scope_id!r}")
        return members

    def rosters_of(self, partnership_ids: list[str] | None) -> list[Facts]:
        return [r for pid, r in self.rosters.items() if partnership_ids is None or pid in partnership_ids]

    async def dated(self, partnership_ids: list[str] | None, first: Period) -> list[tuple[str, str, Facts]]:
        return await self.store.dated(self.version, partnership_ids, first.months[0])

    def view(self, period: Period, dated: list[tuple[str, str, Facts]], partnership_ids: list[str] | None) -> kpis.View:
        first = period.months[0]
        return kpis.build_view(period, [(m, f) for _, m, f in dated if m >= first], self.rosters_of(partnership_ids),
                               self.directory)


def _describe(period: Period) -> dict:
    return {"label": period.label, "grain": period.grain.value, "start": period.start, "end": period.end}


class KpiQueries:
    """What the API answers, for the JSON routes and the KPI pages alike (so both show the same
    numbers). Each call reads the current KPI store once."""

    def __init__(self, store: MetricsStore):
        self.store = store

    async def reader(self) -> _Reader:
        r = _Reader(self.store)
        await r.load()
        return r

    async def definitions(self) -> dict:
        return {"store_version": await self.store.version(), "kpis": [k.describe() for k in kpis.CATALOGUE]}

    async def values(self, principal: Principal, period: str, scope: Scope = Scope.PARTNERSHIP,
                     scope_id: str | None = None, as_of: date | None = None) -> dict:
        r = await self.reader()
        members = r.members_of(scope, scope_id, principal)
        p = _period(period, "period")
        values = kpis.evaluate(r.view(p, await r.dated(members, p), members))
        answer = {"scope": scope.value, "scope_id": scope_id, "period": _describe(p),
                  "partnerships": sorted(members) if members is not None else sorted(r.rosters),
                  "values": values}
        if scope is Scope.PARTNERSHIP:
            answer["targets"] = [
                kpis.progress(kpis.BY_NAME[kpi], values[kpi], target, p, as_of or date.today())
                for (kpi, label), target in sorted(kpis.targets(r.rosters[scope_id], scope_id).items())
                if label == p.label and kpi in kpis.BY_NAME
            ]
        return answer

    async def series(self, principal: Principal, kpi: str, first: str, last: str, scope: Scope = Scope.PARTNERSHIP,
                     scope_id: str | None = None) -> dict:
        r = await self.reader()
        members = r.members_of(scope, scope_id, principal)
        start, end = _period(first, "first"), _period(last, "last")
        if start.grain is not end.grain or end.start < start.start:
            raise HTTPException(422, [{"loc": ["query", "last"], "msg": "must be of the grain of `first` and not before it",
                                       "type": "value_error"}])
        periods = periods_between(start.grain, start.start, end.end)
        if len(periods) > MAX_SERIES_PERIODS:
            raise HTTPException(422, [{"loc": ["query", "last"], "msg": f"at most {MAX_SERIES_PERIODS} periods",
                                       "type": "value_error"}])
        definition = kpis.BY_NAME[kpi]
        dated = await r.dated(members, start)
        return {"kpi": definition.name, "version": definition.version, "scope": scope.value, "scope_id": scope_id,
                "points": [{"period": p.label, "value": definition.compute(r.view(p, dated, members))} for p in periods]}

    async def compare(self, principal: Principal, kpi: str, period: str) -> dict:
        r = await self.reader()
        p = _period(period, "period")
        visible = sorted(pid for pid in r.rosters if principal.may_access(pid))
        definition = kpis.BY_NAME[kpi]
        dated = await r.dated(visible, p)
        rows = []
        for pid in visible:
            mine = [row for row in dated if row[0] == pid]
            rows.append({"partnership_id": pid, "name": r.partnerships.get(pid, {}).get("name"),
                         "value": definition.compute(r.view(p, mine, [pid]))})
        if definition.scalar:
            rows.sort(key=lambda row: (row["value"] is None, -(row["value"] or 0), row["partnership_id"]))
        return {"kpi": definition.name, "version": definition.version, "period": _describe(p), "partnerships": rows}

    async def lineage(self, principal: Principal, kpi: str, period: str, scope: Scope = Scope.PARTNERSHIP,
                      scope_id: str | None = None, limit: int = 1000) -> dict:
        r = await self.reader()
        members = r.members_of(scope, scope_id, principal)
        p = _period(period, "period")
        definition = kpis.BY_NAME[kpi]
        dated = await r.dated(members, p)
        events, ids = kpis.lineage(definition, p, [(m, f) for _, m, f in dated], r.rosters_of(members), limit)
        return {"kpi": definition.name, "version": definition.version, "scope": scope.value, "scope_id": scope_id,
                "period": _describe(p), "value": definition.compute(r.view(p, dated, members)),
                "events": events, "event_ids": ids, "complete": len(ids) == events}


def routes(queries: KpiQueries) -> APIRouter:
    router = APIRouter(prefix="/kpis", tags=["kpis"])

    @router.get("/definitions", summary="The KPI catalogue: every definition with its version")
    async def definitions(principal: Principal = Depends(authenticated)) -> dict:
        return await queries.definitions()

    @router.get("/values", summary="Every KPI of a scope for one period, with progress against targets")
    async def values(
        period: PeriodParam,
        scope: Scope = Scope.PARTNERSHIP,
        scope_id: ScopeId = None,
        as_of: Annotated[date | None, Query(description="the day 'on track' is judged on; default today")] = None,
        principal: Principal = Depends(authenticated),
    ) -> dict:
        return await queries.values(principal, period, scope, scope_id, as_of)

    @router.get("/series", summary="One KPI of a scope over consecutive periods of one grain")
    async def series(
        kpi: KpiName,
        first: PeriodParam,
        last: PeriodParam,
        scope: Scope = Scope.PARTNERSHIP,
        scope_id: ScopeId = None,
        principal: Principal = Depends(authenticated),
    ) -> dict:
        return await queries.series(principal, kpi.value, first, last, scope, scope_id)

    @router.get("/compare", summary="One KPI for one period across the partnerships the caller may see")
    async def compare(kpi: KpiName, period: PeriodParam, principal: Principal = Depends(authenticated)) -> dict:
        return await queries.compare(principal, kpi.value, period)

    @router.get("/lineage", summary="Which events (ids) produced a KPI value")
    async def lineage(
        kpi: KpiName,
        period: PeriodParam,
        scope: Scope = Scope.PARTNERSHIP,
        scope_id: ScopeId = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        principal: Principal = Depends(authenticated),
    ) -> dict:
        return await queries.lineage(principal, kpi.value, period, scope, scope_id, limit)

    return router
