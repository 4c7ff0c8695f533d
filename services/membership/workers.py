"""The membership service's background loop: the outbox relay (outbox.py), woken by every commit."""

from services.membership.store import MembershipStore
from shared.outbox import OutboxRelay
from shared.worker import Worker


def relay_worker(relay: OutboxRelay, store: MembershipStore, poll_seconds: float) -> Worker:
    worker = Worker("outbox", relay.round, interval=poll_seconds, cause="infrastructure")
    store.on_commit = worker.wake  # a committed change is published at once, not at the next poll
    return worker
