"""Pure rules of the membership service: roster rows, key issuing, membership identity."""

from datetime import date

import pytest

from services.membership import domain as d
from shared.contracts.base import AccessRole
from shared.errors import Invalid, NotAllowed

HEADER = "organisation_id,name,kind,role,joined_on,left_on\n"


def test_roster_rows_are_parsed_with_their_file_line_numbers():
    rows, errors = d.parse_roster(HEADER + 'acme,"Acme, Inc.",employer,champion,2024-01-01,\n'
                                  "college,College,education,,2024-02-01,2024-06-30\n", first_line=201)
    assert errors == []
    assert [(r.line, r.organisation.name, r.role.value, r.left_on) for r in rows] == [
        (202, "Acme, Inc.", "champion", None), (203, "College", "member", date(2024, 6, 30))]


@pytest.mark.parametrize("line, reason", [
    ("acme,Acme,employer,member,2024-01-01,2023-01-01",
     "column left_on: found 2023-01-01, expected a date on or after joined_on (2024-01-01)"),
    ("acme,Acme,factory,member,2024-01-01,", "column kind: found 'factory', expected one of employer, "),
    ("acme,Acme,employer,boss,2024-01-01,", "column role: found 'boss', expected one of "),
    ("acme,,employer,member,2024-01-01,", "column name: found nothing, expected a name of 1 to 200 characters"),
    ("a b,Acme,employer,member,2024-01-01,", "column organisation_id: found 'a b', expected an id of letters"),
    ("acme,Acme,employer,member,,", "column joined_on: found nothing, expected a date written YYYY-MM-DD"),
    ("acme,Acme,employer,member,1/7/2024,", "column joined_on: found '1/7/2024', expected a date written YYYY-MM-DD"),
    ("acme,Acme,employer,member,2024-01-01,,extra", "more fields than columns"),
    ("acme,Acme,employer,member,2024-01-01,,extra", "more fields than columns"),
])
def test_a_bad_row_is_reported_with_its_reason(line, reason):
    rows, errors = d.parse_roster(HEADER + line + "\n")
    assert rows == [] and errors[0].line == 2 and errors[0].reason.startswith(reason)


def test_header_problems_and_duplicates():
    assert d.parse_roster("name\nx\n")[1][0].reason == "missing column(s): organisation_id, kind, joined_on"
    assert d.parse_roster(HEADER.strip() + ",colour\n")[1][0].reason == "unknown column(s): colour"
    rows, errors = d.parse_roster(HEADER + "a,A,employer,member,2024-01-01,\na,A,employer,member,2024-01-01,\n")
    assert len(rows) == 1 and errors[0].model_dump() == {"line": 3, "reason": "duplicate of line 2"}


def test_export_reads_back_as_the_same_rows():
    text = d.roster_csv([{"organisation_id": "acme", "name": "Acme, Inc.", "kind": "employer", "champion": True,
                          "role": "champion", "joined_on": "2024-01-01", "left_on": None}])
    [row], errors = d.parse_roster(text)
    assert errors == [] and (row.organisation.name, row.organisation.champion, row.role.value) == (
        "Acme, Inc.",
        True,
        "champion",
    )


def test_a_stint_is_one_membership_and_rejoining_is_another():
    assert d.membership_id("sw-mp", "acme", date(2024, 1, 1)) == d.membership_id("sw-mp", "acme", date(2024, 1, 1))
    assert d.membership_id("sw-mp", "acme", date(2024, 1, 1)) != d.membership_id("sw-mp", "acme", date(2025, 1, 1))


OPERATOR, ADMIN, SYSTEM, VIEWER = (AccessRole.OPERATOR, AccessRole.PARTNERSHIP_ADMIN, AccessRole.PARTNER_SYSTEM,
                                   AccessRole.VIEWER)


@pytest.mark.parametrize("issuer, mine, role, partnerships, sources, refused", [
    (OPERATOR, set(), OPERATOR, [], [], None),
    (OPERATOR, set(), ADMIN, ["a"], [], None),
    (OPERATOR, set(), SYSTEM, [], [], (Invalid, "a partnership key needs")),
    (OPERATOR, set(), OPERATOR, ["a"], [], (Invalid, "an operator key covers")),
    (OPERATOR, set(), VIEWER, ["a"], ["ats"], (Invalid, "a viewer key sends no events")),
    (OPERATOR, set(), SYSTEM, ["a"], ["/keys/abc"], (Invalid, "'/keys/abc' is reserved")),
    (ADMIN, {"a"}, SYSTEM, ["a"], ["ats"], None),
    (ADMIN, {"a"}, VIEWER, ["a"], [], None),
    (ADMIN, {"a"}, SYSTEM, ["a", "b"], [], (NotAllowed, "this key has no access to partnership 'b'")),
    (ADMIN, {"a"}, ADMIN, ["a"], [], (NotAllowed, "role 'partnership_admin' may not")),
    (SYSTEM, {"a"}, SYSTEM, ["a"], [], (NotAllowed, "role 'partner_system' may not")),
    (VIEWER, {"a"}, VIEWER, ["a"], [], (NotAllowed, "role 'viewer' may not")),
])
def test_who_may_issue_which_key(issuer, mine, role, partnerships, sources, refused):
    if refused is None:
        d.check_key_request(issuer, frozenset(mine), role, partnerships, sources)
        return
    with pytest.raises(refused[0]) as raised:
        d.check_key_request(issuer, frozenset(mine), role, partnerships, sources)
    assert str(raised.value).startswith(refused[1]) or raised.value.reason.startswith(refused[1])


def test_a_formula_cell_is_neutralised_in_the_export_and_read_back_as_it_was():
    text = d.roster_csv([{"organisation_id": "acme", "name": '=HYPERLINK("http://x.example","Acme")',
                          "kind": "employer", "county": "-Fairfield", "role": "member", "joined_on": "2024-01-01"}])
    assert "'=HYPERLINK" in text and ",'-Fairfield," in text
    [row], errors = d.parse_roster(text)
    assert errors == [] and (row.organisation.name, row.organisation.county) == (
        '=HYPERLINK("http://x.example","Acme")', "-Fairfield")


def test_only_operators_change_a_shared_organisation():
    mine = [{"partnership_id": "a", "left_on": None}]
    d.check_organisation_change(ADMIN, {"a"}, "acme", mine)
    d.check_organisation_change(OPERATOR, set(), "acme", [*mine, {"partnership_id": "b", "left_on": None}])
    for stints, reason in (([*mine, {"partnership_id": "b", "left_on": "2020-01-01"}], "is shared"),
                           ([{"partnership_id": "a", "left_on": "2020-01-01"}], "is no active member"),
                           ([], "is no active member")):
        with pytest.raises(NotAllowed, match=reason):
            d.check_organisation_change(ADMIN, {"a"}, "acme", stints)
