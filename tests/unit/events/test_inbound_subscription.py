"""The events service follows partner systems' inbound topics by pattern: a newly issued key's
topic is subscribed at once, and a key's issuing read again (after a rebalance of the membership
consumer) does not subscribe again, which would rebalance the inbound group and read its records
not yet committed a second time (a second dead letter for each refused one)."""

from types import SimpleNamespace

import pytest

from services.events import handlers
from services.events.handlers import PartnerInbound
from shared.catalog import inbound_of
from shared.contracts import membership as mem
from shared.settings import KafkaSettings
from tests.examples import EXAMPLES


class FollowingConsumer:
    """The inbound group's consumer: the topics its pattern matched, and each subscribe call."""

    def __init__(self, topics: set[str]):
        self.topics = topics
        self.subscribed: list[str] = []

    def subscription(self) -> frozenset[str]:
        return frozenset(self.topics)

    def subscribe(self, pattern: str) -> None:
        self.subscribed.append(pattern)


@pytest.fixture
def inbound(monkeypatch) -> PartnerInbound:
    async def topics_made(settings, topics):
        pass

    monkeypatch.setattr(handlers, "ensure_topics", topics_made)
    follower = PartnerInbound.__new__(PartnerInbound)  # the wiring needs a broker; this is its subscribing
    follower.settings = KafkaSettings(bootstrap_servers="kafka.invalid:9092", namespace="t.")
    follower.subscriber = SimpleNamespace(consumer=FollowingConsumer(set()),
                                          pattern=SimpleNamespace(broker_address="t.backbone.inbound.*"))
    return follower


async def test_a_new_keys_topic_is_subscribed_at_once_and_a_reissue_read_again_is_not(inbound):
    issued = EXAMPLES[mem.AccessKeyIssued]
    await inbound.on_key_issued(issued)
    consumer = inbound.subscriber.consumer
    assert consumer.subscribed == ["t.backbone.inbound.*"]

    consumer.topics.add(inbound.settings.topic(inbound_of(issued.key_id).name))  # the pattern matched it
    await inbound.on_key_issued(issued)
    assert consumer.subscribed == ["t.backbone.inbound.*"]
