"""A service's start-up, watched: one that takes long says, every so often, where it waits (the
chain of calls its start-up is suspended in), so a start that hangs names the call it hangs in
before anyone gives up on it, and the log says so even if the process is then killed."""

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

WATCH_SECONDS = 10.0  # a start-up still going after this long is logged, and again every as long


def awaiting(task: asyncio.Task) -> list[str]:
    """Where a suspended task waits: its chain of coroutines, outermost first ("file:line function")."""
    chain: list[str] = []
    awaitable: Any = task.get_coro()
    while awaitable is not None:
        frame = next((f for name in ("cr_frame", "ag_frame", "gi_frame") if (f := getattr(awaitable, name, None))),
                     None)
        if frame is None:  # a future or a task: what it waits for is outside Python
            break
        chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaitable = next((a for name in ("cr_await", "ag_await", "gi_yieldfrom")
                          if (a := getattr(awaitable, name, None)) is not None), None)
    return chain


async def watched(start: Coroutine[Any, Any, None], every: float = WATCH_SECONDS) -> None:
    """Run a start-up, logging where it waits each time it has run another `every` seconds."""
    task, began = asyncio.ensure_future(start), time.monotonic()
    try:
        while not (await asyncio.wait({task}, timeout=every))[0]:
            log.warning("start-up still waiting", extra={"seconds": round(time.monotonic() - began, 1),
                                                          "awaiting": awaiting(task)[-6:]})
        task.result()
    finally:  # the lifespan cancelled (a signal during start-up): the start-up with it
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
