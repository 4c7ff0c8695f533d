"""Command-line side of the membership service, over its HTTP API (so it works against any
deployment): roster import/export with a progress bar, and loading the sample state."""

import csv
import io
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import httpx

SAMPLE = Path(__file__).with_name("sample_data.json")
ROWS_PER_REQUEST = 200


class Progress:
    """A one-line progress bar on stderr; silent when stderr is not a terminal."""

    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total, self.done = label, max(total, 1), 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.live:
            filled = int(30 * self.done / self.total)
            self.stream.write(f"\r{self.label:<14} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}")
            self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")


class ClientError(Exception):
    """The membership API refused a request, or the client lacks what it needs; the CLI exits 1."""


def _check(response: httpx.Response, allow: tuple[int, ...] = ()) -> httpx.Response:
    if response.status_code >= 400 and response.status_code not in allow:
        raise ClientError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:500]}"
        )
    return response


def _chunks(path: Path) -> Iterator[tuple[str, list[str]]]:
    """The header and the file's rows ROWS_PER_REQUEST at a time, read as they are sent."""
    with path.open(encoding="utf-8-sig") as lines:
        header = next(lines, "")
        chunk = list(itertools.islice(lines, ROWS_PER_REQUEST))
        yield header, chunk
        while chunk := list(itertools.islice(lines, ROWS_PER_REQUEST)):
            yield header, chunk


def import_roster(client: httpx.Client, partnership_id: str, path: Path) -> dict:
    """Send the file in chunks (each with the header), keeping the file's own line numbers. Each
    chunk is stored, with its events in the outbox, before its answer; a refused chunk stops here."""
    with path.open(encoding="utf-8-sig") as counted:
        rows = max(sum(1 for _ in counted) - 1, 0)
    total: dict = {"errors": []}
    progress = Progress("importing", rows)
    for number, (header, chunk) in enumerate(_chunks(path)):
        first_line = 1 + number * ROWS_PER_REQUEST  # the header stands just before the chunk's rows
        report = _check(client.post(f"/partnerships/{partnership_id}/roster", params={"first_line": first_line},
                                    content="".join([header, *chunk]).encode(),
                                    headers={"content-type": "text/csv"})).json()
        for key, value in report.items():
            total[key] = total.get(key, 0) + value if key != "errors" else total["errors"] + value
        progress.advance(len(chunk))
    progress.close()
    return total


def export_roster(client: httpx.Client, partnership_id: str, out: TextIO) -> int:
    """Write the roster CSV to `out` as it arrives; the number of characters written."""
    written = 0
    with client.stream("GET", f"/partnerships/{partnership_id}/roster.csv") as response:
        if response.status_code >= 400:
            response.read()
            _check(response)
        for text in response.iter_text():
            written += out.write(text)
    return written


def _roster(sample: dict, partnership_id: str, organisations: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["organisation_id", "name", "kind", "role", "joined_on", "left_on"])
    for m in sample["memberships"]:
        if m["partnership_id"] == partnership_id:
            org = organisations[m["organisation_id"]]
            writer.writerow([org["id"], org["name"], org["kind"], m["role"], m["joined"], m["left"] or ""])
    return out.getvalue()


def load_sample(client: httpx.Client, path: Path = SAMPLE) -> dict[str, int]:
    """Load the sample state through the API. Safe to repeat: what exists is left as it is."""
    sample = json.loads(path.read_text())
    organisations = {o["id"]: o for o in sample["organisations"]}
    steps = sum(
        len(sample[k]) for k in ("regions", "sectors", "organisations", "partnerships", "action_teams", "contacts")
    )
    progress = Progress("sample data", steps + sum(len(p.get("targets", [])) for p in sample["partnerships"]))
    created = dict.fromkeys(("regions", "sectors", "organisations", "partnerships", "action_teams", "contacts"), 0)

    def post(kind: str, path: str, body: dict) -> None:
        created[kind] += _check(client.post(path, json=body), allow=(409,)).status_code == 201
        progress.advance()

    for region in sample["regions"]:
        post("regions", "/regions", region)
    for sector in sample["sectors"]:
        post("sectors", "/sectors", sector)
    for org in sample["organisations"]:
        post("organisations", "/organisations", {k: v for k, v in org.items() if v is not None})
    for partnership in sample["partnerships"]:
        post("partnerships", "/partnerships", {k: v for k, v in partnership.items() if k != "targets"})
        for target in partnership.get("targets", []):
            _check(client.put(f"/partnerships/{partnership['id']}/targets", json=target))
            progress.advance()
        _check(
            client.post(
                f"/partnerships/{partnership['id']}/roster",
                content=_roster(sample, partnership["id"], organisations),
                headers={"content-type": "text/csv"},
            )
        )
    for team in sample["action_teams"]:
        body = {k: v for k, v in team.items() if k != "partnership_id"}
        post("action_teams", f"/partnerships/{team['partnership_id']}/action-teams", body)
    for contact in sample["contacts"]:
        body = {k: v for k, v in contact.items() if k != "organisation_id"}
        post("contacts", f"/organisations/{contact['organisation_id']}/contacts", body)
    progress.close()
    created["memberships"] = sum(
        _check(client.get(f"/partnerships/{p['id']}/members", params={"limit": 1})).json()["total"]
        for p in sample["partnerships"])
    return created
