"""A service's lifespan stops within its grace even when a step of the stop hangs (as leaving a
consumer group in the middle of a rebalance can): the step is left behind, logged, and the stop
goes on to close the database client. Real broker and database."""

import asyncio
import logging

import pytest
from pymongo.errors import InvalidOperation

from shared.service import Runtime, create_service_app
from shared.settings import ServiceSettings

pytestmark = pytest.mark.integration


async def test_a_hanging_shutdown_step_is_left_and_the_stop_completes(kafka_settings, mongo_settings, caplog):
    settings = ServiceSettings(port=0, kafka=kafka_settings, mongo=mongo_settings, shutdown_grace_seconds=0.5)
    runtime = Runtime("shutdown", settings)
    hook_started = asyncio.Event()

    async def leave_group(_: Runtime) -> None:
        hook_started.set()
        await asyncio.Event().wait()  # never answered

    app = create_service_app(runtime, title="t", description="d", on_shutdown=[leave_group])
    with caplog.at_level(logging.INFO):
        async with asyncio.timeout(60):  # only a guard: without the deadline the stop never ends
            async with app.router.lifespan_context(app):
                assert await runtime.database_ready()
    assert hook_started.is_set()
    left = [r for r in caplog.records if r.getMessage().startswith("shutdown step did not finish")]
    # (the consumer groups may be left too: they were still joining when the stop began)
    assert "leave_group" in [r.step for r in left]
    assert "service stopped" in [r.getMessage() for r in caplog.records]
    with pytest.raises(InvalidOperation):  # the database client was closed after the hung step
        await runtime.db.command("ping")
