"""What every read costs as history piles up: a statewide data set (25 partnerships in 4 regions and
3 sectors, five program years, events of every type) at a small and a large size, each rolled up
by its own metrics service process, then every read a person or a dashboard makes, timed.

    .venv/bin/python bench/reads.py [--small 20000] [--large 2000000] [--repeat 30] [--after-batch 5]

Reads: the /ui overview, a partnership page, a KPI page and the print infographic; /kpis/values and
/kpis/lineage for partnership, region, sector and state scopes at month, quarter and program-year
grain; /kpis/series over the last program year by month for each scope; /kpis/compare at each
grain. The periods read are the latest program year's (PY2025), so the earlier years are history.
Each read is made once more than `--repeat` times, one after another, with nothing else running.
The first computes what the service does not keep yet (services/metrics/cache.py: figures are
kept until a stored batch changes their facts) and is printed on its own ("first"); p50 and p95
are of the other `--repeat`, with the large/small ratio of p95 (the goal: at most 1.5x, and every
page's p95 under 300 ms). Then, as a live stream has it, the pages and some state figures are
read again just after a batch of one hire of one partnership was stored (`--after-batch` times
each): what that partnership's batch makes the service compute again. Prints the metrics
service's peak memory at each size. Starts its own local stack.
"""

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import date
from functools import partial
from pathlib import Path
from typing import NamedTuple

import httpx
from harness import AUTH, OPERATOR_KEY, Service, until_stored  # noqa: E402  (bench/harness.py)
from rollup import produce, produce_chunks, scenario  # noqa: E402  (bench/rollup.py)

from cli.stack import LocalStack  # noqa: E402
from shared.contracts import outcomes as out  # noqa: E402
from shared.envelope import new_event  # noqa: E402
from shared.kafka import ensure_topics  # noqa: E402
from shared.settings import KafkaSettings  # noqa: E402

PARTNERSHIPS, YEARS, LAST_YEAR = 25, 5, 2025
GRAINS = {"month": "2025-09", "quarter": "2025-Q3", "program year": f"PY{LAST_YEAR}"}
SCOPES = {"partnership": "rsp-03", "region": "region-1", "sector": "sector-2", "state": None}
# read again just after a batch of one partnership: the pages, and figures of scopes holding it
AFTER_A_BATCH = ("page: overview", "page: partnership", "page: KPI", "page: print", "values state program year",
                 "lineage state program year", "series state by month")


def reads() -> list[tuple[str, str, dict]]:
    """(name, path, query) of every read measured."""
    found = [("page: overview", "/ui/", {"period": f"PY{LAST_YEAR}"}),
             ("page: partnership", "/ui/partnerships/rsp-03", {"period": f"PY{LAST_YEAR}"}),
             ("page: KPI", "/ui/kpis/hires", {"period": f"PY{LAST_YEAR}"}),
             ("page: print", "/ui/partnerships/rsp-03/print", {"period": f"PY{LAST_YEAR}"})]
    for scope, scope_id in SCOPES.items():
        where = {"scope": scope} | ({"scope_id": scope_id} if scope_id else {})
        for grain, period in GRAINS.items():
            found.append((f"values {scope} {grain}", "/kpis/values", where | {"period": period}))
            found.append((f"lineage {scope} {grain}", "/kpis/lineage", where | {"period": period, "kpi": "hires"}))
        found.append((f"series {scope} by month", "/kpis/series",
                      where | {"kpi": "hires", "first": f"{LAST_YEAR}-07", "last": f"{LAST_YEAR + 1}-06"}))
    for grain, period in GRAINS.items():
        found.append((f"compare {grain}", "/kpis/compare", {"kpi": "hires", "period": period}))
    return found


class Loaded(NamedTuple):
    service: Service
    kafka: KafkaSettings
    events: int  # produced so far


async def load(n: int, endpoints, workdir: Path) -> Loaded:
    """n events over five program years on fresh topics, rolled up by a metrics service of their own."""
    namespace = f"reads{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(bootstrap_servers=endpoints.bootstrap_servers, enable_idempotence=False, namespace=namespace)
    await ensure_topics(kafka)
    total = await produce_chunks(kafka, (partial(scenario, n // YEARS, PARTNERSHIPS, seed=year,
                                                 year_start=date(year, 7, 1))
                                         for year in range(LAST_YEAR - YEARS + 1, LAST_YEAR + 1)))
    started = time.perf_counter()
    service = Service("metrics", endpoints, namespace, workdir / f"metrics-{n}.log")
    await until_stored(service, total)
    print(f"  {total:>9,} events rolled up in {time.perf_counter() - started:.0f} s", flush=True)
    await service.until_idle(5.0)  # the milestone checks (every 2 s) of what was loaded are done: nothing else runs
    return Loaded(service, kafka, total)


