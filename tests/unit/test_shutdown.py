"""shared/shutdown.py: the steps of a graceful stop share one deadline; a step past it is
cancelled and logged, and the steps after it still run. No servers: the steps are coroutines."""

import asyncio
import logging

from shared.shutdown import FLOOR, Shutdown


async def test_steps_within_the_grace_finish_and_nothing_is_logged(caplog):
    shutdown = Shutdown(grace=5)
    done = []

    async def flush():
        await asyncio.sleep(0)
        done.append("flushed")

    with caplog.at_level(logging.WARNING, logger="shared.shutdown"):
        await shutdown.step("producer", flush())
    assert done == ["flushed"] and caplog.records == []


async def test_a_step_past_the_deadline_is_cancelled_logged_and_the_next_still_runs(caplog):
    shutdown = Shutdown(grace=0.05)
    events = []

    async def leave_group_mid_rebalance():  # the broker answers only once the rebalance is over
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("left behind")
            raise

    async def close_client():
        events.append("closed")

    with caplog.at_level(logging.WARNING, logger="shared.shutdown"):
        async with asyncio.timeout(30):  # only a guard against a hang
            await shutdown.step("consumer groups", leave_group_mid_rebalance())
            await shutdown.step("database client", close_client())
    assert events == ["left behind", "closed"]
    assert [r.step for r in caplog.records] == ["consumer groups"]


async def test_past_the_deadline_every_step_still_gets_the_floor():
    shutdown = Shutdown(grace=0)
    assert shutdown.left() == FLOOR
