"""The metrics read use cases over an in-memory KPI store: who sees which scope (decided before
anything is read), what the pages show, that a page reads the store once however many
partnerships it lists, and that a figure read again is not computed again unless its facts changed."""

import asyncio
import threading
from collections import Counter
from datetime import date

import pytest

from services.metrics import kpis, queries
from services.metrics.cache import Computed, KeptMonths
from services.metrics.domain import DATED_SOURCES, ROSTER, Cells, Facts, record
from services.metrics.queries import KpiService, Scope
from services.metrics.sessions import LoginThrottle
from services.metrics.store import Stamp
from shared.auth import Principal
from shared.contracts import membership as mem
from shared.contracts import outcomes as out
from shared.contracts.base import AccessRole
from shared.envelope import new_event
from shared.errors import Invalid, NotAllowed, NotFound
from shared.periods import parse_period
from tests.examples import EXAMPLES

TODAY = date(2026, 3, 15)
PARTNERSHIPS = {"sw-mp": ("ct-southwest", "manufacturing"), "nw-mp": ("ct-northwest", "manufacturing"),
                "sw-health": ("ct-southwest", "health")}
OPERATOR = Principal("op", AccessRole.OPERATOR)
OTHER_ROLES = (AccessRole.PARTNERSHIP_ADMIN, AccessRole.PARTNER_SYSTEM, AccessRole.VIEWER)


def of_sw(role: AccessRole) -> Principal:
    return Principal(f"{role.value}-sw", role, frozenset({"sw-mp"}))


class FakeStore:
    """The KPI store's reads over facts folded in memory; counts how often each is called."""

    def __init__(self, events: list):
        self.cells = Cells()
        self.months: dict[str, dict[str, str]] = {}  # partnership -> month -> stamp, as the store renews them
        self.reads: Counter = Counter()
        self.changes = 0
        for data in events:
            self._fold(data)

    def _fold(self, data) -> None:
        batch = Cells()
        record(new_event(data, source="/test").model_dump(), batch)
        for (source, pid, bucket), facts in batch.items():
            self.cells.at(source, pid, bucket).merge(facts)
            if source in DATED_SOURCES:
                self.months.setdefault(pid, {})[bucket] = str(self.changes)

    async def version(self) -> int:
        return 1

    async def stamps(self, version: int) -> dict[str, Stamp]:
        self.reads["stamps"] += 1
        return {p: self.stamp(p, str(self.changes), str(self.changes)) for (_, p, _) in self.cells}

    def stamp(self, pid: str, facts: str, roster: str | None) -> Stamp:
        return Stamp(facts, roster, dict(self.months.get(pid, {})))

    def add(self, data) -> None:
        """A stored batch of one event: its facts, and new stamps."""
        self.changes += 1
        self._fold(data)

    async def rosters(self, version: int, known: list[str]) -> dict[str, Facts]:
        self.reads["rosters"] += 1
        self.known = sorted(known)
        return {p: f for (s, p, b), f in self.cells.items() if s == "membership" and b == ROSTER and p not in known}

    async def directory(self, version: int) -> list[Facts]:
        self.reads["directory"] += 1
        return [f for (s, _, b), f in self.cells.items() if s == "membership" and b != ROSTER]

    async def dated(self, version: int, partnership_ids: list[str] | None, first_month: str,
                    months: list[str] | None = None) -> list:
        self.reads["dated"] += 1
        self.asked, self.asked_months = partnership_ids, months
        return [(p, b, f) for (s, p, b), f in self.cells.items()
                if s in DATED_SOURCES and b >= first_month and (partnership_ids is None or p in partnership_ids)
                and (months is None or b in months)]


def events() -> list:
    found = []
    for pid, (region, sector) in PARTNERSHIPS.items():
        found.append(EXAMPLES[mem.PartnershipCreated].model_copy(update={
            "partnership_id": pid, "name": f"Partnership {pid}", "region_id": region, "sector_id": sector}))
        for i in range(3 if pid == "sw-mp" else 1):
            found.append(EXAMPLES[out.HireRecorded].model_copy(update={
                "partnership_id": pid, "hire_id": f"{pid}-h{i}", "person_id": f"{pid}-p{i}",
                "start_date": date(2025, 9, 1 + i)}))
    found.append(mem.TargetSet(partnership_id="sw-mp", kpi="hires", period="PY2025", value=6))
    return found


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(events())


