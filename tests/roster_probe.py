"""Waiting until the events service knows a roster that was just published on the bus."""

import asyncio
import itertools

import httpx

from shared.contracts import outcomes as out


async def until_roster_known(http: httpx.AsyncClient, probe: out.HireRecorded, timeout: float = 60) -> None:
    """Posts copies of `probe` until one is accepted: then the events service knows its partnership
    and employer. A new hire id each try: a held one (202 "pending") would only be decided again on
    the events service's backoff."""
    body = probe.model_dump(mode="json")
    async with asyncio.timeout(timeout):
        for n in itertools.count():
            answer = await http.post("/outcomes/hires", json=body | {"hire_id": f"{probe.hire_id}-{n}"})
            if answer.json().get("status") == "accepted":
                return
            await asyncio.sleep(0.2)
