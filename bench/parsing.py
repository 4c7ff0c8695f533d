"""Per-record CPU of the metrics rollup's fold, in one process, against reading the JSON alone.

Over the records of the rollup.py scenario (a program year of a dozen partnerships), as bytes:
  orjson.loads  reading each record's JSON and nothing else (the baseline)
  parse_event   validating into the catalogue's models (what the entry points do)
  parse_plain   the same checks into plain data (what the metrics rollup does)
  record        folding the validated events into facts (services/metrics/domain.record)
Each figure is the best of --repeat passes, in µs per record and as a multiple of the baseline.

    .venv/bin/python bench/parsing.py [--events 20000] [--repeat 5]
"""

import argparse
import gc
import time

import orjson
from rollup import scenario  # bench/rollup.py

from services.metrics import domain
from shared.envelope import parse_event, parse_plain


def best_of(work, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    records = [e.to_json() for e in scenario(args.events, 12)]
    plain = [parse_plain(r) for r in records]
    gc.freeze()  # the scenario's objects stay for the whole run

    def fold() -> None:
        cells = domain.Cells()
        for event in plain:
            domain.record(event, cells)

    steps = {
        "orjson.loads": lambda: [orjson.loads(r) for r in records],
        "parse_event": lambda: [parse_event(r) for r in records],
        "parse_plain": lambda: [parse_plain(r) for r in records],
        "record": fold,
    }
    seconds = {name: best_of(work, args.repeat) for name, work in steps.items()}
    print(f"{len(records):,} records, best of {args.repeat} passes\n")
    print(f"{'step':<16}{'µs/record':>10}{'vs orjson':>11}")
    for name, s in seconds.items():
        print(f"{name:<16}{s / len(records) * 1e6:>10.2f}{s / seconds['orjson.loads']:>10.1f}x")


if __name__ == "__main__":
    main()
