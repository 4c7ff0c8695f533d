"""KPI evaluation cost: what every KPI page, API call and milestone check pays, in one process.

Folds the rollup.py scenario (a program year of a dozen partnerships) into facts, then times,
for the statewide program year and one partnership's quarter:
  view      merging the stored facts of the scope and period (kpis.build_view)
  evaluate  every KPI of the catalogue from that view
against the baseline of folding the same distinct events from scratch (what a system without
stored facts would do per question), in the same run.

    .venv/bin/python bench/kpis.py [--events 100000] [--repeat 5]
"""

import argparse
import gc
import time

from rollup import scenario  # noqa: E402  (bench/rollup.py)

from services.metrics import domain, kpis  # noqa: E402
from shared.periods import parse_period  # noqa: E402


def timed(work, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        work()
    return (time.perf_counter() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    distinct = [e.model_dump() for e in {e.id: e for e in scenario(args.events, 12)}.values()]
    cells = domain.Cells()
    for e in distinct:
        domain.record(e, cells)
    gc.freeze()  # the scenario's objects stay for the whole run

    def fold() -> None:
        fresh = domain.Cells()
        for e in distinct:
            domain.record(e, fresh)

    baseline = timed(fold, 1)
    print(f"{len(distinct):,} distinct events; folding them from scratch: {baseline * 1000:,.0f} ms\n")
    print(f"{'scope and period':<32}{'hires':>8}{'view ms':>10}{'evaluate ms':>13}{'vs fold':>10}")
    for label, pids, period in [
        ("statewide PY2025", None, "PY2025"),
        ("one partnership 2025-Q4", {"rsp-00"}, "2025-Q4"),
    ]:
        p = parse_period(period)
        dated = [(k[2], f) for k, f in cells.items()
                 if k[0] in domain.DATED_SOURCES and (pids is None or k[1] in pids) and k[2] >= p.months[0]]
        rosters = [f for k, f in cells.items() if k[2] == domain.ROSTER and (pids is None or k[1] in pids)]
        directory = [f for k, f in cells.items() if k[0] == "membership" and not k[1]]
        views = [kpis.build_view(p, dated, rosters, directory) for _ in range(args.repeat)]
        view = timed(lambda p=p, dated=dated, rosters=rosters, directory=directory:
                     kpis.build_view(p, dated, rosters, directory), args.repeat)
        fresh = iter(views)  # each evaluation on a view of its own: nothing cached between them
        evaluate = timed(lambda fresh=fresh: kpis.evaluate(next(fresh)), args.repeat)
        hires = int(views[0].flow.counts["hires"])
        print(f"{label:<32}{hires:>8,}{view * 1000:>10,.1f}{evaluate * 1000:>13,.1f}"
              f"{(view + evaluate) / baseline:>9.3f}x")


if __name__ == "__main__":
    main()