@pytest.fixture
def kpi(store) -> KpiService:
    return KpiService(store, today=lambda: TODAY)


# --- the scope rule ----------------------------------------------------------------------------

@pytest.mark.parametrize("scope,scope_id", [(Scope.STATE, None), (Scope.REGION, "ct-southwest"),
                                            (Scope.SECTOR, "manufacturing"), (Scope.PARTNERSHIP, "nw-mp")])
def test_operators_may_read_every_scope(scope, scope_id):
    queries.authorize(OPERATOR, scope, scope_id)


@pytest.mark.parametrize("role", OTHER_ROLES)
def test_other_roles_read_their_partnerships_only(role):
    who = of_sw(role)
    queries.authorize(who, Scope.PARTNERSHIP, "sw-mp")
    with pytest.raises(NotAllowed, match="nw-mp"):
        queries.authorize(who, Scope.PARTNERSHIP, "nw-mp")
    for scope in (Scope.STATE, Scope.REGION, Scope.SECTOR):
        with pytest.raises(NotAllowed, match="operator role"):
            queries.authorize(who, scope, "ct-southwest")


def test_a_scope_without_its_id_names_the_query_field():
    with pytest.raises(Invalid) as refused:
        queries.authorize(OPERATOR, Scope.REGION, None)
    assert refused.value.detail()[0]["loc"] == ["query", "scope_id"]


@pytest.mark.parametrize("role", OTHER_ROLES)
async def test_the_scope_is_decided_before_the_store_is_read(role, kpi, store):
    who = of_sw(role)
    with pytest.raises(NotAllowed):  # not Invalid: a foreign caller learns nothing about its input either
        await kpi.values(who, "not-a-period", Scope.PARTNERSHIP, "nw-mp")
    with pytest.raises(NotAllowed):
        await kpi.lineage(who, "hires", "PY2025", Scope.SECTOR, "manufacturing")
    with pytest.raises(NotAllowed):
        await kpi.overview(who, "PY2025")
    assert not store.reads


async def test_values_series_and_lineage_of_a_region_for_operators(kpi):
    region = await kpi.values(OPERATOR, "PY2025", Scope.REGION, "ct-southwest")
    assert region["partnerships"] == ["sw-health", "sw-mp"] and region["values"]["hires"] == 4
    series = await kpi.series(OPERATOR, "hires", "2025-08", "2025-10", Scope.STATE)
    assert [p["value"] for p in series["points"]] == [0, 5, 0]
    lineage = await kpi.lineage(OPERATOR, "hires", "PY2025", Scope.PARTNERSHIP, "sw-mp")
    assert lineage["events"] == lineage["value"] == 3 and lineage["complete"]
    with pytest.raises(NotFound):
        await kpi.values(OPERATOR, "PY2025", Scope.SECTOR, "aerospace")
    with pytest.raises(Invalid) as refused:
        await kpi.series(OPERATOR, "hires", "2025-10", "2025-08", Scope.STATE)
    assert refused.value.detail()[0]["loc"] == ["query", "last"]


@pytest.mark.parametrize("role", OTHER_ROLES)
async def test_a_partnership_key_sees_its_own_values_targets_and_comparison_row(role, kpi):
    who = of_sw(role)
    own = await kpi.values(who, "PY2025", Scope.PARTNERSHIP, "sw-mp")
    assert own["values"]["hires"] == 3 and own["targets"][0]["target"] == 6
    compare = await kpi.compare(who, "hires", "PY2025")
    assert [r["partnership_id"] for r in compare["partnerships"]] == ["sw-mp"]
    assert [r["partnership_id"] for r in (await kpi.compare(OPERATOR, "hires", "PY2025"))["partnerships"]] == \
        ["sw-mp", "nw-mp", "sw-health"]


# --- the pages ---------------------------------------------------------------------------------

async def test_the_overview_reads_the_store_once_whatever_the_number_of_partnerships(kpi, store):
    overview = await kpi.overview(OPERATOR, "PY2025")
    assert {r["partnership_id"]: r["hires"] for r in overview["rows"]} == {"sw-mp": 3, "nw-mp": 1, "sw-health": 1}
    assert overview["state"]["hires"] == 5 and overview["rows"][0]["name"] == "Partnership nw-mp"
    assert store.reads == {"stamps": 1, "rosters": 1, "directory": 1, "dated": 1}


