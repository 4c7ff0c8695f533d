"""The events service as a real process on the real local stack, with a small roster of
partnerships and members published on backbone.membership the way the membership service does."""

import asyncio
from collections.abc import AsyncIterator
from datetime import date

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient

from shared.auth import hash_key, new_key
from shared.catalog import Topic, inbound_of
from shared.contracts import membership as mem
from shared.contracts.base import AccessRole
from shared.envelope import new_event
from shared.kafka import ensure_topics, make_broker, make_producer, publish
from shared.mongo import make_client
from tests.examples import EXAMPLES, P, example  # noqa: F401 - example: used by the tests that import it from here

OPERATOR_KEY = "events-tests-operator-key"
OTHER = "scmip"  # a second partnership, for keys that must not reach it


@pytest.fixture
async def client(mongo_settings) -> AsyncIterator[AsyncMongoClient]:
    client = make_client(mongo_settings)
    yield client
    await client.close()


@pytest.fixture
async def membership_broker(kafka_settings) -> AsyncIterator[KafkaBroker]:
    """A started broker as the membership service publishes, with every catalogue topic in place."""
    await ensure_topics(kafka_settings)
    broker = make_broker(kafka_settings, "membership")
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.fixture
async def events_producer(kafka_settings) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer as the events service publishes its batches, every catalogue topic in place."""
    await ensure_topics(kafka_settings)
    async with make_producer(kafka_settings, "events") as producer:
        yield producer


@pytest.fixture
def events_service(start_service):
    # These tests read the rules' immediate answers: an event that waits for the roster is refused
    # at once. Holding it instead is tested in test_early_events.py.
    return start_service("events", {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY, "EVENTS_HOLD_SECONDS": "0"})


@pytest.fixture
async def operator(events_service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=events_service.url,
                                 headers={"Authorization": f"Bearer {OPERATOR_KEY}"}) as client:
        yield client


@pytest.fixture
async def roster(events_service, membership_broker, kafka_settings, mongo_settings) -> None:
    """sw-mp with microboard (active member) and sikorsky (left), qvcc a registered college,
    an open and a closed action team; scmip with no members. Waits until the service has it all."""
    roster = [
        EXAMPLES[mem.PartnershipCreated],
        example(mem.PartnershipCreated, partnership_id=OTHER, name="South Central"),
        EXAMPLES[mem.OrganisationRegistered],
        example(mem.OrganisationRegistered, organisation_id="qvcc", name="QVCC", kind="education"),
        EXAMPLES[mem.MemberJoined],
        example(mem.MemberJoined, membership_id="m-2", organisation_id="sikorsky"),
        example(mem.MemberLeft, membership_id="m-2", organisation_id="sikorsky"),
        EXAMPLES[mem.ActionTeamFormed],
        example(mem.ActionTeamFormed, action_team_id="sw-old", status="closed"),
    ]
    for data in roster:
        await publish(membership_broker, kafka_settings, new_event(data, source="/backbone/membership"))
    client = make_client(mongo_settings)
    db = client[mongo_settings.database_prefix + "events"]
    try:
        async with asyncio.timeout(20):
            while not (await db.partnerships.count_documents({}) == 2
                       and await db.organisations.count_documents({"name": {"$exists": True}}) == 2
                       and await db.memberships.count_documents({"left_on": {"$exists": True}}) == 1
                       and await db.action_teams.count_documents({}) == 2):
                await asyncio.sleep(0.1)
    finally:
        await client.close()


async def join(broker: KafkaBroker, kafka_settings, organisation_id: str, partnership_id: str = P) -> None:
    joined = example(mem.MemberJoined, membership_id=f"m-{organisation_id}", organisation_id=organisation_id,
                     partnership_id=partnership_id, joined_on=date(2026, 1, 5))
    await publish(broker, kafka_settings, new_event(joined, source="/backbone/membership"))


async def issue_partner_key(broker: KafkaBroker, kafka_settings, partnership_ids: list[str],
                            sources: list[str] = (), label: str = "ATS") -> tuple[str, str]:
    """A partner system key issued on the access topic, as membership does: (key_id, secret).
    Waits until the events service has created the key's inbound topic."""
    key_id, secret = new_key()
    await publish(broker, kafka_settings, new_event(
        mem.AccessKeyIssued(key_id=key_id, key_hash=hash_key(secret), role=AccessRole.PARTNER_SYSTEM,
                            partnership_ids=partnership_ids, label=label, sources=list(sources)),
        source="/backbone/membership"))
    topic = kafka_settings.topic(inbound_of(key_id).name)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    try:
        async with asyncio.timeout(20):
            while topic not in await admin.list_topics():
                await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return key_id, secret


async def send_to(kafka_settings, topic: Topic, *messages: bytes, key: str = P) -> None:
    """Records sent by a partner's plain Kafka client, in this order (one key: one partition)."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for message in messages:
            await producer.send_and_wait(kafka_settings.topic(topic.name), message, key=key.encode())
    finally:
        await producer.stop()
