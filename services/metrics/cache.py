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
