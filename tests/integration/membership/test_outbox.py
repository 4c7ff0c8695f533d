"""A change is stored and on Kafka exactly once, even when the service is SIGKILLed between
storing and publishing, or between publishing and noting that it published."""

import pytest

from tests.integration.membership.conftest import OPERATOR_KEY, client

pytestmark = pytest.mark.integration

ENV = {"BACKBONE_AUTH_OPERATOR_KEY": OPERATOR_KEY, "MEMBERSHIP_OUTBOX_POLL_SECONDS": "0.2"}


@pytest.mark.parametrize("point", ["before_publish", "after_publish"])
async def test_killed_relay_leaves_each_event_on_the_topic_exactly_once(point, start_service, published):
    doomed = start_service("membership", ENV | {"MEMBERSHIP_FAULT_INJECTION": point})
    async with client(doomed) as api:
        stored = await api.post("/regions", json={"id": "ct-eastern", "name": "Eastern Connecticut", "state": "CT"})
    assert stored.status_code == 201  # stored with its outbox record in one transaction
    assert doomed.process.wait(timeout=30) == -9  # the relay was killed at `point`

    events_before_restart = await published(0, settle=1.0)
    assert len(events_before_restart) == (1 if point == "after_publish" else 0)

    survivor = start_service("membership", ENV)
    async with client(survivor) as api:
        assert (await api.post("/sectors", json={"id": "health", "name": "Healthcare"})).status_code == 201
    events = await published(2)
    assert sorted(e.type for e in events) == ["org.backbone.region.defined.v1", "org.backbone.sector.defined.v1"]
    metrics = (await client(survivor).get("/metrics")).text
    recovered = 1.0 if point == "after_publish" else 0.0
    assert f"backbone_membership_outbox_recovered_total {recovered}" in metrics
