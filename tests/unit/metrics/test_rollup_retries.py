"""The rollup waits out what keeps its batch from being stored, and says which kind of wait it is:
a database away (infrastructure) or a write the database refuses (refused: an operator must act)."""

import logging
from types import SimpleNamespace

import pytest
from bson.errors import InvalidDocument
from pymongo.errors import AutoReconnect, BulkWriteError

from services.metrics import rollup
from shared.observability import RETRIES


def retries(cause: str) -> float:
    return RETRIES.labels("metrics_rollup", cause)._value.get()


def failing(*errors: Exception):
    """A call that raises each of `errors` in turn, then answers."""
    pending = list(errors)

    async def call():
        if pending:
            raise pending.pop(0)
        return "stored"

    return call


async def test_a_refused_write_is_retried_and_reported_as_refused_without_the_documents(caplog, monkeypatch):
    monkeypatch.setattr(rollup.asyncio, "sleep", _no_wait)
    too_large = BulkWriteError({"writeErrors": [{"index": 0, "code": 10334, "errmsg": "too large: Jane Roe",
                                                 "op": {"name": "Jane Roe"}}]})
    before = {cause: retries(cause) for cause in ("refused", "infrastructure")}
    with caplog.at_level(logging.WARNING, logger=rollup.log.name):
        result = await rollup._retrying(failing(too_large, InvalidDocument("BSON document too large"),
                                                AutoReconnect("away")), SimpleNamespace(stopping=False))
    assert result == "stored"
    assert retries("refused") - before["refused"] == 2
    assert retries("infrastructure") - before["infrastructure"] == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["the KPI store refuses a write, retrying: BulkWriteError codes [10334]",
                      "the KPI store refuses a write, retrying: InvalidDocument"]
    assert "Jane Roe" not in caplog.text


async def test_a_stopping_rollup_gives_up_at_once():
    with pytest.raises(BulkWriteError):
        await rollup._retrying(failing(BulkWriteError({"writeErrors": [{"code": 2}]})),
                               SimpleNamespace(stopping=True))


async def _no_wait(_seconds: float) -> None:
    return None
