"""The local stack command starts real servers, reports them, and leaves nothing running."""

import os

import pytest
from pymongo import MongoClient

from cli.stack import LocalStack, _alive

pytestmark = pytest.mark.integration


def test_stack_up_status_down(tmp_path):
    stack = LocalStack(tmp_path)
    state = stack.up()
    try:
        assert stack.running() == state
        assert stack.up() == state, "a second `up` reuses the running stack"
        with MongoClient(state.endpoints.mongo_uri) as client:
            assert client.admin.command("ping")["ok"] == 1
        assert (tmp_path / "kafka.log").exists() and (tmp_path / "mongo.log").exists()
    finally:
        stack.down()
    assert stack.running() is None
    assert not _alive(state.kafka_pid) and not _alive(state.mongo_pid)
    assert not os.path.exists(tmp_path / "stack.json")


async def test_a_stack_with_a_data_directory_keeps_records_and_documents_across_down_and_up(tmp_path):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    stack = LocalStack(tmp_path / "stack", data_dir=tmp_path / "data")
    state = stack.up()
    try:
        with MongoClient(state.endpoints.mongo_uri) as client:
            client.kept.things.insert_one({"_id": "a"})
        producer = AIOKafkaProducer(bootstrap_servers=state.endpoints.bootstrap_servers, acks="all")
        await producer.start()
        await producer.send_and_wait("kept", b"acknowledged")
        await producer.stop()
    finally:
        stack.down()
    state = stack.up()
    try:
        with MongoClient(state.endpoints.mongo_uri) as client:
            assert client.kept.things.find_one() == {"_id": "a"}
        consumer = AIOKafkaConsumer("kept", bootstrap_servers=state.endpoints.bootstrap_servers,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        try:
            assert (await consumer.getone()).value == b"acknowledged"
        finally:
            await consumer.stop()
    finally:
        stack.down()
    assert not any(_alive(pid) for pid in state.pids())
