"""Query contracts: the answers one service reads from another's HTTP API, versioned like events.

Services otherwise talk only through events. Notify's digests need a partnership's KPI values at
the moment a digest goes out, which no event carries; rather than a read model of every KPI fed by
events, notify reads them from metrics under this contract. A change that would break a reader is
a new model (KpiValuesV2) served beside this one until every reader has moved.
"""
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class KpiValuesV1(BaseModel):
    """The answer of metrics' `GET /kpis/values` (every KPI of a scope for one period)."""

    # Readers ignore fields added later; adding a field is not a new version.
    model_config = ConfigDict(extra="ignore")

    version: Literal[1] = 1
    scope: str
    scope_id: str | None = None
    period: dict[str, Any]
    partnerships: list[str]
    values: dict[str, Any]  # a KPI's value: a number, None when undefined, or a breakdown (dict)
    targets: list[dict[str, Any]] | None = None  # partnership scope only: progress against each target

    def numbers(self) -> dict[str, float]:
        """The KPIs with a plain numeric value (breakdowns and undefined values left out)."""
        return {k: float(v) for k, v in self.values.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
