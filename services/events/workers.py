"""The events service's background loop: held events decided again (holds.py), woken when
something they may wait for arrives."""

from services.events.holds import HeldEvents
from shared.worker import Worker


def held_worker(held: HeldEvents) -> Worker:
    worker = Worker("events_held", held.step, interval=held.idle_seconds)
    held.wake = worker.wake
    return worker
