"""Membership's entry points keep the bounds of shared.contracts.bounds: a target's value is
finite and in range, dates within the window, on the API and in a roster CSV."""

import pytest

from tests.integration.membership.test_api import MICROBOARD, REGION, SECTOR, SW, field_of

pytestmark = pytest.mark.integration

TARGETS = "/partnerships/sw-mp/targets"
JSON = {"content-type": "application/json"}


@pytest.fixture
async def partnership(operator):
    for path, body in (
        ("/regions", REGION),
        ("/sectors", SECTOR),
        ("/partnerships", SW),
        ("/organisations", MICROBOARD),
    ):
        assert (await operator.post(path, json=body)).status_code == 201


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e999", "1e30"])
async def test_a_target_value_is_finite_and_in_range(operator, partnership, value):
    refused = await operator.put(TARGETS, content=f'{{"kpi": "hires", "period": "PY2025", "value": {value}}}',
                                 headers=JSON)
    assert refused.status_code == 422 and field_of(refused) == ["value"]
    assert (await operator.get(TARGETS)).json()["total"] == 0  # nothing stored, not even as null


async def test_membership_dates_within_the_window(operator, partnership):
    early = await operator.post("/partnerships/sw-mp/members", json={"organisation_id": "microboard",
                                                                     "joined_on": "0001-01-01"})
    assert early.status_code == 422 and field_of(early) == ["joined_on"]
    launch = await operator.patch("/partnerships/sw-mp", json={"launch_date": "9999-12-31"})
    assert launch.status_code == 422 and field_of(launch) == ["launch_date"]
    roster = ("organisation_id,name,kind,role,joined_on\n"
              "microboard,Microboard,employer,member,0001-01-01\n"
              "kubtec,KUB Technologies,employer,member,2024-02-01\n")
    report = (await operator.post("/partnerships/sw-mp/roster", content=roster,
                                  headers={"content-type": "text/csv"})).json()
    assert [(e["line"], e["reason"].split(":")[0]) for e in report["errors"]] == [(2, "column joined_on")]
    assert report["imported"] == 1