@pytest.mark.parametrize("role", OTHER_ROLES)
async def test_partnership_and_kpi_pages_of_a_partnership_key(role, kpi, store):
    who = of_sw(role)
    page = await kpi.partnership_page(who, "sw-mp", "PY2025", "quarter")
    cards = {r["kpi"]: r for r in page["tables"]["kpis"].rows}
    assert cards["hires"]["value"] == 3 and cards["hires"]["percent"] == 50.0
    assert [label for label, _ in page["trend_tables"]["hires"]] == ["2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2"]
    assert page["trend_tables"]["hires"][0] == ("2025-Q3", 3) and page["trend_tables"]["hires"][3][1] is None
    assert store.reads == {"stamps": 1, "rosters": 1, "directory": 1, "dated": 1}
    with pytest.raises(NotAllowed, match="nw-mp"):
        await kpi.partnership_page(who, "nw-mp", "PY2025", "month")
    own = await kpi.kpi_page(who, "hires", "PY2025", None)  # its own partnership by default
    assert own["scope_id"] == "sw-mp" and own["lineage"]["events"] == 3
    assert [r["partnership_id"] for r in own["compare"].rows] == ["sw-mp"]
    with pytest.raises(NotAllowed):
        await kpi.kpi_page(who, "hires", "PY2025", "nw-mp")


async def test_pages_refuse_what_they_cannot_show(kpi):
    with pytest.raises(Invalid) as refused:
        await kpi.partnership_page(OPERATOR, "sw-mp", "2025-13x", "month")
    assert refused.value.field == "period"
    month = await kpi.partnership_page(OPERATOR, "sw-mp", "2025-09", "month")  # any period kind
    assert month["period"] == "2025-09" and len(month["trend_tables"]["hires"]) == 12
    with pytest.raises(NotFound):
        await kpi.kpi_page(OPERATOR, "no_such_kpi", "PY2025", None)
    with pytest.raises(NotAllowed, match="no partnership"):
        await kpi.kpi_page(Principal("lost", AccessRole.VIEWER), "hires", "PY2025", None)
    statewide = await kpi.kpi_page(OPERATOR, "hires", "PY2025", None)
    assert statewide["scope_id"] is None and statewide["lineage"]["events"] == 5


def test_where_a_key_lands_after_signing_in():
    assert queries.landing(OPERATOR) is None
    assert queries.landing(Principal("v", AccessRole.VIEWER, frozenset({"nw-mp", "b-mp"}))) == "b-mp"
    assert queries.landing(Principal("v", AccessRole.VIEWER)) is None


# --- sign-in throttling ------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failed_sign_ins_a_minute_per_client_then_wait():
    clock = Clock()
    throttle = LoginThrottle(failures=5, window=60, clock=clock)
    for _ in range(5):
        assert throttle.retry_after("10.0.0.1") is None
        throttle.failed("10.0.0.1")
        clock.now += 1
    assert throttle.retry_after("10.0.0.1") == 55 and throttle.retry_after("10.0.0.2") is None
    clock.now += 55
    assert throttle.retry_after("10.0.0.1") is None


def test_the_throttle_remembers_a_bounded_number_of_clients():
    throttle = LoginThrottle(failures=1, capacity=3, clock=Clock())
    for client in ("a", "b", "c", "d"):
        throttle.failed(client)
    assert list(throttle.recent) == ["b", "c", "d"] and throttle.retry_after("a") is None


# --- figures kept between reads (services/metrics/cache.py) -------------------------------------

def hire(pid: str, hire_id: str, start: date = date(2025, 9, 20)):
    return EXAMPLES[out.HireRecorded].model_copy(update={
        "partnership_id": pid, "hire_id": hire_id, "person_id": f"{hire_id}-p", "start_date": start})


async def hires(kpi: KpiService, scope: Scope, scope_id: str | None = None) -> float:
    return (await kpi.values(OPERATOR, "PY2025", scope, scope_id))["values"]["hires"]


async def test_a_figure_read_again_is_computed_once_and_again_after_its_facts_change(kpi, store):
    assert await hires(kpi, Scope.PARTNERSHIP, "sw-mp") == 3
    assert await hires(kpi, Scope.PARTNERSHIP, "sw-mp") == 3
    assert store.reads == {"stamps": 2, "rosters": 1, "directory": 1, "dated": 1}
    store.add(hire("sw-mp", "late"))
    assert await hires(kpi, Scope.PARTNERSHIP, "sw-mp") == 4
    assert store.reads["dated"] == 2


