"""shared/startup.py: a start-up that takes long says where it waits, and its outcome is the
start-up's own. No servers: the start-ups are plain coroutines."""

import asyncio
import logging

import pytest

from shared.startup import watched


class Waits(logging.Handler):
    """The watch's warnings; the start-up it watches goes on once it has said `enough` of them."""

    def __init__(self, enough: int, gate: asyncio.Event):
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.enough, self.gate = enough, gate

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if len(self.records) == self.enough:
            self.gate.set()


@pytest.fixture
def broker_up() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
def waits(broker_up):
    handler = Waits(2, broker_up)
    logger = logging.getLogger("shared.startup")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def test_a_slow_start_up_says_where_it_waits_until_it_is_done(broker_up, waits):
    async def wait_for_the_broker():
        await broker_up.wait()

    async def start():
        await wait_for_the_broker()

    await asyncio.wait_for(watched(start(), every=0.01), 5)
    assert [r.getMessage() for r in waits.records] == ["start-up still waiting"] * 2
    chain = waits.records[-1].awaiting
    assert [line.rsplit(" ", 1)[1] for line in chain] == ["start", "wait_for_the_broker", "wait"]
    assert chain[0].startswith(__file__)
    assert waits.records[1].seconds >= waits.records[0].seconds >= 0


async def test_a_quick_start_up_says_nothing_and_a_failed_one_fails(waits):
    async def quick():
        pass

    async def fails():
        raise ConnectionError("broker away")

    await watched(quick(), every=0.01)
    with pytest.raises(ConnectionError):
        await watched(fails(), every=0.01)
    assert waits.records == []


async def test_a_cancelled_start_up_is_cancelled_with_its_lifespan(broker_up):
    async def start():
        await broker_up.wait()

    starting = start()
    lifespan = asyncio.create_task(watched(starting, every=10))
    await asyncio.sleep(0.01)
    lifespan.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lifespan
    assert starting.cr_frame is None  # closed: cancelled, not left waiting
