"""What every read costs as history piles up: a statewide data set (25 partnerships in 4 regions and
3 sectors, five program years, events of every type) at a small and a large size, each rolled up
by its own metrics service process, then every read a person or a dashboard makes, timed.

    .venv/bin/python bench/reads.py [--small 20000] [--large 2000000] [--repeat 30]

Reads: the /ui overview, a partnership page, a KPI page and the print infographic; /kpis/values and
/kpis/lineage for partnership, region, sector and state scopes at month, quarter and program-year
grain; /kpis/series over the last program year by month for each scope; /kpis/compare at each
grain. The periods read are the latest program year's (PY2025), so the earlier years are history.
Each read is made once more than `--repeat` times, one after another, with nothing else running.
The first computes what the service does not keep yet (services/metrics/cache.py: figures are
kept until a stored batch changes their facts) and is printed on its own ("first"); p50 and p95
are of the other `--repeat`, with the large/small ratio of p95 (the goal: at most 1.5x, and every
page's p95 under 300 ms). Starts its own local stack.
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

import httpx
from harness import AUTH, OPERATOR_KEY, Service, until_stored  # noqa: E402  (bench/harness.py)
from rollup import produce_chunks, scenario  # noqa: E402  (bench/rollup.py)

from cli.stack import LocalStack  # noqa: E402
from shared.kafka import ensure_topics  # noqa: E402
from shared.settings import KafkaSettings  # noqa: E402

PARTNERSHIPS, YEARS, LAST_YEAR = 25, 5, 2025
GRAINS = {"month": "2025-09", "quarter": "2025-Q3", "program year": f"PY{LAST_YEAR}"}
SCOPES = {"partnership": "rsp-03", "region": "region-1", "sector": "sector-2", "state": None}


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


async def load(n: int, endpoints, workdir: Path) -> Service:
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
    return service


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
    results = {}
    try:
        for size in (args.small, args.large):
            service = await load(size, endpoints, workdir)
            try:
                results[size] = await measure(service, args.repeat)
            finally:
                service.stop()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    main()