async def test_a_change_elsewhere_keeps_a_partnerships_figures_but_not_the_states(kpi, store, monkeypatch):
    parts = []  # the partnerships whose part of a state figure was worked out from their facts
    dated_part = queries.kpis.dated_part
    monkeypatch.setattr(queries.kpis, "dated_part", lambda p, *facts: parts.append(p) or dated_part(p, *facts))
    assert await hires(kpi, Scope.PARTNERSHIP, "sw-mp") == 3 and await hires(kpi, Scope.STATE) == 5
    assert store.asked == ["nw-mp", "sw-health"]  # sw-mp's dated facts were kept from its own read
    assert len(parts) == 2  # and its part was made with its own figures
    stamps = await store.stamps(1)
    store.add(hire("nw-mp", "other"))
    store.stamps = _renewed_only(store, stamps, "nw-mp")  # as the store renews them: the touched one only
    assert await hires(kpi, Scope.PARTNERSHIP, "sw-mp") == 3
    assert store.reads["dated"] == 2  # sw-mp's figure was kept
    assert await hires(kpi, Scope.STATE) == 6
    assert store.reads["dated"] == 3 and store.asked == ["nw-mp"]  # the state's figure read the changed one alone
    assert len(parts) == 3  # and worked out its part alone: the others' were kept


async def test_a_state_figure_of_partnerships_read_already_reads_no_facts_of_its_own(store):
    kpi = KpiService(store, today=lambda: TODAY, kept_months=0)  # no dated facts kept: only the parts
    assert [await hires(kpi, Scope.PARTNERSHIP, pid) for pid in sorted(PARTNERSHIPS)] == [1, 1, 3]
    reads = store.reads["dated"]
    assert await hires(kpi, Scope.STATE) == 5 and await hires(kpi, Scope.REGION, "ct-southwest") == 4
    assert store.reads["dated"] == reads  # composed of the parts their partnerships' reads made


async def test_dated_facts_kept_from_a_later_month_are_read_again_for_an_earlier_period(kpi, store):
    assert await hires(kpi, Scope.PARTNERSHIP, "sw-mp") == 3  # PY2025: from 2025-07 on
    assert (await kpi.values(OPERATOR, "2025-09", Scope.PARTNERSHIP, "sw-mp"))["values"]["hires"] == 3
    assert store.reads["dated"] == 1  # September was among the months kept
    assert (await kpi.values(OPERATOR, "PY2024", Scope.PARTNERSHIP, "sw-mp"))["values"]["hires"] == 0
    assert store.reads["dated"] == 2


async def test_a_batch_makes_a_read_take_the_months_it_changed_again_alone(kpi, store):
    assert await hires(kpi, Scope.PARTNERSHIP, "sw-mp") == 3  # PY2025: from 2025-07 on
    store.add(hire("sw-mp", "late", date(2026, 2, 3)))
    assert await hires(kpi, Scope.PARTNERSHIP, "sw-mp") == 4
    assert store.reads["dated"] == 2 and store.asked == ["sw-mp"] and store.asked_months == ["2026-02"]
    store.add(hire("sw-mp", "early", date(2025, 9, 2)))  # a month read before: kept, until now
    assert await hires(kpi, Scope.PARTNERSHIP, "sw-mp") == 5
    assert store.asked_months == ["2025-09"]
    assert (await kpi.values(OPERATOR, "2026-02", Scope.PARTNERSHIP, "sw-mp"))["values"]["hires"] == 1
    assert store.reads["dated"] == 3  # every month kept


