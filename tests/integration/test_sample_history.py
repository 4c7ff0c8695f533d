"""The sample state and its history through the real APIs (membership, events, metrics as
processes on the local stack): the first dashboard shows KPIs in both program years."""

import asyncio
from datetime import date

import httpx
import pytest

from cli.membership_client import load_sample
from cli.sample_history import first_month, load_history
from shared.periods import program_year

pytestmark = pytest.mark.integration

OPERATOR = "sample-history-operator-key"


async def test_the_sample_history_gives_kpis_in_two_program_years(start_service):
    env = {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR, "MEMBERSHIP_OUTBOX_POLL_SECONDS": "0.2"}
    membership, events, metrics = (start_service(name, env) for name in ("membership", "events", "metrics"))
    today = date.today()
    with httpx.Client(base_url=membership.url, headers={"authorization": f"Bearer {OPERATOR}"}, timeout=60) as http:
        load_sample(http)
        sent = await asyncio.to_thread(load_history, http, events.url, today)
    assert sent > 0
    years = (program_year(first_month(today)), program_year(today))
    async with httpx.AsyncClient(base_url=metrics.url, headers={"authorization": f"Bearer {OPERATOR}"},
                                 timeout=30) as kpis:
        async with asyncio.timeout(90):
            while True:
                values = [(await kpis.get("/kpis/values", params={"period": py, "scope_id": "sw-mp"})).json()
                          for py in years]
                if all((v.get("values") or {}).get("hires") for v in values):
                    break
                await asyncio.sleep(1)
    assert all(v["values"]["hires"] > 0 for v in values)
