"""The delivery log against the real database server: an attempt is stored with the state its
delivery is in after it, or not at all (a reader never sees a delivered attempt beside a
delivery still pending)."""

from datetime import UTC, datetime

import pytest
from pymongo.errors import OperationFailure

from services.notify.store import NotifyStore


async def test_an_attempt_is_logged_with_the_state_it_led_to_or_not_at_all(notify_db, monkeypatch):
    store = NotifyStore(notify_db, journal_days=30, attempts_days=30)
    await store.setup()
    now = datetime.now(UTC)
    await store.deliveries.insert_one({"_id": "d-1", "status": "pending", "attempts": 0, "created_at": now,
                                       "subscription_id": "s-1", "notification_id": "n-1"})
    attempt = {"delivery_id": "d-1", "subscription_id": "s-1", "notification_id": "n-1", "number": 1, "at": now,
               "outcome": "delivered", "reason": None, "seconds": 0.01}
    settled = {"status": "delivered", "attempts": 1, "next_attempt_at": None}

    async def refused(*args, **kwargs):
        raise OperationFailure("the state's write fails after the attempt's")

    monkeypatch.setattr(store.deliveries, "update_one", refused)
    with pytest.raises(OperationFailure):
        await store.record_attempt(dict(attempt), "d-1", settled)
    monkeypatch.undo()
    found = await store.delivery("d-1")
    assert found is not None and found["status"] == "pending" and found["attempt_log"] == []  # neither

    await store.record_attempt(dict(attempt), "d-1", settled)
    found = await store.delivery("d-1")
    assert found is not None and found["status"] == "delivered"
    assert [a["outcome"] for a in found["attempt_log"]] == ["delivered"]  # both
    await store.deliveries.delete_one({"_id": "d-1"})
    await store.attempts.delete_many({"delivery_id": "d-1"})
