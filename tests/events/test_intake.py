"""The intake's crash-window design on the real stack: nothing is recorded as accepted unless
Kafka acknowledged it, so a submission that failed half-way is accepted in full on retry."""

from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaConnectionError

from services.events.intake import Intake, Outcome
from services.events.store import EventsStore
from shared.catalog import ACTIVITIES
from shared.contracts import activities as act
from shared.contracts import membership as mem
from shared.envelope import new_event
from shared.kafka import ensure_topics, make_broker
from shared.mongo import make_client
from tests.events.conftest import header, read_topic
from tests.examples import EXAMPLES, P

pytestmark = pytest.mark.integration


class UnreachableBroker:
    async def publish(self, *args, **kwargs):
        raise KafkaConnectionError("broker away")


async def test_events_are_recorded_only_after_kafka_acknowledged(kafka_settings, mongo_settings):
    client = make_client(mongo_settings)
    store = EventsStore(client[mongo_settings.database_prefix + "events"])
    await store.save_partnership(EXAMPLES[mem.PartnershipCreated])
    await store.member_joined(EXAMPLES[mem.MemberJoined])
    runtime = SimpleNamespace(broker=UnreachableBroker(), settings=SimpleNamespace(kafka=kafka_settings))
    intake = Intake(runtime, store)
    scheduled = new_event(EXAMPLES[act.ActivityScheduled], source="/test")
    completed = new_event(EXAMPLES[act.ActivityCompleted], source="/test")
    try:
        with pytest.raises(KafkaConnectionError):
            await intake.submit([scheduled, completed], entry="http")
        assert await store.recorded([scheduled.id, completed.id]) == set()
        assert await store.activity(P, "tour-1") is None

        await ensure_topics(kafka_settings)
        runtime.broker = make_broker(kafka_settings, "events")
        await runtime.broker.start()
        try:
            results = await intake.submit([scheduled, completed], entry="http")
        finally:
            await runtime.broker.stop()
        assert [r.status for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
        assert (await store.activity(P, "tour-1")).status == "completed"
        assert [header(r, "ce_id") for r in await read_topic(kafka_settings, ACTIVITIES)] == [scheduled.id, completed.id]
    finally:
        await client.close()
