"""Roster files at real sizes: seconds to import 5,000 rows with `backbone roster import` (the CLI's
client over HTTP) and to export them again, against the raw floor measured in the same run: the
same 5,000 memberships and organisations written straight into MongoDB with insert_many.

    .venv/bin/python bench/roster.py [--rows 5000]

Starts its own local stack and one membership service process of this tree.
"""

import argparse
import asyncio
import io
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import AUTH, Service  # noqa: E402  (bench/harness.py)

from cli.membership_client import export_roster, import_roster  # noqa: E402
from cli.stack import LocalStack  # noqa: E402

HEADER = "organisation_id,name,kind,size_band,naics,county,state,champion,role,joined_on,left_on\n"


def roster_file(path: Path, rows: int) -> Path:
    lines = [f"bench-org-{i:05d},Bench Manufacturer {i},employer,50-249,332710,Hartford,CT,{i % 7 == 0},member,"
             f"2024-{1 + i % 12:02d}-{1 + i % 28:02d},{'2025-06-30' if i % 10 == 0 else ''}\n" for i in range(rows)]
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


async def raw_floor(mongo_uri: str, rows: int) -> float:
    """The same documents inserted directly, no checks, events or transaction: the floor."""
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri)
    db = client[f"bench_raw_{uuid.uuid4().hex[:8]}"]
    started = time.perf_counter()
    await db.organisations.insert_many([{"_id": f"o{i}", "name": f"Bench {i}", "kind": "employer"}
                                        for i in range(rows)])
    await db.memberships.insert_many([{"_id": f"m{i}", "organisation_id": f"o{i}", "partnership_id": "p"}
                                      for i in range(rows)])
    seconds = time.perf_counter() - started
    await client.drop_database(db.name)
    await client.close()
    return seconds


def setup(http: httpx.Client, partnership_id: str) -> None:
    for path, body in (("/regions", {"id": "bench-region", "name": "Bench Region", "state": "CT"}),
                       ("/sectors", {"id": "bench-sector", "name": "Bench Sector"}),
                       ("/partnerships", {"id": partnership_id, "name": "Bench Partnership",
                                          "region_id": "bench-region", "sector_id": "bench-sector"})):
        http.post(path, json=body).raise_for_status()


def timed(what, *args) -> tuple[float, object]:
    started = time.perf_counter()
    result = what(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-roster-") as tmp:
        workdir = Path(tmp)
        stack = LocalStack(workdir / "stack")
        endpoints = stack.up().endpoints
        service = None
        try:
            floor = asyncio.run(raw_floor(endpoints.mongo_uri, args.rows))
            service = Service("membership", endpoints, f"bench.{uuid.uuid4().hex[:8]}", workdir / "membership.log")
            with httpx.Client(base_url=service.url, headers=AUTH, timeout=120) as http:
                setup(http, "bench-mp")
                path = roster_file(workdir / "roster.csv", args.rows)
                imported, report = timed(import_roster, http, "bench-mp", path)
                again, second = timed(import_roster, http, "bench-mp", path)
                out = io.StringIO()
                exported, _ = timed(export_roster, http, "bench-mp", out)
                text = out.getvalue()
        finally:
            if service:
                service.stop()
            stack.down()
    assert isinstance(report, dict) and isinstance(second, dict) and isinstance(text, str)
    print(f"roster of {args.rows} rows on the local stack (membership service of this tree)")
    print(f"  raw insert_many floor      {floor:7.2f} s")
    print(f"  import (cli, streamed)     {imported:7.2f} s   {imported / floor:5.1f}x floor   "
          f"joined {report.get('members_joined')}, errors {len(report['errors'])}")
    print(f"  import again (unchanged)   {again:7.2f} s   unchanged {second.get('unchanged')}")
    print(f"  export (cli, streamed)     {exported:7.2f} s   {exported / floor:5.1f}x floor   "
          f"{text.count(chr(10)) - 1} rows")


if __name__ == "__main__":
    main()
