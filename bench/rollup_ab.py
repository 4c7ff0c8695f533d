"""The metrics rollup of this tree against the rollup of an earlier commit, in one process, on the
same events: each round one ceiling pass (raw + validating + recording, as bench/rollup.py), then
both rollups in alternating order, each into a KPI store of its own. Prints each round and the
medians of new/old and of each against the ceiling.

    .venv/bin/python bench/rollup_ab.py --against dcc952d [--rounds 6] [--events 100000]

The earlier rollup.py is loaded from git beside this tree's (with this tree's store, domain and
dedupe modules), so it must speak the same store API; one without `take` is run batch by batch
with `process`, as it was then (bench/rollup.py's measure_rollup).
"""

import argparse
import asyncio
import gc
import importlib.util
import statistics
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType

import prometheus_client
from rollup import connect, measure_ceiling, measure_rollup, produce, scenario  # noqa: E402  (bench/rollup.py)

from cli.stack import LocalStack  # noqa: E402
from services.metrics import rollup as this_rollup  # noqa: E402
from services.metrics.store import MetricsStore  # noqa: E402


def rollup_of(revision: str, workdir: Path) -> ModuleType:
    """services/metrics/rollup.py as it was at `revision`, as a module of its own."""
    source = subprocess.run(["git", "show", f"{revision}:services/metrics/rollup.py"], check=True,
                            capture_output=True, text=True).stdout
    path = workdir / "rollup_then.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("rollup_then", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    register = prometheus_client.REGISTRY.register
    prometheus_client.REGISTRY.register = lambda collector: None  # its metrics' names are this tree's
    try:
        spec.loader.exec_module(module)
    finally:
        prometheus_client.REGISTRY.register = register
    return module


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="the commit whose rollup is the baseline")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        then = rollup_of(args.against, Path(tmp))
        stack = LocalStack(Path(tmp) / "stack")
        endpoints = stack.up().endpoints
        try:
            namespace, kafka, client = await connect(endpoints)
            events = scenario(args.events, 12)
            gc.freeze()
            await produce(kafka, events)
            total, rounds = len(events), []
            for i in range(args.rounds):
                ceiling = await measure_ceiling(kafka, total, 20_000, f"ceiling-{i}")
                rates = {}
                for name, module in (("old", then), ("new", this_rollup))[::1 if i % 2 == 0 else -1]:
                    database = namespace.replace(".", "_") + f"{name}{i}"
                    rates[name], _ = await measure_rollup(kafka, MetricsStore(client[database]), total, 20_000,
                                                          f"{name}-{i}", module)
                    await client.drop_database(database)
                rounds.append((ceiling, rates["old"], rates["new"]))
                old, new = rates["old"], rates["new"]
                print(f"round {i + 1}: ceiling {ceiling:,.0f}  {args.against} {old:,.0f} ({old / ceiling:.2f}x)  "
                      f"this tree {new:,.0f} ({new / ceiling:.2f}x)  new/old {new / old:.2f}", flush=True)
            await client.close()
        finally:
            stack.down()
    print(f"\nmedians: new/old {statistics.median(n / o for _, o, n in rounds):.2f}x, "
          f"{args.against} {statistics.median(o / c for c, o, _ in rounds):.2f}x of the ceiling, "
          f"this tree {statistics.median(n / c for c, _, n in rounds):.2f}x of the ceiling")


if __name__ == "__main__":
    asyncio.run(main())
