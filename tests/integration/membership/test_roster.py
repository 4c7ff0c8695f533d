"""Roster CSV import and export through the API and the CLI, and the sample state."""

import io
from collections import Counter

import httpx
import pytest

from cli import main as cli
from cli.membership_client import export_roster, import_roster
from services.membership.store import ROSTER_SLICE
from tests.integration.membership.conftest import OPERATOR_KEY

pytestmark = pytest.mark.integration

ROSTER = """organisation_id,name,kind,size_band,naics,county,state,champion,role,joined_on,left_on
microboard,Microboard,employer,50-249,334418,New Haven,CT,yes,champion,2021-06-01,
sikorsky,Sikorsky,employer,1000+,336411,Fairfield,CT,,member,2021-06-01,2023-12-31
bad id,Nobody,employer,,,,,,member,2021-06-01,
qvcc,QVCC,school,,,,,,member,2021-06-01,
gcc,Gateway Community College,education,,,New Haven,CT,,support_partner,2022-13-01,
pta,PTA Plastics,employer,50-249,326199,Fairfield,CT,,member,2023-01-01,2022-01-01
microboard,Microboard,employer,50-249,334418,New Haven,CT,yes,member,2021-06-01,
kubtec,KUB Technologies,employer,50-249,334517,Fairfield,CT,,member,2024-02-01,
"""


@pytest.fixture
async def partnership(operator):
    for path, body in (("/regions", {"id": "ct-sc", "name": "South Central", "state": "CT"}),
                       ("/sectors", {"id": "mfg", "name": "Manufacturing"}),
                       ("/partnerships", {"id": "scmip", "name": "SCMIP", "region_id": "ct-sc", "sector_id": "mfg"})):
        assert (await operator.post(path, json=body)).status_code == 201
    return "scmip"


async def test_roster_import_reports_bad_rows_imports_good_ones_and_is_idempotent(operator, partnership, published):
    report = (await operator.post(f"/partnerships/{partnership}/roster", content=ROSTER,
                                  headers={"content-type": "text/csv"})).json()
    assert [(e["line"], e["reason"].split(":")[0]) for e in report["errors"]] == [
        (4, "column organisation_id"), (5, "column kind"), (6, "column joined_on"), (7, "column left_on"),
        (8, "duplicate of line 2")]
    reasons = {e["line"]: e["reason"] for e in report["errors"]}
    assert reasons[6] == "column joined_on: found '2022-13-01', expected a date written YYYY-MM-DD, e.g. 2024-07-01"
    assert reasons[5].startswith("column kind: found 'school', expected one of employer, ")
    assert reasons[4].startswith("column organisation_id: found 'bad id', expected an id of letters and digits")
    assert not any(c in r for r in reasons.values() for c in ("^", "$", "[", "invalid character"))
    assert (report["rows"], report["imported"], report["organisations_registered"], report["members_joined"],
            report["members_left"]) == (8, 3, 3, 3, 1)

    again = (await operator.post(f"/partnerships/{partnership}/roster", content=ROSTER,
                                 headers={"content-type": "text/csv"})).json()
    assert (again["unchanged"], again["members_joined"], again["organisations_registered"]) == (3, 0, 0)

    events = await published(3 + 3 + 3 + 1)
    types = Counter(e.type.split(".")[2] + "." + e.type.split(".")[3] for e in events)
    assert (types["organisation.registered"], types["member.joined"], types["member.left"]) == (3, 3, 1)

    exported = (await operator.get(f"/partnerships/{partnership}/roster.csv")).text
    lines = exported.splitlines()
    assert lines[0].startswith("organisation_id,name,kind") and len(lines) == 4
    assert "sikorsky,Sikorsky,employer,1000+,336411,Fairfield,CT,false,member,2021-06-01,2023-12-31" in lines
    missing_column = await operator.post(f"/partnerships/{partnership}/roster", content="name,kind\nX,employer\n",
                                         headers={"content-type": "text/csv"})
    assert missing_column.json()["errors"] == [{"line": 1, "reason": "missing column(s): organisation_id, joined_on"}]


async def test_cli_imports_in_chunks_with_file_line_numbers_and_exports(
    membership, partnership, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("cli.membership_client.ROWS_PER_REQUEST", 3)
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER)
    args = ["--url", membership.url, "--key", OPERATOR_KEY, "-p", partnership]
    assert cli.main(["roster", "import", str(path), *args]) == 2  # some rows were refused
    out, err = capsys.readouterr()
    assert "line 4: column organisation_id" in err and "line 8: duplicate of line 2" not in err  # other chunk
    assert "line 7: column left_on" in err and "imported: 4" in out  # row 8 re-states line 2's member in its own chunk
    assert cli.main(["roster", "export", *args]) == 0
    assert capsys.readouterr().out.count("\n") == 4  # header + the 3 memberships stored


async def test_a_roster_larger_than_one_slice_streams_out_whole_and_back_in_unchanged(
    membership, partnership, tmp_path
):
    rows = ROSTER_SLICE * 2 + 7  # three slices of the export, several requests of the import
    path = tmp_path / "big.csv"
    path.write_text(ROSTER.splitlines()[0] + "\n" + "".join(
        f"org-{i:04d},Maker {i},employer,,,,CT,,member,2024-01-{1 + i % 28:02d},\n" for i in range(rows)))
    with httpx.Client(base_url=membership.url, headers={"authorization": f"Bearer {OPERATOR_KEY}"},
                      timeout=60) as http:
        report = import_roster(http, partnership, path)
        assert (report["members_joined"], report["errors"]) == (rows, [])
        out = io.StringIO()
        export_roster(http, partnership, out)
        lines = out.getvalue().splitlines()
        assert lines[0].startswith("organisation_id,") and len(lines) == rows + 1
        assert [line.split(",")[0] for line in lines[1:]] == [f"org-{i:04d}" for i in range(rows)]
        (tmp_path / "exported.csv").write_text(out.getvalue())
        again = import_roster(http, partnership, tmp_path / "exported.csv")
        assert (again["unchanged"], again["members_joined"], again["errors"]) == (rows, 0, [])


async def test_sample_state_loads_once_and_again_without_changes(membership, operator):
    args = ["--url", membership.url, "--key", OPERATOR_KEY]
    assert cli.main(["sample", "load", *args]) == 0
    sw = (await operator.get("/partnerships/sw-mp/members", params={"limit": 1})).json()["total"]
    assert (await operator.get("/partnerships")).json()["total"] == 8
    assert sw >= 20 and (await operator.get("/partnerships/sw-mp/action-teams")).json()["total"] >= 2
    assert cli.main(["sample", "load", *args]) == 0
    assert (await operator.get("/partnerships/sw-mp/members", params={"limit": 1})).json()["total"] == sw


async def test_a_roster_upload_may_be_larger_than_other_bodies_up_to_5_mib(operator, partnership):
    header = "organisation_id,name,kind,joined_on\n"
    row = "bad id,Nobody,employer,2021-06-01\n"
    two_mib = header + row * (2 * 1024 * 1024 // len(row))  # above the 1 MiB of every other body
    report = await operator.post(
        f"/partnerships/{partnership}/roster", content=two_mib, headers={"content-type": "text/csv"}
    )
    assert report.status_code == 200 and report.json()["imported"] == 0
    too_large = header + row * (6 * 1024 * 1024 // len(row))
    assert (await operator.post(f"/partnerships/{partnership}/roster", content=too_large,
                                headers={"content-type": "text/csv"})).status_code == 413
