"""Which event identities the rollup has applied, in memory of a fixed size: a Bloom filter of
their digests (`digest`, 16 bytes each; shared/bloom.py).

"Not seen" is certain: the identity was never stored with the KPIs, so the event is new. "Maybe
seen" is answered by the last quarter million identities applied, kept exactly (most copies come
soon after the original), and otherwise looked up among the identities stored with the KPIs
(MetricsStore.stored_among), so the answer stays exact however full the filter gets; only the
number of lookups grows (each reads one partition's stored identities; shared/bloom.py gives how
often a new event is wrongly "maybe").

Pure logic (numpy, no I/O).
"""

from collections import deque

import numpy as np

from shared.bloom import DIGEST_BYTES, digest_of
from shared.envelope import identity as event_identity

DIGEST = np.dtype(f"V{DIGEST_BYTES}")


def digest(source: str, event_id: str) -> bytes:
    """An event's identity as CloudEvents defines it (its id is unique within its source only),
    digested. The source's length first keeps (source, id) pairs apart whatever they contain.
    Stores written before identities included the source hold id-only digests: rebuild them
    (`backbone kpis rebuild`)."""
    return digest_of(event_identity(source, event_id))


class RecentIdentities:
    """The last `capacity` identities applied, exactly: copies come mostly soon after the original
    (a retried request, an outbox relayed again), and those are answered without a lookup."""

    def __init__(self, capacity: int = 250_000):
        self.capacity = capacity
        self.order: deque[bytes] = deque()
        self.held: set[bytes] = set()

    def __contains__(self, identity: bytes) -> bool:
        return identity in self.held

    def add(self, identities: list[bytes]) -> None:
        for identity in identities:
            if identity not in self.held:
                self.order.append(identity)
                self.held.add(identity)
        while len(self.order) > self.capacity:
            self.held.discard(self.order.popleft())

    def clear(self) -> None:
        self.order.clear()
        self.held.clear()


def among(packed: bytes, wanted: set[bytes]) -> set[bytes]:
    """The digests of `wanted` that are in `packed` (concatenated digests, as the store keeps them)."""
    if not packed or not wanted:
        return set()
    stored = np.frombuffer(packed, dtype=DIGEST)
    found = stored[np.isin(stored, np.frombuffer(b"".join(wanted), dtype=DIGEST))].tobytes()
    return {found[i:i + DIGEST_BYTES] for i in range(0, len(found), DIGEST_BYTES)}
