"""One way to run a background loop: a `Worker` runs an async step again and again.

Each step returns how long to wait before the next one (None: the worker's interval; 0: at once,
there is more to do). `wake()` cuts a wait short (new work arrived). A step that raises is logged,
counted in `backbone_retries_total{component=<name>}` and tried again after a backoff that doubles
up to `max_backoff`, so a database or broker away never ends the loop nor spins it. `stop(grace)`
lets the step in progress finish within `grace` seconds, then cancels it. `healthy()` is what
/readyz asks: the loop is running and its last step did not fail.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shared.observability import RETRIES, count_retries_of

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[float | None]]


class Worker:
    def __init__(self, name: str, step: Step, *, interval: float, backoff: float = 1.0,
                 max_backoff: float = 5.0, cause: str = "error", first_wait: float = 0.0):
        self.name = name
        self.step = step
        self.interval = interval
        self.backoff, self.max_backoff = backoff, max_backoff
        self.cause = cause  # the retry counter's cause label for a failed step
        self.first_wait = first_wait
        self.failures = 0  # consecutive failed steps
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        count_retries_of(name, cause)

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        self._wake.set()

    def healthy(self) -> bool:
        return self._task is not None and not self._task.done() and self.failures == 0

    async def stop(self, grace: float = 5.0) -> None:
        """Let the step in progress finish within `grace` seconds, then cancel it."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            log.warning("worker did not finish its step in time; cancelled", extra={"worker": self.name})
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        await self._pause(self.first_wait)
        while not self._stopping:
            self._wake.clear()
            try:
                wait = await self.step()
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # broker or database away, or a bug: the next step tries again
                self.failures += 1
                RETRIES.labels(self.name, self.cause).inc()
                log.warning("worker step failed; trying again", exc_info=True,
                            extra={"worker": self.name, "failures": self.failures})
                wait = self.pause_after_failure()
            await self._pause(self.interval if wait is None else wait)

    def pause_after_failure(self) -> float:
        """Doubling from `backoff` with each consecutive failure, never above `max_backoff`."""
        return min(self.backoff * 2 ** min(self.failures - 1, 20), self.max_backoff)

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0 or self._stopping:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
