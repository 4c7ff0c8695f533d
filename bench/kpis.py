"""KPI evaluation cost: what every KPI page, API call and milestone check pays, in one process.

Folds the rollup.py scenario (a program year of a dozen partnerships) into facts, then times,
for the statewide program year and one partnership's quarter:
  view      merging the stored facts of the scope and period (kpis.build_view)
  evaluate  every KPI of the catalogue from that view
against the baseline of folding the same distinct events from scratch (what a system without
stored facts would do per question), in the same run. Then the statewide program year as the
read use cases compute it (the scope's rosters worked out already, as they keep them): merged
(kpis.view_of, as before 2026-12-04), and composed of each partnership's part (kpis.Part) with
every part worked out (a first read) or with one part worked out and the others kept (a read
after a batch of one partnership).

    .venv/bin/python bench/kpis.py [--events 100000] [--partnerships 12] [--repeat 5]
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
    parser.add_argument("--partnerships", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    distinct = [e.model_dump() for e in {e.id: e for e in scenario(args.events, args.partnerships)}.values()]
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
    composed(cells, baseline, args.repeat)


def composed(cells: domain.Cells, baseline: float, repeat: int) -> None:
    """The statewide program year composed of the partnerships' parts, as the read use cases do."""
    p = parse_period("PY2025")
    rosters = {k[1]: f for k, f in cells.items() if k[2] == domain.ROSTER}
    directory = [f for k, f in cells.items() if k[0] == "membership" and not k[1]]
    pids = sorted(rosters)
    dated = {pid: [(k[2], f) for k, f in cells.items()
                   if k[0] in domain.DATED_SOURCES and k[1] == pid and k[2] >= p.months[0]] for pid in pids}
    held = {pid: kpis.held_by_day(rosters[pid]) for pid in pids}
    scope = kpis.standing([domain.without_activities(f) for f in rosters.values()], directory, held.values())
    kept = {pid: kpis.dated_part(p, dated[pid], held[pid]) for pid in pids}

    def state(worked_out: list[str]) -> None:
        parts = [kpis.dated_part(p, dated[pid], held[pid]) if pid in worked_out else kept[pid] for pid in pids]
        kpis.evaluate(kpis.composed(p, parts, scope))

    merged = timed(lambda: kpis.evaluate(kpis.view_of(p, [m for pid in pids for m in dated[pid]], scope)), repeat)
    print(f"\n{'statewide PY2025, rosters kept':<32}{'ms':>10}{'vs merged':>11}{'vs fold':>10}")
    print(f"{'merged':<32}{merged * 1000:>10,.1f}{1:>10.3f}x{merged / baseline:>9.3f}x")
    for label, worked_out in [("composed, every part worked out", pids), ("composed, one part, others kept", pids[:1])]:
        cost = timed(lambda worked_out=worked_out: state(worked_out), repeat)
        print(f"{label:<32}{cost * 1000:>10,.1f}{cost / merged:>10.3f}x{cost / baseline:>9.3f}x")


if __name__ == "__main__":
    main()
