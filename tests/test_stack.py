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
