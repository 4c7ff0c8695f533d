"""HTTP API: KPI values for a partnership, region, sector or the whole state and a period, time
series, comparison across partnerships, and lineage (the events behind a value).

A partnership-scoped key sees its partnerships only; regions, sectors and the state mix several
partnerships' figures, so they need the operator role (decided in services/metrics/queries.py)."""

from datetime import date
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.metrics import kpis
from services.metrics.queries import MAX_LINEAGE_IDS, KpiService, Scope
from shared.auth import Principal, authenticated
from shared.contracts.queries import KpiValuesV1
from shared.periods import PERIOD_PATTERN

# Built from the catalogue at import time, which mypy cannot follow.
KpiName = StrEnum("KpiName", {k.name: k.name for k in kpis.CATALOGUE})  # type: ignore[misc]

PeriodParam = Annotated[
    str,
    Query(pattern=PERIOD_PATTERN, description="2026-03 (month), 2026-Q1 (quarter), PY2025 (program year, July-June)"),
]
ScopeId = Annotated[
    str | None, Query(max_length=128, description="the partnership, region or sector id; none for the state")
]


def routes(kpi_service: KpiService) -> APIRouter:
    router = APIRouter(prefix="/kpis", tags=["kpis"])

    @router.get("/definitions", summary="The KPI catalogue: every definition with its version")
    async def definitions(principal: Principal = Depends(authenticated)) -> dict:
        return await kpi_service.definitions(principal)

    # Other services read this answer (notify's digests): its shape is the KpiValuesV1 query contract.
    @router.get("/values", summary="Every KPI of a scope for one period, with progress against targets",
                response_model=KpiValuesV1)
    async def values(
        period: PeriodParam,
        scope: Scope = Scope.PARTNERSHIP,
        scope_id: ScopeId = None,
        as_of: Annotated[date | None, Query(description="the day 'on track' is judged on; default today")] = None,
        principal: Principal = Depends(authenticated),
    ) -> dict:
        return await kpi_service.values(principal, period, scope, scope_id, as_of)

    @router.get("/series", summary="One KPI of a scope over consecutive periods of one grain")
    async def series(
        kpi: KpiName,
        first: PeriodParam,
        last: PeriodParam,
        scope: Scope = Scope.PARTNERSHIP,
        scope_id: ScopeId = None,
        principal: Principal = Depends(authenticated),
    ) -> dict:
        return await kpi_service.series(principal, kpi.value, first, last, scope, scope_id)

    @router.get("/compare", summary="One KPI for one period across the partnerships the caller may see")
    async def compare(kpi: KpiName, period: PeriodParam, principal: Principal = Depends(authenticated)) -> dict:
        return await kpi_service.compare(principal, kpi.value, period)

    @router.get("/lineage", summary="Which events (ids) produced a KPI value")
    async def lineage(
        kpi: KpiName,
        period: PeriodParam,
        scope: Scope = Scope.PARTNERSHIP,
        scope_id: ScopeId = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LINEAGE_IDS)] = 1000,
        principal: Principal = Depends(authenticated),
    ) -> dict:
        return await kpi_service.lineage(principal, kpi.value, period, scope, scope_id, limit)

    return router
