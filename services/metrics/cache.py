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
from collections.abc import Hashable
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
                "Partnerships whose dated facts a read needed, by whether they were kept or read from the store",
                ["outcome"])
for _outcome in ("kept", "read"):
    DATED.labels(_outcome)


class KeptMonths:
    """Each partnership's dated facts by month as last read, kept while its facts stamp is
    unchanged: a batch stored for one partnership makes a figure of the state read that
    partnership's facts from the store again, not every partnership's. An entry holds the months
    from the first one read on. Bounded by the months kept: the least recently used partnerships
    go first."""

    def __init__(self, capacity_months: int):
        self.capacity = capacity_months
        self.entries: OrderedDict[Hashable, tuple[Hashable, str, list[tuple[str, Any]]]] = OrderedDict()
        self.months = 0

    def get(self, key: Hashable, stamp: Hashable, first_month: str) -> list[tuple[str, Any]] | None:
        """(month, facts) kept under `key` from `first_month` on, if read under this stamp from that
        month or earlier."""
        entry = self.entries.get(key)
        if entry is None or entry[0] != stamp or entry[1] > first_month:
            DATED.labels("read").inc()
            return None
        self.entries.move_to_end(key)
        DATED.labels("kept").inc()
        return [(month, facts) for month, facts in entry[2] if month >= first_month]

    def put(self, key: Hashable, stamp: Hashable, first_month: str, months: list[tuple[str, Any]]) -> None:
        if (old := self.entries.pop(key, None)) is not None:
            self.months -= len(old[2])
        if len(months) > self.capacity:
            return
        self.entries[key] = (stamp, first_month, months)
        self.months += len(months)
        while self.months > self.capacity:
            self.months -= len(self.entries.popitem(last=False)[1][2])