async def test_kept_months_are_bounded_least_recently_used_partnership_first():
    kept = KeptMonths(capacity_months=3)
    stamps = {"2025-07": "s", "2025-08": "s", "2025-09": "s"}
    kept.put("a", "2025-07", stamps, [("2025-07", "A7"), ("2025-08", "A8"), ("2025-08", "A8 of another source")])
    kept.put("b", "2025-08", stamps, [("2025-08", "B8")])
    assert kept.get("a", "2025-08", stamps) == ([("2025-08", "A8"), ("2025-08", "A8 of another source")], [])
    kept.put("c", "2025-09", stamps, [("2025-09", "C9")])  # over capacity: b was used least recently
    assert kept.get("b", "2025-08", stamps) is None and kept.get("c", "2025-09", stamps) == ([("2025-09", "C9")], [])
    assert kept.get("a", "2025-07", stamps | {"2025-08": "t"}) == ([("2025-07", "A7")], ["2025-08"])  # changed since
    assert kept.get("a", "2025-07", stamps | {"2025-10": "t"}) == ([("2025-07", "A7"), ("2025-08", "A8"),
                                                                    ("2025-08", "A8 of another source")], ["2025-10"])
    assert kept.get("a", "2025-06", stamps) is None  # not read that far back
    kept.put("a", "2025-08", stamps | {"2025-08": "t"}, [("2025-08", "A8 again")])  # its earlier months stay
    assert kept.get("a", "2025-07", stamps | {"2025-08": "t"}) == ([("2025-07", "A7"), ("2025-08", "A8 again")], [])
    kept.put("a", "2025-08", stamps | {"2025-07": "u"}, [("2025-08", "A8")])  # unless they changed
    assert kept.get("a", "2025-07", stamps | {"2025-07": "u"}) is None
    kept.put("d", "2025-01", stamps, [(f"2025-0{m}", m) for m in range(1, 5)])  # more than it may hold: not kept
    assert kept.get("d", "2025-01", stamps) is None and kept.months == 2  # a's August, c's September


def _renewed_only(store: FakeStore, before: dict, pid: str, roster: bool = False):
    async def stamps(version: int) -> dict:
        store.reads["stamps"] += 1
        return before | {pid: store.stamp(pid, "renewed", "renewed" if roster else before[pid].roster)}
    return stamps


async def test_a_changed_roster_is_read_again_alone(kpi, store):
    assert (await kpi.values(OPERATOR, "PY2025", Scope.STATE))["values"]["new_members"] == 0
    stamps = await store.stamps(1)
    store.add(mem.MemberJoined(partnership_id="nw-mp", membership_id="m1", organisation_id="acme",
                               organisation_kind="employer", role="member", joined_on=date(2025, 8, 1)))
    store.stamps = _renewed_only(store, stamps, "nw-mp", roster=True)
    assert (await kpi.values(OPERATOR, "PY2025", Scope.STATE))["values"]["new_members"] == 1
    assert store.reads["rosters"] == 2 and store.known == ["sw-health", "sw-mp"]


async def test_a_batch_stored_while_a_figure_is_computed_is_counted_at_the_next_read(kpi, store):
    """The stamps are read before the facts: a figure computed from newer facts than its stamps
    is kept under the older stamps, so the next read (newer stamps) computes it again."""
    read_dated = store.dated

    async def a_batch_lands_meanwhile(*args):
        store.dated = read_dated
        store.add(hire("sw-mp", "meanwhile"))
        return await read_dated(*args)

    store.dated = a_batch_lands_meanwhile
    assert await hires(kpi, Scope.PARTNERSHIP, "sw-mp") in (3, 4)
    assert await hires(kpi, Scope.PARTNERSHIP, "sw-mp") == 4


async def test_kept_figures_are_bounded_least_recently_used_first():
    kept = Computed(capacity=2)
    kept.put("a", 1, "A")
    kept.put("b", 1, "B")
    assert kept.get("a", 1) == "A"
    kept.put("c", 1, "C")
    assert kept.get("b", 1) is None and kept.get("a", 1) == "A" and kept.get("c", 1) == "C"
    assert kept.get("a", 2) is None  # another signature: computed from other facts


async def test_lineage_is_kept_once_whatever_the_limit_asked(kpi, store):
    """A caller varying `limit` gets its own slice of one kept answer, not an entry per limit."""
    whole = await kpi.lineage(OPERATOR, "hires", "PY2025", Scope.STATE)
    reads = store.reads["dated"]
    assert reads == 1  # neither the value nor the lineage was kept: one read serves both
    first = await kpi.lineage(OPERATOR, "hires", "PY2025", Scope.STATE, limit=1)
    assert first["event_ids"] == whole["event_ids"][:1] and first["events"] == whole["events"] == 5
    assert not first["complete"] and whole["complete"]
    assert store.reads["dated"] == reads  # nothing computed again


