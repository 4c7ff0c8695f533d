"""What the system itself says: KPI milestones from metrics, delivery results from notify."""

from shared.contracts.base import Id, Name, PartnershipEvent, Text
from shared.contracts.bounds import Amount, Count


class MilestoneReached(PartnershipEvent):
    """A KPI crossed its target or a round number: small wins to celebrate early."""

    kpi: Id
    period: Id
    value: Amount
    threshold: Amount
    reason: Name  # "target" or "round_number"


class NotificationDelivered(PartnershipEvent):
    subscription_id: Id
    event_id: Id
    channel: Id
    attempts: Count


class NotificationFailed(PartnershipEvent):
    subscription_id: Id
    event_id: Id
    channel: Id
    attempts: Count
    reason: Text
