"""Milestones: watching the KPIs of partnerships whose facts changed and announcing each milestone
reached once, apart from the rollup (services/metrics/rollup.py tells it what was stored)."""

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import date

from prometheus_client import Counter, Gauge

from services.metrics import domain, kpis
from services.metrics.domain import Cells
from services.metrics.queries import KpiService, Snapshot
from services.metrics.store import MetricsStore
from shared.contracts.signals import MilestoneReached
from shared.envelope import CloudEvent, new_event
from shared.periods import Grain, parse_period, period_of

log = logging.getLogger(__name__)

KPI_VALUE = Gauge("backbone_metrics_kpi_value", "KPI values of the current program year", ["kpi", "partnership"])
MILESTONES = Counter("backbone_metrics_milestones_total", "Milestones announced", ["reason"])
SKIPPED = Counter("backbone_metrics_milestone_checks_skipped_total",
                  "Partnership periods or targets the milestone check left out", ["reason"])
SKIP_REASONS = ("bad_period", "unknown_kpi", "error")  # bad_period, unknown_kpi: stored before targets were validated
for _reason in SKIP_REASONS:
    SKIPPED.labels(_reason)  # a series from the start, so the first skip shows in increase()
MILESTONE_IDS = uuid.UUID("6f1c9a52-33a5-4a53-9a49-2f4b1f1e8c11")  # namespace of milestone event ids


class Milestones:
    """Watches the KPIs of partnerships whose facts changed: announces each milestone reached once
    (its event id is derived from the milestone, so a repeat after a crash is a duplicate that
    consumers drop), and keeps the KPI gauges of the current program year.

    Runs apart from the rollup, in its own worker (workers.py), so a batch never waits for it. After
    a start it looks at every partnership once, which catches what a crash interrupted."""

    def __init__(self, store: MetricsStore, figures: KpiService, publish: Callable[[CloudEvent], Awaitable[None]],
                 source: str):
        self.store = store
        self.figures = figures  # the KPI values the pages read, kept between checks and reads alike
        self.publish = publish
        self.source = source
        self.due: set[tuple[str, str]] = set()  # (partnership, period) to look at
        self.first = True

    def stored(self, cells: Cells) -> None:
        current = period_of(date.today(), Grain.PROGRAM_YEAR).label
        self.due |= domain.program_years_touched(cells) | domain.targets_touched(cells)
        self.due |= {(pid, current) for pid, _ in list(self.due)}

    async def step(self) -> None:
        """One look (the milestones Worker's step); the first after a start looks at everything."""
        if self.first:
            await self._look_at_everything()
            self.first = False
        due, self.due = self.due, set()
        try:
            await self.check(due)
        except Exception:
            self.due |= due  # look again next time
            raise

    async def _look_at_everything(self) -> None:
        snap = await self.figures.snapshot()
        months = await self.store.months_with_facts(snap.version)
        current = period_of(date.today(), Grain.PROGRAM_YEAR).label
        self.due |= {(pid, period_of(date.fromisoformat(m + "-01"), Grain.PROGRAM_YEAR).label) for pid, m in months}
        self.due |= {(pid, current) for pid in set(snap.rosters) | {pid for pid, _ in months}}
        for pid in snap.rosters:
            self.due |= {(pid, period) for _, period in snap.targets(pid)}

    async def _check_one(self, snap: Snapshot, pid: str, label: str, current: str) -> list[kpis.Milestone]:
        try:
            period = parse_period(label)
        except ValueError:  # a target stored before periods were validated, e.g. PY9999
            SKIPPED.labels("bad_period").inc()
            log.warning("milestone check skipped a period that is not one",
                        extra={"partnership_id": pid, "period": label[:20]})
            return []
        (values,) = await self.figures.partnership_values(snap, [(pid, period)])
        goals = {kpi: value for (kpi, p), value in (snap.targets(pid) if pid in snap.rosters else {}).items()
                 if p == label}
        for name in [k for k in goals if k not in kpis.BY_NAME]:
            SKIPPED.labels("unknown_kpi").inc()
            log.warning("milestone check skipped a target on no KPI",
                        extra={"partnership_id": pid, "period": label, "kpi": name[:60]})
        if label == current:
            for kpi in kpis.CATALOGUE:
                value = values[kpi.name]
                if kpi.scalar and isinstance(value, int | float):  # a scalar KPI's value: a number or None
                    KPI_VALUE.labels(kpi.name, pid).set(value)
        return kpis.milestones(pid, period, values, goals)

    async def check(self, due: set[tuple[str, str]]) -> None:
        if not due:
            return
        snap = await self.figures.snapshot()
        current = period_of(date.today(), Grain.PROGRAM_YEAR).label
        reached: list[kpis.Milestone] = []
        for pid, label in sorted(due):
            # Each partnership and period on its own: one bad record is skipped, never stops the others.
            try:
                reached += await self._check_one(snap, pid, label, current)
            except Exception:
                SKIPPED.labels("error").inc()
                self.due.add((pid, label))  # perhaps passing (the store); looked at again next time
                log.exception("milestone check of one partnership period failed",
                              extra={"partnership_id": pid, "period": label})
        if not reached:
            return
        known = await self.store.announced([m.key for m in reached])
        new = [m for m in reached if m.key not in known]
        for m in kpis.worth_announcing(new):
            await self.publish(new_event(
                MilestoneReached(partnership_id=m.partnership_id, kpi=m.kpi, period=m.period, value=m.value,
                                 threshold=m.threshold, reason=m.reason),
                source=self.source, id=str(uuid.uuid5(MILESTONE_IDS, m.key))))
            MILESTONES.labels(m.reason).inc()
            log.info("milestone announced", extra={"partnership_id": m.partnership_id, "kpi": m.kpi,
                                                   "period": m.period, "threshold": m.threshold})
        if new:
            await self.store.record_milestones(new)
