"""What the read use cases computed from the KPI store, kept while it is still true.

A KPI value is computed from facts that grow with history (every hire of a cohort, every activity
held), so computing it costs what the history costs. Each entry is kept with the *signature* of
the facts it was computed from: the stamps (services/metrics/store.py) of the partnerships it
read, which every stored batch renews in the same transaction as its facts. An entry is served
only while the stamps read at the start of a request equal its signature, so a figure is never
older than the last batch stored before the request began, and it is computed from facts again
once any batch touches what it read. The signature is read before the facts, so an entry is at
worst newer than its signature, never older.

Bounded: the least recently used entries go first. In process: each replica keeps its own.
"""

from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

from prometheus_client import Counter

READS = Counter("backbone_metrics_read_cache_total", "Figures the read use cases looked for among those kept",
                ["outcome"])
OUTCOMES = ("hit", "miss")
for _outcome in OUTCOMES:
    READS.labels(_outcome)


class Computed:
    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self.entries: OrderedDict[Hashable, tuple[Hashable, Any]] = OrderedDict()

    def get(self, key: Hashable, signature: Hashable) -> Any | None:
        """The value kept under `key` if it was computed from facts of this signature; else None."""
        entry = self.entries.get(key)
        if entry is None or entry[0] != signature:
            READS.labels("miss").inc()
            return None
        self.entries.move_to_end(key)
        READS.labels("hit").inc()
        return entry[1]

    def put(self, key: Hashable, signature: Hashable, value: Any) -> Any:
        self.entries[key] = (signature, value)
        self.entries.move_to_end(key)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
        return value


DATED = Counter("backbone_metrics_dated_reads_total",
                "Partnerships whose dated facts a read needed, by whether they were kept, read again for "
                "the months changed since, or read from the store",
                ["outcome"])
for _outcome in ("kept", "changed", "read"):
    DATED.labels(_outcome)


class KeptMonths:
    """Each partnership's dated facts by month as last read, each month kept while its stamp (the
    store's, renewed by every batch changing that month's facts) is unchanged: a batch stored for
    one partnership makes a read take that partnership's changed months from the store again, not
    its other months nor every partnership's. An entry holds the months from the first one read
    on. Bounded by the partnership-months kept: the least recently used partnerships go first."""

    def __init__(self, capacity_months: int):
        self.capacity = capacity_months
        # key -> (first month read, month stamps as read, [(month, facts)] from the first month on)
        self.entries: OrderedDict[Hashable, tuple[str, Mapping[str, str], list[tuple[str, Any]]]] = OrderedDict()
        self.months = 0

    def get(self, key: Hashable, first_month: str,
            stamps: Mapping[str, str]) -> tuple[list[tuple[str, Any]], list[str]] | None:
        """(month, facts) kept under `key` from `first_month` on whose month stamps are still
        `stamps`, and the months from `first_month` on changed since (to read again); None if not
        kept from that month or earlier."""
        entry = self.entries.get(key)
        if entry is None or entry[0] > first_month:
            DATED.labels("read").inc()
            return None
        self.entries.move_to_end(key)
        _, kept_stamps, months = entry
        changed = _changed(stamps, kept_stamps, first_month)
        DATED.labels("changed" if changed else "kept").inc()
        stale = set(changed)
        return [(m, facts) for m, facts in months if m >= first_month and m not in stale], changed

    def put(self, key: Hashable, first_month: str, stamps: Mapping[str, str], months: list[tuple[str, Any]]) -> None:
        """`months`: every (month, facts) from `first_month` on, read under these month stamps. The
        months kept from before `first_month` stay if none of them changed since."""
        if (old := self.entries.pop(key, None)) is not None:
            self.months -= _distinct(old[2])
            old_first, old_stamps, old_months = old
            if old_first < first_month and not _changed(stamps, old_stamps, old_first, before=first_month):
                first_month, months = old_first, [(m, f) for m, f in old_months if m < first_month] + months
        if (size := _distinct(months)) > self.capacity:
            return
        self.entries[key] = (first_month, stamps, months)
        self.months += size
        while self.months > self.capacity:
            self.months -= _distinct(self.entries.popitem(last=False)[1][2])


def _changed(stamps: Mapping[str, str], kept: Mapping[str, str], first_month: str,
             before: str | None = None) -> list[str]:
    """The months from `first_month` on (and before `before`) whose stamps differ, in order: changed
    since they were kept, or new."""
    return sorted(m for m in {*stamps, *kept}
                  if first_month <= m and (before is None or m < before) and stamps.get(m) != kept.get(m))


def _distinct(months: list[tuple[str, Any]]) -> int:
    return len({month for month, _ in months})  # a month has facts of several sources
