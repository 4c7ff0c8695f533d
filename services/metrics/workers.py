"""The metrics service's background loops: the rollup (rollup.py) and the milestone checks (milestones.py)."""

from services.metrics.milestones import Milestones
from services.metrics.rollup import MetricsConsumer
from shared.worker import Worker


def metrics_workers(consumer: MetricsConsumer, milestones: Milestones, milestone_interval: float) -> list[Worker]:
    return [Worker("metrics_rollup", consumer.poll, interval=0),
            Worker("milestones", milestones.step, interval=milestone_interval)]
