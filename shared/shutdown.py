"""A graceful stop with a deadline: once uvicorn has drained the requests in flight, SIGTERM gives
the service's stop `shutdown_grace_seconds` in all.

Each step of the stop (a worker finishing its step, the consumer groups left, the producer
flushed, the database client closed) gets what is left of the grace, and at least `FLOOR`, so a
step that overruns is left behind, logged, and the later steps still run. One that does: stopping
an aiokafka consumer in the middle of a rebalance waits for its JoinGroup request, which the broker
answers only once the rebalance completes (up to the rebalance timeout, minutes); the group then
drops the member as it drops a killed one. Leaving a step loses nothing: consumers commit or store
their offsets only after their effects are stored, and an entry point acknowledges an event only
once Kafka has it.
"""

import asyncio
import logging
from collections.abc import Awaitable

log = logging.getLogger(__name__)

FLOOR = 0.5  # seconds every step gets, even past the deadline: a flush or a close is quick


class Shutdown:
    def __init__(self, grace: float):
        self.deadline = asyncio.get_running_loop().time() + grace

    def left(self) -> float:
        return max(self.deadline - asyncio.get_running_loop().time(), FLOOR)

    async def step(self, name: str, stopping: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(stopping, self.left())
        except TimeoutError:
            log.warning("shutdown step did not finish within the grace; left behind", extra={"step": name})
