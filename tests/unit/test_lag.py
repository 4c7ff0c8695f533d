"""shared/lag.py without a broker: which topics a followed group is measured on, and how groups
are named in /readyz (without the namespace, None until measured)."""

from shared.catalog import ACCESS, INBOUND, MEMBERSHIP
from shared.lag import ConsumerLag
from shared.settings import KafkaSettings

SETTINGS = KafkaSettings(namespace="t1.")


def test_every_partner_topic_is_measured_under_one_name():
    lag = ConsumerLag(SETTINGS, "test")
    existing = {"t1.backbone.inbound.k1", "t1.backbone.inbound.k2", "t2.backbone.inbound.k3", "t1.backbone.membership"}
    assert lag._names(INBOUND.name, existing) == ["t1.backbone.inbound.k1", "t1.backbone.inbound.k2"]
    assert lag._names(MEMBERSHIP.name, existing) == ["t1.backbone.membership"]
    assert lag._names(ACCESS.name, existing) == []  # not created yet: nothing behind


def test_groups_are_named_without_the_namespace_and_unmeasured_until_measured():
    lag = ConsumerLag(SETTINGS, "test")
    lag.follow(SETTINGS.group("events"), [MEMBERSHIP])
    lag.follow(SETTINGS.group("events") + "-inbound", [INBOUND])
    assert lag.behind() == {"backbone-events": None, "backbone-events-inbound": None}
    lag.records["backbone-events"] = 3
    assert lag.of(SETTINGS.group("events")) == 3