async def test_a_scopes_lineage_is_its_partnerships_and_a_batch_of_one_traces_that_one_again(kpi, store, monkeypatch):
    traced = []  # the scopes traced from their facts
    lineage = queries.kpis.lineage
    monkeypatch.setattr(queries.kpis, "lineage", lambda *args: traced.append(args) or lineage(*args))
    state = await kpi.lineage(OPERATOR, "hires", "PY2025", Scope.STATE)
    each = [await kpi.lineage(OPERATOR, "hires", "PY2025", Scope.PARTNERSHIP, pid) for pid in sorted(PARTNERSHIPS)]
    assert len(traced) == 3  # one per partnership, each kept for the partnership's own read
    assert state["events"] == sum(e["events"] for e in each) == 5 and state["complete"]
    assert state["event_ids"] == [i for e in each for i in e["event_ids"]]
    py = parse_period("PY2025")  # as one trace over every partnership's facts merged
    everything = lineage(kpis.BY_NAME["hires"], py, [(m, f) for _, m, f in await store.dated(1, None, py.months[0])],
                         [f for (_, _, b), f in store.cells.items() if b == ROSTER], 100)
    assert everything[0] == state["events"] and sorted(everything[1]) == sorted(state["event_ids"])
    stamps = await store.stamps(1)
    store.add(hire("nw-mp", "other"))
    store.stamps = _renewed_only(store, stamps, "nw-mp")
    assert (await kpi.lineage(OPERATOR, "hires", "PY2025", Scope.STATE))["events"] == 6
    assert len(traced) == 4 and traced[-1][2] == [(m, f) for (s, p, m), f in store.cells.items()
                                                   if s in DATED_SOURCES and p == "nw-mp"]  # nw-mp's alone


@pytest.mark.parametrize("read", ["values", "lineage"])
async def test_the_event_loop_goes_on_while_figures_are_computed(kpi, monkeypatch, read):
    """A program year of a large partnership takes seconds to compute: meanwhile the service must
    answer health checks and /metrics. The computation waits here for a task on the event loop,
    which could never run if the computation held the loop."""
    loop_ran = threading.Event()
    waited: list[bool] = []
    name = "evaluate" if read == "values" else "lineage"
    original = getattr(queries.kpis, name)

    def computed_while_the_loop_runs(*args, **kwargs):
        waited.append(loop_ran.wait(timeout=5))
        return original(*args, **kwargs)

    monkeypatch.setattr(queries.kpis, name, computed_while_the_loop_runs)

    async def meanwhile() -> None:
        await asyncio.sleep(0)
        loop_ran.set()

    if read == "values":
        answer, _ = await asyncio.gather(kpi.values(OPERATOR, "PY2025", Scope.STATE), meanwhile())
        assert answer["values"]["hires"] == 5
    else:
        answer, _ = await asyncio.gather(kpi.lineage(OPERATOR, "hires", "PY2025", Scope.STATE), meanwhile())
        assert answer["events"] == 5
    assert waited and all(waited)


async def test_a_burst_of_first_reads_reads_the_rosters_and_works_out_the_standing_once(kpi, store, monkeypatch):
    """Reads of one scope arriving together (a dashboard's figures after a restart) share the
    rosters read and what is worked out of them in worker threads. The first working-out waits
    here for a second one to start, which it would if nothing held it back."""
    second_started = threading.Event()
    calls: list[int] = []
    original = queries.kpis.standing

    def standing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            second_started.wait(timeout=1)
        else:
            second_started.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(queries.kpis, "standing", standing)
    year, quarter = await asyncio.gather(kpi.values(OPERATOR, "PY2025", Scope.STATE),
                                         kpi.values(OPERATOR, "2025-Q3", Scope.STATE))
    assert year["values"]["hires"] == quarter["values"]["hires"] == 5
    assert len(calls) == 1 and store.reads["rosters"] == 1


async def test_the_event_loop_reads_names_while_a_thread_works_out_a_standing(kpi, monkeypatch):
    """Page code on the event loop (names, scopes) must not wait for a worker thread working out
    something else of the same snapshot: the standing here waits for the loop to read a name."""
    snap = await kpi.snapshot()
    started, named = threading.Event(), threading.Event()
    waited: list[bool] = []
    original = queries.kpis.standing

    def standing(*args, **kwargs):
        started.set()
        waited.append(named.wait(timeout=5))
        return original(*args, **kwargs)

    monkeypatch.setattr(queries.kpis, "standing", standing)

    async def meanwhile() -> str | None:
        while not started.is_set():
            await asyncio.sleep(0.01)
        name = snap.name_of("sw-mp")
        named.set()
        return name

    answer, name = await asyncio.gather(kpi.values(OPERATOR, "PY2025", Scope.STATE), meanwhile())
    assert answer["values"]["hires"] == 5 and name == "Partnership sw-mp"
    assert waited == [True]
