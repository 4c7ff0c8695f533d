"""The events service's background loops: held events decided again (holds.py), woken when
something they may wait for arrives; and the filter of what is recorded loaded (recorded.py), at
start and again whenever it was found wanting."""

from services.events.holds import HeldEvents
from services.events.recorded import RecordedFilter
from shared.worker import Worker


def held_worker(held: HeldEvents) -> Worker:
    worker = Worker("events_held", held.step, interval=held.idle_seconds)
    held.wake = worker.wake
    return worker


def recorded_loader(recorded: RecordedFilter) -> Worker:
    worker = Worker("events_recorded_filter", recorded.load, interval=60.0)
    recorded.wake = worker.wake
    return worker
