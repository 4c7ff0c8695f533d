"""The one mapping from domain and validation errors to HTTP, shared by every service."""

import httpx
import pytest
from fastapi import FastAPI

from shared.contracts.outcomes import HireRecorded
from shared.errors import Invalid, NotAllowed, install_error_handlers
from tests.examples import EXAMPLES

app = FastAPI()
install_error_handlers(app)


@app.post("/hires")
async def record(hire: HireRecorded) -> dict:
    if hire.employer_id == "foreign":
        raise NotAllowed("this key has no access to partnership 'nw-mp'")
    raise Invalid("data.employer_id", "not a member")


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize("wage", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_non_finite_numbers_are_refused_naming_the_field(wage):
    hire = EXAMPLES[HireRecorded].model_dump_json().replace('"hourly_wage":24.5', f'"hourly_wage":{wage}')
    async with client() as http:
        answer = await http.post("/hires", content=hire, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", "hourly_wage"]]


async def test_a_refused_input_is_echoed_as_a_short_excerpt_only():
    async with client() as http:
        answer = await http.post("/hires", json={"partnership_id": "x" * 100_000})
    assert answer.status_code == 422 and len(answer.text) < 5_000
    assert "100000 characters" in answer.text


async def test_domain_errors_map_to_their_status():
    hire = EXAMPLES[HireRecorded].model_dump(mode="json")
    async with client() as http:
        refused = await http.post("/hires", json=hire | {"employer_id": "foreign"})
        invalid = await http.post("/hires", json=hire)
    assert refused.status_code == 403 and "nw-mp" in refused.json()["detail"]
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "data", "employer_id"]
