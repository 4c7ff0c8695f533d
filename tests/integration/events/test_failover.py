"""Two events replicas on the real stack sharing a partnership: one is SIGKILLed while it holds
the partnership's decision turn, and the other then serves the partnership (its lease runs out,
nobody releases it). Timings are measured in bench/failover.py; here only that it happens."""

import asyncio
import os
import signal
from datetime import UTC, datetime

import httpx
import pytest

from shared.mongo import make_client
from tests.examples import P, hire_batch
from tests.integration.events.conftest import OPERATOR_KEY

pytestmark = pytest.mark.integration

BATCH = {"content-type": "application/cloudevents-batch+json", "authorization": f"Bearer {OPERATOR_KEY}"}


async def load(url: str, name: str) -> None:
    """Batches for partnership P, one after another, until cancelled or the replica dies."""
    async with httpx.AsyncClient(base_url=url, headers=BATCH, timeout=30) as http:
        for n in range(10**6):
            try:
                await http.post("/events", content=hire_batch(f"{name}-{n}", 200, "/ats"))
            except httpx.HTTPError:
                return


async def test_a_killed_replicas_partnership_is_served_by_the_other(events_service, roster, start_service,
                                                                    mongo_settings):
    doomed = events_service
    survivor = start_service("events", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY})
    client = make_client(mongo_settings)
    turns = client[mongo_settings.database_prefix + "events"]["decision_turns"]
    loaders = [asyncio.create_task(load(doomed.url, f"load{i}")) for i in range(3)]
    try:
        # Freeze the doomed replica, and kill it only if it froze holding the turn.
        async with asyncio.timeout(60):
            while True:
                os.kill(doomed.process.pid, signal.SIGSTOP)
                held = await turns.find_one({"_id": P, "until": {"$gt": datetime.now(UTC)}})
                if held:
                    break
                os.kill(doomed.process.pid, signal.SIGCONT)
                await asyncio.sleep(0.05)
        os.kill(doomed.process.pid, signal.SIGKILL)
        assert doomed.process.wait(timeout=10) == -signal.SIGKILL

        async with httpx.AsyncClient(base_url=survivor.url, headers=BATCH, timeout=60) as http:
            response = await http.post("/events", content=hire_batch("after", 5, "/ats"))
        assert response.status_code == 200, response.text
        assert {r["status"] for r in response.json()["results"]} == {"accepted"}
        assert (await turns.find_one({"_id": P}))["holder"] != held["holder"]
    finally:
        for task in loaders:
            task.cancel()
        await asyncio.gather(*loaders, return_exceptions=True)
        await client.close()
