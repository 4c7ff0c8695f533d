"""What the events service has recorded, in memory: a Bloom filter (shared/bloom.py) of the
identities of accepted events and the keys of recorded hires. Most events submitted are new, and
for each the duplicate check and, for a hire, the check that its id is new, were lookups that
find nothing; the filter rules those out without asking the database (a group of 500 new hires
1.16x quicker, and a quarter less of the database's work: bench/README.md). Whatever the filter
cannot rule out is looked up as before, so its answers stay exact however full it gets, and the
unique index of identities stays the last word.

"Never recorded" is only certain of what the filter has been given: every sheet stored before it
was loaded (`load`, in the background at start: lookups meanwhile), what this replica records
(`add`), and what other replicas record. Those are found by the partnerships' turns: each turn
to decide a partnership's events is numbered (its lease counts them, shared/lease.py), its
sheets name it, and a turn's records are stored before it passes on. The intake, in its turn,
reads every partnership's last finished turn (`sync`) and the sheets of the turns the filter has
not seen. Every partnership's, not only the group's: an identity is unique across them. The
numbers are written outside the decisions' transactions: a replica killed in its turn leaves
nothing another must wait for.

A replica whose turn ran out while it stalled may store its records after another read past
its turn: the filter then rules out an event recorded after all, the unique index refuses its
record, and the filter is distrusted and loaded afresh (`distrust`); the sender's retry finds
the duplicate. Records of replicas from before turns were numbered (during a rollout) alike.
"""

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Protocol

from prometheus_client import Counter, Gauge

from shared.bloom import BloomFilter, digest_of

log = logging.getLogger(__name__)

LOADED = Gauge("backbone_events_recorded_filter_loaded",
               "1 once the filter of recorded identities and hires holds every stored record, else 0 (lookups then)")
ANSWERS = Counter("backbone_events_recorded_filter_answers_total",
                  "Duplicate and hire checks by the filter of recorded identities and hires: ruled out at once "
                  "(new), or left to a lookup (maybe)", ["check", "answer"])  # check: identity, hire
for _check in ("identity", "hire"):
    for _answer in ("new", "maybe"):
        ANSWERS.labels(_check, _answer)


class Records(Protocol):
    async def finished_turns(self, holder: str) -> dict[str, int]: ...

    def recorded_keys(self, since: Mapping[str, int] | None = None) -> AsyncIterator[tuple[list[str], list[str]]]: ...


def _hire(key: str) -> str:
    return f"hire {key}"  # a hire's key apart from every identity (which names a source first)


class RecordedFilter:
    def __init__(self, records: Records, holder: str, mib: int = 32):
        self.records = records
        self.holder = holder  # this replica, in the partnerships' leases
        self.bloom = BloomFilter(mib)
        # Each partnership's turn whose records (and every earlier turn's) the filter holds;
        # None until loaded, and again after it was found wanting (`distrust`).
        self.synced: dict[str, int] | None = None
        self._distrusted = 0  # times: a load under way when it was distrusted again is not trusted
        self.wake: Callable[[], None] = lambda: None  # its loader worker's, set by workers.py

    def add(self, identities: Iterable[str], hire_keys: Iterable[str]) -> None:
        """Records about to be stored, or stored: harmless if they never are (a lookup more)."""
        self.bloom.add(b"".join([*map(digest_of, identities), *(digest_of(_hire(k)) for k in hire_keys)]))

    def maybe_recorded(self, identities: list[str]) -> list[str]:
        """The identities that may have been recorded: all of them until the filter is loaded."""
        return self._maybe("identity", identities, identities)

    def maybe_hires(self, hire_keys: list[str]) -> list[str]:
        """The hire keys that may have been recorded: all of them until the filter is loaded."""
        return self._maybe("hire", hire_keys, [_hire(k) for k in hire_keys])

    def _maybe(self, check: str, keys: list[str], texts: list[str]) -> list[str]:
        if self.synced is None:
            return keys
        maybe = [k for k, m in zip(keys, self.bloom.maybe_seen([digest_of(t) for t in texts]), strict=True) if m]
        ANSWERS.labels(check, "new").inc(len(keys) - len(maybe))
        ANSWERS.labels(check, "maybe").inc(len(maybe))
        return maybe

    async def load(self) -> float | None:
        """Every stored record into the filter (the loader worker's step; nothing to do once
        loaded). Turns read first: what is recorded during the read is read again by `sync`."""
        if self.synced is not None:
            return None
        distrusted = self._distrusted
        finished = await self.records.finished_turns(self.holder)
        sheets = 0
        async for identities, hire_keys in self.records.recorded_keys():
            self.add(identities, hire_keys)
            sheets += 1
        if distrusted != self._distrusted:
            return 0.0  # it may have read past what it missed: loaded again at once
        self.synced = finished
        LOADED.set(1)
        log.info("filter of recorded events loaded", extra={"sheets": sheets})
        return None

    async def sync(self, turns: Mapping[str, int]) -> None:
        """Give the filter (when loaded) what other replicas recorded since it last looked. Called
        in `turns` (partnership -> the turn held now), so every earlier turn of theirs is over."""
        finished = await self.records.finished_turns(self.holder) | {pid: turn - 1 for pid, turn in turns.items()}
        if (synced := self.synced) is not None:
            behind = {pid: synced.get(pid, 0) for pid, turn in finished.items() if turn > synced.get(pid, 0)}
            if behind:
                async for identities, hire_keys in self.records.recorded_keys(behind):
                    self.add(identities, hire_keys)
                synced.update({pid: finished[pid] for pid in behind})

    def recorded(self, turns: Mapping[str, int]) -> None:
        """This replica stored its records of these turns, given to the filter by `add`: it holds
        them if it held every earlier turn's (else, loaded meanwhile, the next `sync` reads them)."""
        if (synced := self.synced) is not None:
            synced.update({pid: turn for pid, turn in turns.items() if synced.get(pid, 0) == turn - 1})

    def distrust(self) -> None:
        """The filter ruled out an event recorded after all (stored late by a replica whose turn
        ran out, or by one from before turns were numbered, during a rollout): everything is
        looked up again until its loader (woken here) has loaded it afresh."""
        if self.synced is not None:
            log.warning("filter of recorded events missed a record; loading it again")
        self.synced = None
        self._distrusted += 1
        LOADED.set(0)
        self.wake()
