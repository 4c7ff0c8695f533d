"""The filter of what is recorded: never rules out a record it was given, whether stored before it
loaded, by this replica, or by another replica in a turn of any partnership; until loaded (or
once distrusted) it rules out nothing."""

import asyncio
from collections.abc import Mapping

from services.events.recorded import RecordedFilter

ME = "me"


class Records:
    """Sheets as the store keeps them (partnership, turn, identities, hire keys), and the
    partnerships' leases: how many turns were taken, and who is in one now."""

    def __init__(self):
        self.sheets: list[tuple[str, int, list[str], list[str]]] = []
        self.taken: dict[str, int] = {}
        self.in_turn: dict[str, str] = {}  # partnership -> holder, while a turn is under way
        self.gate: asyncio.Event | None = None  # a full scan waits here, past the sheets it will read

    def take(self, pid: str, holder: str) -> int:
        self.taken[pid] = self.taken.get(pid, 0) + 1
        self.in_turn[pid] = holder
        return self.taken[pid]

    def write(self, pid: str, identities: list[str], hire_keys: list[str] = ()) -> None:
        self.sheets.append((pid, self.taken[pid], identities, list(hire_keys)))

    def release(self, pid: str) -> None:
        del self.in_turn[pid]

    def turn_of_another(self, pid: str, identities: list[str], hire_keys: list[str] = ()) -> None:
        self.take(pid, "another")
        self.write(pid, identities, hire_keys)
        self.release(pid)

    async def finished_turns(self, holder: str) -> dict[str, int]:
        return {pid: n - (self.in_turn.get(pid, holder) != holder) for pid, n in self.taken.items()}

    async def recorded_keys(self, since: Mapping[str, int] | None = None):
        sheets = list(self.sheets)
        if since is None and self.gate:
            await self.gate.wait()
        for pid, turn, identities, hire_keys in sheets:
            if since is None or (pid in since and turn > since[pid]):
                yield identities, hire_keys


async def my_turn(recorded: RecordedFilter, records: Records, pid: str, identities: list[str]) -> None:
    """A group decided and recorded here, as the intake does."""
    turns = {pid: records.take(pid, ME)}
    await recorded.sync(turns)
    recorded.add(identities, [])
    records.write(pid, identities)
    recorded.recorded(turns)
    records.release(pid)


async def test_until_loaded_every_identity_and_hire_is_left_to_a_lookup():
    recorded = RecordedFilter(Records(), ME, mib=1)
    assert recorded.maybe_recorded(["a", "b"]) == ["a", "b"]
    assert recorded.maybe_hires(["p/h-1"]) == ["p/h-1"]


async def test_loaded_it_keeps_what_was_stored_and_rules_out_the_rest():
    records = Records()
    records.turn_of_another("p", ["a", "b"], ["p/h-1"])
    recorded = RecordedFilter(records, ME, mib=1)
    await recorded.load()
    assert recorded.maybe_recorded(["a", "new", "b"]) == ["a", "b"]
    assert recorded.maybe_hires(["p/h-1", "p/h-2"]) == ["p/h-1"]
    assert recorded.maybe_recorded(["p/h-1"]) == []  # a hire's key is not an identity


async def test_what_another_replica_records_in_any_partnership_is_read_at_the_next_turn():
    records = Records()
    recorded = RecordedFilter(records, ME, mib=1)
    await recorded.load()
    records.turn_of_another("p", ["a"])
    records.turn_of_another("q", ["b"], ["q/h-1"])  # another partnership's: an identity is unique across them
    assert recorded.maybe_recorded(["a", "b"]) == []  # not seen yet
    await recorded.sync({"p": records.take("p", ME)})
    assert recorded.maybe_recorded(["a", "b"]) == ["a", "b"]
    assert recorded.maybe_hires(["q/h-1"]) == ["q/h-1"]
    assert recorded.synced == {"p": 1, "q": 1}


async def test_a_turn_another_replica_is_in_is_read_once_it_is_over():
    records = Records()
    recorded = RecordedFilter(records, ME, mib=1)
    await recorded.load()
    records.take("q", "another")
    await recorded.sync({"p": records.take("p", ME)})
    assert recorded.synced == {}  # the turn of q under way: its records may still be on their way
    records.write("q", ["late"])
    records.release("q")
    records.release("p")
    await recorded.sync({"p": records.take("p", ME)})
    assert recorded.maybe_recorded(["late"]) == ["late"]


async def test_its_own_records_move_it_on_without_reading_them_back():
    records = Records()
    recorded = RecordedFilter(records, ME, mib=1)
    await recorded.load()
    await my_turn(recorded, records, "p", ["mine"])
    assert recorded.synced == {"p": 1}
    records.sheets.clear()  # were they read back, "mine" would be gone from what the filter holds
    await my_turn(recorded, records, "p", [])
    assert recorded.synced == {"p": 2} and recorded.maybe_recorded(["mine"]) == ["mine"]


async def test_loaded_during_a_turn_it_is_not_moved_past_what_it_missed():
    """The load read the turns, then another replica recorded (the scan went past its sheet),
    then a group was decided and recorded here: the filter is not moved on to this turn, so the
    next turn reads the other replica's sheet."""
    records = Records()
    records.gate = asyncio.Event()
    recorded = RecordedFilter(records, ME, mib=1)
    loading = asyncio.create_task(recorded.load())
    await asyncio.sleep(0)  # turns read, the scan under way
    records.turn_of_another("p", ["theirs"])
    turns = {"p": records.take("p", ME)}
    await recorded.sync(turns)  # not loaded yet: reads nothing
    records.gate.set()
    await loading
    recorded.add(["mine"], [])
    records.write("p", ["mine"])
    recorded.recorded(turns)
    records.release("p")
    assert recorded.synced == {}
    await my_turn(recorded, records, "p", [])
    assert recorded.maybe_recorded(["theirs", "mine", "new"]) == ["theirs", "mine"]


async def test_distrusted_it_rules_out_nothing_until_loaded_again():
    records = Records()
    recorded = RecordedFilter(records, ME, mib=1)
    await recorded.load()
    woken = []
    recorded.wake = lambda: woken.append(True)
    recorded.distrust()
    assert recorded.maybe_recorded(["x"]) == ["x"] and woken == [True]  # its loader asked to load again
    records.turn_of_another("p", ["x"])
    await recorded.load()
    assert recorded.maybe_recorded(["x", "y"]) == ["x"]


async def test_distrusted_while_loading_it_is_loaded_again_rather_than_trusted():
    records = Records()
    records.gate = asyncio.Event()
    recorded = RecordedFilter(records, ME, mib=1)
    loading = asyncio.create_task(recorded.load())
    await asyncio.sleep(0)
    recorded.distrust()
    records.gate.set()
    assert await loading == 0.0  # at once again
    assert recorded.synced is None
    await recorded.load()
    assert recorded.synced == {}
