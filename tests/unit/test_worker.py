"""shared/worker.py: a step run again and again, woken early, failures counted and backed off,
a clean stop. No servers: the steps are plain coroutines."""

import asyncio

from shared.observability import RETRIES
from shared.worker import Worker


def retries(name: str, cause: str = "error") -> float:
    return RETRIES.labels(name, cause)._value.get()


async def until(condition, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.001)


async def test_steps_repeat_at_once_while_there_is_more():
    calls = []

    async def step():
        calls.append(1)
        return 0 if len(calls) < 5 else None

    worker = Worker("test_more", step, interval=3600)
    worker.start()
    await until(lambda: len(calls) == 5)
    assert worker.healthy()
    await worker.stop()
    assert len(calls) == 5  # the sixth waits for the hour-long interval
    assert not worker.healthy()


async def test_wake_cuts_the_wait_short():
    calls = []

    async def step():
        calls.append(1)

    worker = Worker("test_wake", step, interval=3600)
    worker.start()
    await until(lambda: len(calls) == 1)
    worker.wake()
    await until(lambda: len(calls) == 2)
    await worker.stop()


async def test_a_failing_step_is_counted_and_tried_again_with_backoff_then_recovers():
    outcomes = [RuntimeError("database away"), RuntimeError("still away"), None]
    before = retries("test_failing")

    async def step():
        outcome = outcomes.pop(0) if outcomes else None
        if outcome:
            raise outcome
        return None

    worker = Worker("test_failing", step, interval=3600, backoff=0.001, max_backoff=0.002)
    worker.start()
    await until(lambda: not outcomes)
    assert retries("test_failing") == before + 2
    await until(worker.healthy)  # the third step succeeded
    await worker.stop()


async def test_unhealthy_after_a_failed_step():
    async def step():
        raise ValueError("a bug")

    worker = Worker("test_unhealthy", step, interval=0, backoff=3600)
    worker.start()
    await until(lambda: worker.failures == 1)
    assert not worker.healthy()
    await worker.stop()


async def test_backoff_doubles_up_to_the_most():
    pauses = []
    worker = Worker("test_backoff", lambda: None, interval=1, backoff=1, max_backoff=5)
    for failures in range(1, 6):
        worker.failures = failures
        pauses.append(worker.pause_after_failure())
    assert pauses == [1, 2, 4, 5, 5]


async def test_stop_lets_the_step_in_progress_finish_within_the_grace():
    finished = asyncio.Event()
    started = asyncio.Event()

    async def step():
        started.set()
        await asyncio.sleep(0.01)
        finished.set()

    worker = Worker("test_grace", step, interval=3600)
    worker.start()
    await started.wait()
    await worker.stop(grace=5)
    assert finished.is_set()


async def test_stop_cancels_a_step_that_outlasts_the_grace():
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def step():
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker = Worker("test_cancel", step, interval=3600)
    worker.start()
    await started.wait()
    await worker.stop(grace=0.01)
    assert cancelled.is_set()


async def test_stop_before_start_does_nothing():
    async def step():
        return None

    await Worker("test_idle", step, interval=1).stop()
