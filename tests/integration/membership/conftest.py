"""The membership service as a real process on the real local stack, and a plain Kafka reader
of what it published."""

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from shared.catalog import ACCESS, MEMBERSHIP
from shared.envelope import CloudEvent, parse_event

OPERATOR_KEY = "membership-tests-operator-key"


@pytest.fixture
def membership(start_service):
    return start_service("membership", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY,
                                        "MEMBERSHIP_OUTBOX_POLL_SECONDS": "0.2"})


def client(service, key: str = OPERATOR_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture
async def operator(membership) -> AsyncIterator[httpx.AsyncClient]:
    async with client(membership) as c:
        yield c


@pytest.fixture
def published(kafka_settings) -> Callable:
    """published(n): every event on backbone.membership and backbone.access, read from the start
    with a plain Kafka client until at least n are there, then a little longer to catch extras."""

    async def read(n: int, settle: float = 1.5, timeout: float = 30.0) -> list[CloudEvent]:
        consumer = AIOKafkaConsumer(
            kafka_settings.topic(MEMBERSHIP.name), kafka_settings.topic(ACCESS.name),
            bootstrap_servers=kafka_settings.bootstrap_servers, auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None)
        await consumer.start()
        events: list[CloudEvent] = []
        try:
            loop = asyncio.get_running_loop()
            deadline, quiet_until = loop.time() + timeout, None
            while loop.time() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                events += [parse_event(m.value) for ms in batches.values() for m in ms]
                if len(events) >= n:
                    quiet_until = quiet_until or loop.time() + settle
                    if loop.time() >= quiet_until:
                        break
        finally:
            await consumer.stop()
        return events

    return read


async def until(check: Callable, timeout: float = 20.0, every: float = 0.2):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)
