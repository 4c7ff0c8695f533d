"""Membership's outbox: its committed changes' events reach Kafka through the shared relay
(shared/outbox.py), from the `outbox` collection the store writes in each change's transaction."""

from faststream.kafka import KafkaBroker
from prometheus_client import Counter, Gauge

from services.membership.store import MembershipStore
from shared.outbox import OutboxMetrics, OutboxRelay
from shared.settings import KafkaSettings

METRICS = OutboxMetrics(
    published=Counter("backbone_membership_outbox_published_total", "Outbox records published to Kafka"),
    recovered=Counter("backbone_membership_outbox_recovered_total",
                      "Outbox records found already on Kafka after a relay crash, not published again"),
    pending=Gauge("backbone_membership_outbox_pending", "Outbox records not yet on Kafka (at the last look)"),
)


def membership_relay(store: MembershipStore, broker: KafkaBroker, kafka: KafkaSettings, *, batch: int,
                     fault_point: str | None) -> OutboxRelay:
    return OutboxRelay(store, broker, kafka, METRICS, client_id="backbone-membership-outbox", batch=batch,
                       fault_point=fault_point)
