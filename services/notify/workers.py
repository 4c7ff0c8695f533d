"""The notify service's background loops: delivery (delivery.py), woken by every queued delivery,
and the scheduler's reminders and digests (scheduler.py)."""

from services.notify.delivery import Deliverer
from services.notify.scheduler import Scheduler
from shared.worker import Worker


def notify_workers(deliverer: Deliverer, scheduler: Scheduler, tick_seconds: float) -> list[Worker]:
    delivery = Worker("notify_delivery", deliverer.step, interval=deliverer.poll_seconds)
    deliverer.wake = delivery.wake
    return [delivery, Worker("notify_scheduler", scheduler.tick, interval=tick_seconds)]