async def after_a_batch(loaded: Loaded, repeat: int) -> dict[str, list[float]]:
    """Seconds of each read of AFTER_A_BATCH made just after a batch of one hire of one partnership
    is stored (a live stream's case: figures of that partnership and of every scope holding it
    are computed again), `repeat` times each."""
    timings: dict[str, list[float]] = {}
    async with httpx.AsyncClient(base_url=loaded.service.url, timeout=600) as http:
        await http.post("/ui/login", data={"api_key": OPERATOR_KEY, "next": "/ui/"},
                        headers={"origin": loaded.service.url})
        events = loaded.events
        for name, path, query in [r for r in reads() if r[0] in AFTER_A_BATCH]:
            for attempt in range(repeat):
                events += 1
                hire = out.HireRecorded(partnership_id=SCOPES["partnership"], hire_id=f"late-{events}",
                                        person_id=f"late-{events}", employer_id="org-3-1", soc_code="51-4041",
                                        start_date=date(LAST_YEAR, 9, 1 + attempt % 28), hourly_wage=20.0,
                                        resident=True, career_changer=False)
                await produce(loaded.kafka, [new_event(hire, source="/bench/late")])
                await until_stored(loaded.service, events, report=False)
                started = time.perf_counter()
                answer = await http.get(path, params=query, headers={} if path.startswith("/ui/") else AUTH)
                timings.setdefault(name, []).append(time.perf_counter() - started)
                assert answer.status_code == 200, (name, answer.status_code, answer.text[:300])
    return timings


async def measure(service: Service, repeat: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Seconds of each read: the first, and `repeat` more, as one signed-in person (pages) and the
    operator's key (API)."""
    first: dict[str, float] = {}
    timings: dict[str, list[float]] = {}
    async with httpx.AsyncClient(base_url=service.url, timeout=600) as http:
        signed_in = await http.post("/ui/login", data={"api_key": OPERATOR_KEY, "next": "/ui/"},
                                    headers={"origin": service.url})  # as the browser sends it
        assert signed_in.status_code == 303, signed_in.text
        for name, path, query in reads():
            headers = {} if path.startswith("/ui/") else AUTH
            for attempt in range(repeat + 1):
                started = time.perf_counter()
                answer = await http.get(path, params=query, headers=headers)
                elapsed = time.perf_counter() - started
                assert answer.status_code == 200, (name, answer.status_code, answer.text[:300])
                if attempt:
                    timings.setdefault(name, []).append(elapsed)
                else:
                    first[name] = elapsed
    return first, timings


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 10 else f"{seconds:.0f}s"


def p95(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=20, method="inclusive")[-1] if len(seconds) > 1 else seconds[0]


async def bench(args, workdir: Path) -> None:
    stack = LocalStack(workdir / "stack")
    endpoints = stack.up().endpoints
    results, later, memory = {}, {}, {}
    try:
        for size in (args.small, args.large):
            loaded = await load(size, endpoints, workdir)
            try:
                results[size] = await measure(loaded.service, args.repeat)
                later[size] = await after_a_batch(loaded, args.after_batch)
                memory[size] = loaded.service.peak_memory_mib()
            finally:
                loaded.service.stop()
    finally:
        stack.down()
    (first_small, small), (first_large, large) = results[args.small], results[args.large]
    print(f"\n{'read':<32} {'first':>8} {'p50':>6} {'p95':>6}   {'first':>8} {'p50':>6} {'p95':>6} {'p95 ratio':>10}")
    print(f"{'':<32} {f'at {args.small:,} events':>22}   {f'at {args.large:,} events':>22}")
    worst_ratio, slow_pages = 0.0, []
    for name, _, _ in reads():
        ratio = p95(large[name]) / p95(small[name])
        worst_ratio = max(worst_ratio, ratio)
        if name.startswith("page") and p95(large[name]) >= 0.3:
            slow_pages.append(name)
        print(f"{name:<32} {_ms(first_small[name]):>8} {_ms(statistics.median(small[name])):>6} "
              f"{_ms(p95(small[name])):>6}   {_ms(first_large[name]):>8} {_ms(statistics.median(large[name])):>6} "
              f"{_ms(p95(large[name])):>6} {ratio:>9.2f}x")
    print(f"\nworst p95 ratio {worst_ratio:.2f}x (goal <= 1.5x): {'met' if worst_ratio <= 1.5 else 'NOT met'}; "
          f"pages with p95 >= 300 ms at {args.large:,}: {', '.join(slow_pages) or 'none'}")
    print(f"\nread just after a batch of one hire of {SCOPES['partnership']} ({args.after_batch} times each)")
    print(f"{'read':<32} {'p50':>8} {'max':>8}   {'p50':>8} {'max':>8} {'p50 ratio':>10}")
    print(f"{'':<32} {f'at {args.small:,} events':>17}   {f'at {args.large:,} events':>17}")
    for name in later[args.small]:
        before, after = later[args.small][name], later[args.large][name]
        print(f"{name:<32} {_ms(statistics.median(before)):>8} {_ms(max(before)):>8}   "
              f"{_ms(statistics.median(after)):>8} {_ms(max(after)):>8} "
              f"{statistics.median(after) / statistics.median(before):>9.2f}x")
    print(f"\nthe metrics service's peak memory: {memory[args.small]:.0f} MiB at {args.small:,} events, "
          f"{memory[args.large]:.0f} MiB at {args.large:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--after-batch", type=int, default=5, help="reads of each kind just after a batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    main()
